"""Device memory for the GPU backends through NVIDIA's cuda-python (no pycuda, no torch needed).

cuda-python (`pip install cuda-python`, a few MB: the package NVIDIA's own TensorRT samples use)
binds the CUDA runtime one to one: `cudaMalloc`, `cudaMemcpyAsync`, `cudaStreamCreate`... Every
call returns a tuple whose first item is the error code; `_check` turns a failure into a
CudaError naming the call. The newer layout is `cuda.bindings.runtime` (cuda-python >= 12.6),
the older `cuda.cudart`; both are tried.

What lives here is small on purpose: a visible-device probe for the backend choice, a stream,
and a device buffer with host copies (the TensorRT backend's outputs, the calibration batches).
The core owns the input batch's device memory; this module never touches it.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import numpy as np


class CudaError(RuntimeError):
    """A CUDA runtime call failed, or no CUDA runtime binding is importable."""


_lock = threading.Lock()
_cudart: ModuleType | None = None


def cudart() -> ModuleType:
    """The cuda-python runtime module; CudaError naming the package when it is missing."""
    global _cudart
    with _lock:
        if _cudart is None:
            try:
                from cuda.bindings import runtime as rt  # cuda-python >= 12.6
            except ImportError:
                try:
                    from cuda import cudart as rt  # type: ignore[no-redef]  # older layout
                except ImportError as e:
                    raise CudaError(
                        "the GPU backends allocate device memory through cuda-python: "
                        f"pip install cuda-python ({e})"
                    ) from None
            _cudart = rt
        return _cudart


def _check(result: Any, call: str) -> Any:
    """cuda-python returns (err, value...) tuples: raise on an error, hand back the value(s)."""
    rt = cudart()
    err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        raise CudaError(f"{call} failed: {name.decode() if isinstance(name, bytes) else name}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def device_count() -> int:
    """CUDA devices visible to this process (CudaError when cuda-python is missing)."""
    rt = cudart()
    err, n = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:  # no driver, no device: not an error here
        return 0
    return int(n)


def device_name(device_id: int = 0) -> str:
    """The device's marketing name, e.g. 'NVIDIA H200' (part of the TensorRT cache key)."""
    prop = _check(cudart().cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip()


def device_capability(device_id: int = 0) -> tuple[int, int]:
    prop = _check(cudart().cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    return int(prop.major), int(prop.minor)


def set_device(device_id: int) -> None:
    _check(cudart().cudaSetDevice(device_id), "cudaSetDevice")


class Stream:
    """A CUDA stream (non-blocking with respect to the legacy default stream)."""

    def __init__(self) -> None:
        rt = cudart()
        self._handle: Any = _check(
            rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"
        )

    @property
    def handle(self) -> int:
        """The cudaStream_t as an integer (what TensorRT's execute_async_v3 takes)."""
        return int(self._handle)

    def synchronize(self) -> None:
        _check(cudart().cudaStreamSynchronize(self._handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._handle is not None:
            _check(cudart().cudaStreamDestroy(self._handle), "cudaStreamDestroy")
            self._handle = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown or a dead context: nothing left to free
            pass


class DeviceBuffer:
    """nbytes of device memory (cudaMalloc), freed on close() or when collected."""

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"nbytes must be > 0, got {nbytes}")
        self.nbytes = int(nbytes)
        self._ptr: int | None = int(_check(cudart().cudaMalloc(self.nbytes), "cudaMalloc"))

    @property
    def ptr(self) -> int:
        if self._ptr is None:
            raise ValueError("the device buffer was freed")
        return self._ptr

    def copy_from_host(self, array: np.ndarray, stream: Stream | None = None) -> None:
        """Copy a C-contiguous host array into the start of the buffer (async on stream)."""
        a = np.ascontiguousarray(array)
        if a.nbytes > self.nbytes:
            raise ValueError(f"{a.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        rt = cudart()
        _check(
            rt.cudaMemcpyAsync(
                self.ptr,
                a.ctypes.data,
                a.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                stream.handle if stream is not None else 0,
            ),
            "cudaMemcpyAsync (host to device)",
        )
        if stream is None:
            _check(rt.cudaStreamSynchronize(0), "cudaStreamSynchronize")

    def copy_to_host(self, out: np.ndarray, stream: Stream | None = None) -> np.ndarray:
        """Fill the C-contiguous host array `out` from the start of the buffer.

        Asynchronous on `stream`: synchronize it before reading `out`.
        """
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be a writeable C-contiguous array")
        if out.nbytes > self.nbytes:
            raise ValueError(f"{out.nbytes} bytes are more than the {self.nbytes}-byte buffer")
        rt = cudart()
        _check(
            rt.cudaMemcpyAsync(
                out.ctypes.data,
                self.ptr,
                out.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                stream.handle if stream is not None else 0,
            ),
            "cudaMemcpyAsync (device to host)",
        )
        if stream is None:
            _check(rt.cudaStreamSynchronize(0), "cudaStreamSynchronize")
        return out

    def close(self) -> None:
        if self._ptr is not None:
            _check(cudart().cudaFree(self._ptr), "cudaFree")
            self._ptr = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown or a dead context: nothing left to free
            pass
