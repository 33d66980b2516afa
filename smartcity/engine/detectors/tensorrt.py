"""TensorRT backend: an engine built from the card's ONNX file, cached on disk, run on the GPU.

UNVERIFIED: written against the documented TensorRT 10 / 11 Python API; it has not run on a GPU
with TensorRT yet (the development machines have neither). Its tests are marked `tensorrt` and
skip where `import tensorrt` fails; the parts that need no TensorRT (cache key and files,
calibration images, backend choice) are tested everywhere.

Build (once per key): `trt.Builder` -> `create_network` (explicit batch) -> `OnnxParser.parse`
-> one optimization profile for batch 1..max_batch at the card's input size (the ONNX batch
when it is fixed) -> `IBuilderConfig` with a workspace pool limit, FP16 where the GPU has fast
FP16 (TensorRT 10; TensorRT 11 builds strongly typed networks and takes the ONNX file's own
precisions), INT8 with an `IInt8EntropyCalibrator2` over a folder of images letterboxed as the
card says (TensorRT 10 only: 11 removed implicit quantization) -> `build_serialized_network`,
with an `IProgressMonitor` logging the build phases where the version has it.

Cache: `<cache_dir>/<model>.<precision>.b<max_batch>.<key>.engine`, keyed by (ONNX sha256, GPU
name, TensorRT version, precision, max batch); written atomically (temporary file, fsync,
rename); each file carries its key and the sha256 of the plan, so a truncated or foreign file is
found, logged as a warning, removed and rebuilt.

Run: `execute_async_v3` on a CUDA stream with every tensor address set by name
(`set_tensor_address`): the input is the caller's device pointer (the core's device batch,
`infer_device`) or a device buffer the host tensor is copied into (`infer`); outputs go to
device buffers allocated once at max batch through cuda-python (smartcity/engine/detectors/
cuda.py), then to the host for the C++ post-processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from smartcity.engine.detectors.base import BackendUnavailable, prepare_input, takes_core_tensor
from smartcity.engine.models import ModelCard

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "int8")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_MAGIC = b"SMARTCITY-TRT-ENGINE\x00\x01"
_DEFAULT_WORKSPACE = 1 << 30


def tensorrt_module() -> ModuleType:
    """`import tensorrt`, or BackendUnavailable saying how to get it."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailable(
            "tensorrt",
            f"the tensorrt Python package is not importable ({e}): pip install tensorrt "
            "(or the TensorRT wheel matching the machine's CUDA)",
        ) from None
    return tensorrt


def default_cache_dir() -> Path:
    """$SMARTCITY_ENGINE_CACHE, else $XDG_CACHE_HOME/smartcity/engines (~/.cache/...)."""
    env = os.environ.get("SMARTCITY_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smartcity" / "engines"


# -- the cache ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineKey:
    """What makes a serialized engine reusable: change any field and the engine is rebuilt."""

    onnx_sha256: str
    gpu: str
    tensorrt_version: str
    precision: str  # fp32 | fp16 | int8 (resolved: never auto)
    max_batch: int

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def file_name(self, model: str) -> str:
        return f"{model}.{self.precision}.b{self.max_batch}.{self.digest()[:16]}.engine"


class EngineCache:
    """Serialized engines on disk, one file per (model, EngineKey)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path(self, model: str, key: EngineKey) -> Path:
        return self.directory / key.file_name(model)

    def load(self, model: str, key: EngineKey) -> bytes | None:
        """The cached plan, or None when there is none or the file is corrupt (then removed)."""
        path = self.path(model, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        why = _check_engine_file(data, key)
        if why is None:
            return data[_header_size(data) :]
        self.discard(model, key, why)
        return None

    def store(self, model: str, key: EngineKey, plan: bytes) -> Path:
        """Write the plan atomically: a reader sees the old file, the new one, or none."""
        meta = json.dumps(asdict(key), sort_keys=True).encode()
        header = _MAGIC + len(meta).to_bytes(4, "little") + meta + hashlib.sha256(plan).digest()
        return atomic_write(self.path(model, key), header + plan)

    def discard(self, model: str, key: EngineKey, why: str) -> None:
        path = self.path(model, key)
        log.warning("TensorRT engine cache %s is unusable (%s): rebuilding it", path, why)
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _header_size(data: bytes) -> int:
    n = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "little")
    return len(_MAGIC) + 4 + n + 32


def _check_engine_file(data: bytes, key: EngineKey) -> str | None:
    """None when data is a whole engine file for key, else what is wrong with it."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        return "not a smartcity engine file"
    n = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "little")
    start = len(_MAGIC) + 4
    if len(data) < start + n + 32:
        return "truncated header"
    try:
        meta = json.loads(data[start : start + n])
    except ValueError:
        return "unreadable header"
    if meta != asdict(key):
        return f"made for another key ({meta})"
    digest, plan = data[start + n : start + n + 32], data[start + n + 32 :]
    if not plan:
        return "no plan after the header"
    if hashlib.sha256(plan).digest() != digest:
        return "checksum mismatch (truncated or damaged)"
    return None


