"""Backend choice: `auto` takes TensorRT, then ONNX Runtime on CUDA, then ONNX Runtime on the CPU.

probe_backends() says for every candidate whether it can run here and why (what `smartcity
doctor` prints); choose_backend() picks the first that can; create_detector() makes it. A
backend asked for by name that cannot run raises BackendUnavailable naming what is missing;
`auto` never fails while onnxruntime itself imports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from smartcity.engine.detectors.base import BackendUnavailable, Detector
from smartcity.engine.models import ModelCard

log = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime-cuda", "onnxruntime")
CHOICES = ("auto", *BACKENDS)


@dataclass(frozen=True)
class BackendProbe:
    name: str
    available: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {'yes' if self.available else 'no'}, {self.reason}"


# Each probe below is a module-level function so tests can fake the machine with monkeypatch.


def _tensorrt_version() -> str:
    """The tensorrt package's version; ImportError when it is not importable."""
    import tensorrt

    return str(tensorrt.__version__)


def _cuda_python_ok() -> str | None:
    """None when cuda-python (device buffers for TensorRT) imports, else why not."""
    from smartcity.engine.detectors.cuda import CudaError, cudart

    try:
        cudart()
    except CudaError as e:
        return str(e)
    return None


def _cuda_devices() -> tuple[int, str]:
    """(visible CUDA devices, how that was found out)."""
    from smartcity.engine.detectors import cuda

    try:
        n = cuda.device_count()
        return n, "cuda-python's cudaGetDeviceCount"
    except cuda.CudaError:
        pass
    from smartcity import _core

    n = int(_core.cuda_device_count())
    if n:
        return n, "the core's CUDA build"
    nv = Path("/proc/driver/nvidia/gpus")
    if nv.is_dir():
        return len(list(nv.iterdir())), "/proc/driver/nvidia/gpus"
    return 0, "no CUDA runtime binding (cuda-python, a CUDA core build) and no NVIDIA driver"


def _ort_providers() -> tuple[str, list[str]]:
    """(onnxruntime version, its available execution providers); ImportError when missing."""
    import onnxruntime as ort

    return str(ort.__version__), list(ort.get_available_providers())


def probe_backends() -> list[BackendProbe]:
    """Every backend, best first, with whether it can run on this machine and why."""
    n_gpu, how = _cuda_devices()
    gpu = f"{n_gpu} CUDA device(s) visible ({how})" if n_gpu else f"no CUDA device visible ({how})"
    probes: list[BackendProbe] = []

    try:
        trt = f"tensorrt {_tensorrt_version()} importable"
        trt_ok = True
    except ImportError as e:
        trt, trt_ok = f"tensorrt not importable ({e})", False
    missing_cuda_python = _cuda_python_ok() if trt_ok else None
    if trt_ok and n_gpu and missing_cuda_python is None:
        probes.append(BackendProbe("tensorrt", True, f"{trt}, {gpu}"))
    else:
        parts = [trt, gpu]
        if missing_cuda_python:
            parts.append(missing_cuda_python)
        probes.append(BackendProbe("tensorrt", False, ", ".join(parts)))

    try:
        version, providers = _ort_providers()
    except ImportError as e:
        why = f"onnxruntime not importable ({e})"
        probes.append(BackendProbe("onnxruntime-cuda", False, why))
        probes.append(BackendProbe("onnxruntime", False, why))
        return probes
    has_cuda_ep = "CUDAExecutionProvider" in providers
    ep = (
        f"onnxruntime {version} has CUDAExecutionProvider"
        if has_cuda_ep
        else f"onnxruntime {version} has no CUDAExecutionProvider (onnxruntime-gpu not installed)"
    )
    probes.append(BackendProbe("onnxruntime-cuda", has_cuda_ep and n_gpu > 0, f"{ep}, {gpu}"))
    probes.append(BackendProbe("onnxruntime", True, f"onnxruntime {version} CPUExecutionProvider"))
    return probes


def choose_backend() -> tuple[str, str]:
    """(backend name, why): the first available of TensorRT, ONNX Runtime CUDA, CPU.

    The reason lists every candidate, taken or refused, e.g. "onnxruntime: taken ...;
    tensorrt: refused, tensorrt not importable (...); ...".
    """
    probes = probe_backends()
    chosen = next((p for p in probes if p.available), None)
    if chosen is None:
        raise BackendUnavailable("auto", "; ".join(str(p) for p in probes))
    lines = [f"{chosen.name}: taken, {chosen.reason}"]
    for p in probes:
        if p is not chosen:
            state = "available, not needed" if p.available else "refused"
            lines.append(f"{p.name}: {state}, {p.reason}")
    return chosen.name, "; ".join(lines)


def create_detector(
    card: ModelCard,
    backend: str = "auto",
    *,
    intra_op_threads: int = 1,
    max_batch: int | None = None,
    cache_dir: str | Path | None = None,
    precision: str = "auto",
    calibration_dir: str | Path | None = None,
    device_id: int = 0,
) -> Detector:
    """The detector for a card on the backend asked for ("auto" chooses, and logs why).

    intra_op_threads: ONNX Runtime's threads per inference (the CPU path's knob).
    max_batch, cache_dir, precision, calibration_dir: the TensorRT engine's (tensorrt.py).
    BackendUnavailable names what is missing when a named backend cannot run.
    """
    if backend not in CHOICES:
        raise ValueError(f"backend must be one of {', '.join(CHOICES)}, got {backend!r}")
    if backend == "auto":
        backend, why = choose_backend()
        log.info("%s: backend %s (%s)", card.name, backend, why)
    else:
        probe = next(p for p in probe_backends() if p.name == backend)
        if not probe.available:
            raise BackendUnavailable(backend, probe.reason)
    if backend == "tensorrt":
        from smartcity.engine.detectors.tensorrt import TensorRTDetector

        return TensorRTDetector(
            card,
            max_batch=max_batch,
            precision=precision,
            cache_dir=cache_dir,
            calibration_dir=calibration_dir,
            device_id=device_id,
        )
    from smartcity.engine.detectors.ort import OnnxRuntimeDetector

    return OnnxRuntimeDetector(
        card,
        intra_op_threads=intra_op_threads,
        device="cuda" if backend == "onnxruntime-cuda" else "cpu",
        device_id=device_id,
    )