def atomic_write(path: Path, data: bytes) -> Path:
    """Write data to path through a temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


# -- calibration images ------------------------------------------------------------------------


def calibration_images(folder: str | Path) -> list[Path]:
    """The image files of a calibration folder, sorted; ValueError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"calibration folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} file")
    return paths


def letterbox_image(image_bgr: np.ndarray, card: ModelCard) -> np.ndarray:
    """A BGR uint8 image as the core would put it in a slot: (3, H, W) float32 RGB in [0, 1].

    Placement from smartcity.compute_geometry (the core's own), padding 114, OpenCV's resize
    (INTER_AREA for the card's `area` filter, else bilinear).
    """
    import cv2

    from smartcity import _core

    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (H, W, 3), got {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    mode = _core.ResizeMode.stretch if card.resize == "stretch" else _core.ResizeMode.letterbox
    g = _core.compute_geometry(w, h, card.input_width, card.input_height, mode)
    interp = cv2.INTER_AREA if card.resize_filter == "area" else cv2.INTER_LINEAR
    out = np.full((card.input_height, card.input_width, 3), 114, np.uint8)
    out[g.dst_y : g.dst_y + g.dst_h, g.dst_x : g.dst_x + g.dst_w] = cv2.resize(
        image_bgr, (g.dst_w, g.dst_h), interpolation=interp
    )
    rgb = out[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(rgb, dtype=np.float32) * np.float32(1 / 255)


def load_calibration_batch(paths: Sequence[Path], card: ModelCard) -> np.ndarray:
    """Images read, letterboxed and converted to the model's input: (N, 3, H, W)."""
    import cv2

    slots = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"calibration image {p} cannot be read")
        slots.append(letterbox_image(img, card))
    return prepare_input(card, np.stack(slots))


class CalibrationBatches:
    """Batches of a calibration folder, padded by repeating images to a whole batch.

    The part of the INT8 calibrator that needs no TensorRT (tested everywhere).
    """

    def __init__(
        self, folder: str | Path, card: ModelCard, batch_size: int, max_images: int = 500
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.card = card
        self.batch_size = batch_size
        self.paths = calibration_images(folder)[:max_images]
        self.index = 0

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def next(self) -> np.ndarray | None:
        if self.index >= len(self.paths):
            return None
        chunk = self.paths[self.index : self.index + self.batch_size]
        self.index += self.batch_size
        while len(chunk) < self.batch_size:
            chunk = [*chunk, *chunk][: self.batch_size]
        return load_calibration_batch(chunk, self.card)


def make_calibrator(
    trt: ModuleType, batches: CalibrationBatches, cache_file: Path
) -> Any:  # a trt.IInt8EntropyCalibrator2
    """An IInt8EntropyCalibrator2 over `batches`, its table kept in cache_file."""
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise BackendUnavailable(
            "tensorrt",
            f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (TensorRT 11 removed "
            "implicit INT8 calibration): quantize the ONNX file with Q/DQ nodes "
            "(NVIDIA ModelOpt) and build it with precision fp32",
        )
    from smartcity.engine.detectors.cuda import DeviceBuffer

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the Python bindings
            self.buffer: DeviceBuffer | None = None
            self.done = 0

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            x = batches.next()
            if x is None:
                return None
            if self.buffer is None:
                self.buffer = DeviceBuffer(x.nbytes)
            self.buffer.copy_from_host(x)
            self.done += 1
            log.info("INT8 calibration: batch %d of %d", self.done, len(batches))
            return [self.buffer.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write(cache_file, bytes(cache))

    return EntropyCalibrator()


# -- build -------------------------------------------------------------------------------------


def _trt_logger(trt: ModuleType) -> Any:
    """A trt.ILogger that forwards to Python logging."""

    class Logger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            S = trt.ILogger.Severity
            if severity in (S.INTERNAL_ERROR, S.ERROR):
                log.error("TensorRT: %s", msg)
            elif severity == S.WARNING:
                log.warning("TensorRT: %s", msg)
            elif severity == S.INFO:
                log.debug("TensorRT: %s", msg)

    return Logger()


def _progress_monitor(trt: ModuleType, report: Callable[[str], None]) -> Any | None:
    """An IProgressMonitor reporting each build phase (TensorRT >= 10), else None."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Progress(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        """Logs top-level phases step by step and nested phases when they start."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)  # required by the Python bindings
            self._lock = threading.Lock()  # TensorRT may call from several threads
            self._top: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                if not parent_phase:
                    self._top[phase_name] = num_steps
            where = f" (in {parent_phase})" if parent_phase else ""
            report(f"{phase_name}{where}: {num_steps} step(s)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                n = self._top.get(phase_name)
            if n:
                report(f"{phase_name}: step {step + 1} of {n}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                self._top.pop(phase_name, None)

    return Progress()


def resolve_precision(trt: ModuleType, builder: Any, precision: str, calibration: bool) -> str:
    """auto -> int8 with a calibration set, fp16 where the GPU has fast FP16, else fp32.

    TensorRT 11 has no precision flags (strong typing): everything resolves to fp32, i.e. the
    ONNX file's own precisions, and asking for fp16 or int8 is an error naming the way out.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    flags = trt.BuilderFlag
    weak = hasattr(flags, "FP16")
    if precision == "auto":
        if calibration and weak and hasattr(flags, "INT8"):
            return "int8"
        if weak and getattr(builder, "platform_has_fast_fp16", False):
            return "fp16"
        return "fp32"
    if precision == "fp16" and not weak:
        raise BackendUnavailable(
            "tensorrt",
            f"TensorRT {trt.__version__} has no FP16 flag (strongly typed networks): convert "
            "the ONNX file with ModelOpt AutoCast and build with precision fp32",
        )
    if precision == "int8" and not (weak and hasattr(flags, "INT8")):
        raise BackendUnavailable(
            "tensorrt",
            f"TensorRT {trt.__version__} has no INT8 calibration: quantize the ONNX file with "
            "Q/DQ nodes (ModelOpt) and build with precision fp32",
        )
    if precision == "int8" and not calibration:
        raise ValueError("precision int8 needs a calibration folder (calibration_dir)")
    return precision


def profile_shapes(
    card: ModelCard, fixed_batch: int | None, max_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes of the optimization profile: batch 1..max_batch.

    A fixed ONNX batch is the only batch; opt is max_batch (the batcher fills batches first).
    """
    chw = (3, card.input_height, card.input_width)
    if fixed_batch is not None:
        return (fixed_batch, *chw), (fixed_batch, *chw), (fixed_batch, *chw)
    return (1, *chw), (max_batch, *chw), (max_batch, *chw)


def build_engine(
    card: ModelCard,
    *,
    precision: str,
    max_batch: int,
    calibration_dir: str | Path | None = None,
    calibration_cache: Path | None = None,
    workspace_bytes: int = _DEFAULT_WORKSPACE,
    report: Callable[[str], None] | None = None,
) -> tuple[bytes, str]:
    """Build a serialized engine for the card's ONNX file: (plan bytes, resolved precision)."""
    trt = tensorrt_module()
    say = report or (lambda msg: log.info("TensorRT build %s: %s", card.name, msg))
    logger = _trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(explicit)  # TensorRT 8/9; 10 and later are always explicit batch
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(card.onnx_path.read_bytes(), str(card.onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {card.onnx_path}: {errors}")
    inp = network.get_input(0)
    batch_dim = int(inp.shape[0])
    fixed = batch_dim if batch_dim > 0 else None

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    mn, opt, mx = profile_shapes(card, fixed, max_batch)
    profile.set_shape(inp.name, mn, opt, mx)
    config.add_optimization_profile(profile)

    resolved = resolve_precision(trt, builder, precision, calibration_dir is not None)
    if resolved in ("fp16", "int8") and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if resolved == "int8":
        assert calibration_dir is not None
        calib_batch = fixed or min(max_batch, 8)
        batches = CalibrationBatches(calibration_dir, card, calib_batch)
        config.set_flag(trt.BuilderFlag.INT8)
        cache = calibration_cache or Path(tempfile.gettempdir()) / f"{card.name}.calib"
        config.int8_calibrator = make_calibrator(trt, batches, cache)
        cprofile = builder.create_optimization_profile()
        shape = (calib_batch, 3, card.input_height, card.input_width)
        cprofile.set_shape(inp.name, shape, shape, shape)
        config.set_calibration_profile(cprofile)
        say(f"INT8 calibration on {len(batches.paths)} image(s) of {calibration_dir}")

    monitor = _progress_monitor(trt, say)
    if monitor is not None:
        config.progress_monitor = monitor
    say(
        f"building {resolved} engine for batch {mn[0]}..{mx[0]} at {card.input_width}x"
        f"{card.input_height} (TensorRT {trt.__version__}); this takes a while, once"
    )
    t0 = time.monotonic()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine for {card.onnx_path} (see log)")
    say(f"built in {time.monotonic() - t0:.1f} s")
    return bytes(plan), resolved


# -- the detector ------------------------------------------------------------------------------


class TensorRTDetector:
    """A TensorRT engine for a card, built once and cached, run on device memory.

    max_batch: the largest batch the engine takes (the card's when None; the ONNX batch when it
    is fixed). precision: auto | fp32 | fp16 | int8 (int8 needs calibration_dir, a folder of
    images like the cameras'). cache_dir: where engines are kept (default_cache_dir()).
    """

    def __init__(
        self,
        card: ModelCard,
        *,
        max_batch: int | None = None,
        precision: str = "auto",
        cache_dir: str | Path | None = None,
        calibration_dir: str | Path | None = None,
        device_id: int = 0,
        workspace_bytes: int = _DEFAULT_WORKSPACE,
    ) -> None:
        from smartcity.engine.detectors import cuda

        trt = tensorrt_module()
        self._card = card
        self.device_id = device_id
        self.on_cuda = True  # always: batch_device_of gives this detector the core's device batches
        self.max_batch = max_batch or card.max_batch
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        cuda.set_device(device_id)
        self.gpu_name = cuda.device_name(device_id)
        self.cache = EngineCache(cache_dir)

        # The resolved precision is part of the key: resolve it before looking in the cache.
        probe_builder = trt.Builder(_trt_logger(trt))
        resolved = resolve_precision(trt, probe_builder, precision, calibration_dir is not None)
        del probe_builder
        self.key = EngineKey(
            onnx_sha256=card.sha256,
            gpu=self.gpu_name,
            tensorrt_version=str(trt.__version__),
            precision=resolved,
            max_batch=self.max_batch,
        )
        self.precision = resolved
        self.engine_path = self.cache.path(card.name, self.key)
        self._logger = _trt_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self.built = False
        plan = self.cache.load(card.name, self.key)
        engine = None
        if plan is not None:
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                self.cache.discard(card.name, self.key, "TensorRT refused to deserialize it")
            else:
                log.info("%s: TensorRT engine from %s", card.name, self.engine_path)
        if engine is None:
            plan, _ = build_engine(
                card,
                precision=resolved,
                max_batch=self.max_batch,
                calibration_dir=calibration_dir,
                calibration_cache=self.cache.directory / f"{card.name}.{card.sha256[:16]}.calib",
                workspace_bytes=workspace_bytes,
            )
            self.cache.store(card.name, self.key, plan)
            self.built = True
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise RuntimeError(f"TensorRT cannot load the engine it just built ({card.name})")
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = cuda.Stream()

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [card.input_name]:
            raise ValueError(f"engine inputs {inputs}, the card names {card.input_name!r}")
        missing = [t for t in card.output_tensors if t not in names]
        if missing:
            raise ValueError(f"engine has no output {missing[0]!r} ({names})")
        self.input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(card.input_name)))
        in_shape = tuple(engine.get_tensor_shape(card.input_name))
        self.fixed_batch: int | None = in_shape[0] if in_shape[0] > 0 else None
        self._batch_cap = self.fixed_batch or self.max_batch

        # Outputs: device buffers sized at the largest batch, allocated once; every output the
        # engine has gets an address (TensorRT requires it), the card's are copied back.
        self.context.set_input_shape(
            card.input_name, (self._batch_cap, 3, card.input_height, card.input_width)
        )
        self._out_names = [n for n in names if n not in inputs]
        self._out_dtype: dict[str, np.dtype] = {}
        self._out_buf: dict[str, cuda.DeviceBuffer] = {}
        for n in self._out_names:
            shape = tuple(self.context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise ValueError(f"output {n} has a data-dependent shape {shape}: not supported")
            dt = np.dtype(trt.nptype(engine.get_tensor_dtype(n)))
            self._out_dtype[n] = dt
            self._out_buf[n] = cuda.DeviceBuffer(max(1, int(np.prod(shape))) * dt.itemsize)
            self.context.set_tensor_address(n, self._out_buf[n].ptr)
        self._in_buf: cuda.DeviceBuffer | None = None  # for infer() on host tensors
        self._lock = threading.Lock()

    @property
    def card(self) -> ModelCard:
        return self._card

    def _execute(self, ptr: int, n: int) -> list[np.ndarray]:
        card = self._card
        ctx = self.context
        if not ctx.set_input_shape(card.input_name, (n, 3, card.input_height, card.input_width)):
            raise ValueError(f"the engine does not take batch {n} (built for {self._batch_cap})")
        ctx.set_tensor_address(card.input_name, int(ptr))
        if not ctx.execute_async_v3(self.stream.handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {card.name} (see log)")
        outs = []
        for name in card.output_tensors:
            shape = tuple(ctx.get_tensor_shape(name))
            host = np.empty(shape, self._out_dtype[name])
            self._out_buf[name].copy_to_host(host, self.stream)
            outs.append(host)
        self.stream.synchronize()
        return outs

    def _groups(self, n: int) -> list[tuple[int, int]]:
        k = self._batch_cap
        if self.fixed_batch is not None and n % k:
            raise ValueError(f"model {self._card.name} has a fixed batch of {k}: N={n}")
        return [(s, min(k, n - s)) for s in range(0, n, k)]

    def infer_device(
        self, ptr: int, shape: Sequence[int], dtype: Any = np.float32
    ) -> list[np.ndarray]:
        """Raw outputs for an (N, 3, H, W) tensor already in device memory at `ptr`.

        The caller (the core) owns the memory and keeps it alive until this returns; the
        tensor must be what the model takes (takes_core_tensor). Outputs come back as host
        arrays in the card's output.tensors order.
        """
        card = self._card
        dt = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or shape[1:] != (3, card.input_height, card.input_width):
            raise ValueError(
                f"model {card.name} takes (N, 3, {card.input_height}, {card.input_width}), got "
                f"{shape}"
            )
        if dt != self.input_dtype or not takes_core_tensor(card, dt):
            raise ValueError(
                f"the engine takes {self.input_dtype} in the card's layout, got a {dt} tensor: "
                "use infer() on the host tensor"
            )
        if shape[0] < 1:
            raise ValueError("empty batch tensor")
        slot = int(np.prod(shape[1:])) * dt.itemsize
        with self._lock:
            parts = [self._execute(int(ptr) + s * slot, m) for s, m in self._groups(shape[0])]
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(card.output_tensors))]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for a host (N, 3, H, W) batch tensor (copied to the device first)."""
        from smartcity.engine.detectors import cuda

        x = np.ascontiguousarray(prepare_input(self._card, tensor), dtype=self.input_dtype)
        n = x.shape[0]
        if n == 0:
            raise ValueError("empty batch tensor")
        k = self._batch_cap
        if self.fixed_batch is not None and n % k:  # pad the last group with zeros
            pad = np.zeros((k - n % k, *x.shape[1:]), x.dtype)
            x = np.concatenate([x, pad])
        with self._lock:
            need = min(x.shape[0], k) * int(np.prod(x.shape[1:])) * x.itemsize
            if self._in_buf is None or self._in_buf.nbytes < need:
                self._in_buf = cuda.DeviceBuffer(need)
            parts = []
            for s in range(0, x.shape[0], k):
                chunk = x[s : s + k]
                self._in_buf.copy_from_host(chunk, self.stream)
                parts.append(self._execute(self._in_buf.ptr, chunk.shape[0]))
        outs = (
            parts[0]
            if len(parts) == 1
            else [
                np.concatenate([p[i] for p in parts]) for i in range(len(self._card.output_tensors))
            ]
        )
        return [o[:n] for o in outs]
