"""Backend choice, the ONNX Runtime backend's session and IO binding, the TensorRT backend's parts
that need no TensorRT (engine cache, calibration images, precision), with the machine faked where
the choice depends on it. GPU paths: marked `gpu`, skipped without a GPU."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from smartcity import _core
from smartcity.engine.detectors import (
    BackendUnavailable,
    DeviceDetector,
    OnnxRuntimeDetector,
    backends,
    batch_device_of,
    choose_backend,
    create_detector,
    detect,
    probe_backends,
    takes_core_tensor,
)
from smartcity.engine.detectors import tensorrt as trt_backend
from smartcity.engine.detectors.tensorrt import (
    CalibrationBatches,
    EngineCache,
    EngineKey,
    calibration_images,
    letterbox_image,
    profile_shapes,
    resolve_precision,
)
from smartcity.engine.models import load_card
from tests.unit.test_models import MODELS, SSD

TRAFFIC = MODELS / "synthetic-traffic"


@pytest.fixture(scope="module")
def ssd():
    return load_card(SSD)


@pytest.fixture(scope="module")
def traffic():
    """synthetic-traffic (dynamic batch, letterbox), sized from its ONNX file.

    The card's file check is left to test_models: these tests need a dynamic-batch model, not
    a particular export of it.
    """
    card = load_card(TRAFFIC, check_file=False)
    shape = ort.InferenceSession(str(card.onnx_path), providers=["CPUExecutionProvider"])
    _, _, h, w = shape.get_inputs()[0].shape
    return dataclasses.replace(card, input_height=h, input_width=w)


# -- backend choice, machine faked -------------------------------------------------------------


def _fake_machine(
    monkeypatch, *, trt: str | None, gpus: int, ort_eps: list[str], cuda_python: bool = True
):
    def trt_version() -> str:
        if trt is None:
            raise ImportError("No module named 'tensorrt'")
        return trt

    monkeypatch.setattr(backends, "_tensorrt_version", trt_version)
    monkeypatch.setattr(backends, "_cuda_devices", lambda: (gpus, "faked"))
    monkeypatch.setattr(backends, "_ort_providers", lambda: ("1.99.0", ort_eps))
    monkeypatch.setattr(
        backends,
        "_cuda_python_ok",
        lambda: None if cuda_python else "pip install cuda-python (No module named 'cuda')",
    )


GPU_EPS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_EPS = ["CPUExecutionProvider"]


def test_auto_takes_tensorrt_first(monkeypatch):
    _fake_machine(monkeypatch, trt="10.13.0", gpus=1, ort_eps=GPU_EPS)
    name, why = choose_backend()
    assert name == "tensorrt"
    assert "tensorrt: taken, tensorrt 10.13.0 importable, 1 CUDA device(s) visible" in why
    assert "onnxruntime-cuda: available, not needed" in why
    assert "onnxruntime: available, not needed" in why


def test_auto_takes_ort_cuda_without_tensorrt(monkeypatch):
    _fake_machine(monkeypatch, trt=None, gpus=2, ort_eps=GPU_EPS)
    name, why = choose_backend()
    assert name == "onnxruntime-cuda"
    assert "tensorrt: refused, tensorrt not importable (No module named 'tensorrt')" in why
    assert "onnxruntime-cuda: taken, onnxruntime 1.99.0 has CUDAExecutionProvider, 2 CUDA" in why


def test_auto_takes_cpu_without_gpu(monkeypatch):
    # TensorRT and onnxruntime-gpu installed but no GPU visible: both refused, each saying why.
    _fake_machine(monkeypatch, trt="10.13.0", gpus=0, ort_eps=GPU_EPS)
    name, why = choose_backend()
    assert name == "onnxruntime"
    assert "tensorrt: refused, tensorrt 10.13.0 importable, no CUDA device visible" in why
    assert "onnxruntime-cuda: refused" in why and "no CUDA device visible (faked)" in why
    assert "onnxruntime: taken, onnxruntime 1.99.0 CPUExecutionProvider" in why


def test_tensorrt_refused_without_cuda_python(monkeypatch):
    _fake_machine(monkeypatch, trt="10.13.0", gpus=1, ort_eps=CPU_EPS, cuda_python=False)
    name, why = choose_backend()
    assert name == "onnxruntime"
    assert "tensorrt: refused" in why and "pip install cuda-python" in why
    assert "onnxruntime-cuda: refused, onnxruntime 1.99.0 has no CUDAExecutionProvider" in why


def test_named_backend_missing_is_a_clear_error(monkeypatch, ssd):
    _fake_machine(monkeypatch, trt=None, gpus=0, ort_eps=CPU_EPS)
    with pytest.raises(BackendUnavailable, match="backend tensorrt is not available") as e:
        create_detector(ssd, "tensorrt")
    assert "tensorrt not importable" in e.value.reason
    with pytest.raises(BackendUnavailable, match="has no CUDAExecutionProvider"):
        create_detector(ssd, "onnxruntime-cuda")
    with pytest.raises(ValueError, match="backend must be one of auto, tensorrt"):
        create_detector(ssd, "openvino")


def test_probe_backends_on_this_machine_never_fails():
    probes = probe_backends()
    assert [p.name for p in probes] == ["tensorrt", "onnxruntime-cuda", "onnxruntime"]
    assert probes[-1].available
    assert all(p.reason for p in probes)


def test_create_detector_auto_and_cpu(ssd, caplog):
    caplog.set_level(logging.INFO, logger="smartcity.engine.detectors")
    name, _ = choose_backend()
    det = create_detector(ssd, "onnxruntime", intra_op_threads=2)
    assert isinstance(det, OnnxRuntimeDetector) and isinstance(det, DeviceDetector)
    assert det.provider == "CPUExecutionProvider"
    if name == "onnxruntime":  # this machine has no GPU backend: auto gives the same
        auto = create_detector(ssd)
        assert isinstance(auto, OnnxRuntimeDetector) and auto.provider == det.provider
        assert "backend onnxruntime (onnxruntime: taken" in caplog.text


# -- ONNX Runtime session -----------------------------------------------------------------------


def test_session_options_from_config(ssd):
    det = OnnxRuntimeDetector(ssd, intra_op_threads=2, device="cpu")
    opts = det.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spin = OnnxRuntimeDetector(ssd, intra_op_threads=2, device="cpu", spin_wait=True)
    assert (
        spin.session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning"
        )
        == "1"
    )
    assert det.providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxRuntimeDetector(ssd, intra_op_threads=0)
    with pytest.raises(ValueError, match="device must be"):
        OnnxRuntimeDetector(ssd, device="gpu")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu here"
)
def test_cuda_asked_of_cpu_onnxruntime_names_the_package(ssd):
    with pytest.raises(BackendUnavailable, match="install onnxruntime-gpu"):
        OnnxRuntimeDetector(ssd, device="cuda")


class _DroppingSession:
    """An InferenceSession as onnxruntime-gpu makes it when the CUDA provider fails to load."""

    real = ort.InferenceSession

    def __new__(cls, path, sess_options=None, providers=None):
        return cls.real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])


def test_cuda_provider_dropped_is_never_silent(monkeypatch, ssd, caplog):
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU_EPS)
    monkeypatch.setattr(ort, "InferenceSession", _DroppingSession)
    with pytest.raises(BackendUnavailable, match="instead of CUDAExecutionProvider"):
        OnnxRuntimeDetector(ssd, device="cuda")
    caplog.set_level(logging.WARNING, logger="smartcity.engine.detectors.ort")
    det = OnnxRuntimeDetector(ssd, device="auto")
    assert det.provider == "CPUExecutionProvider" and not det.on_cuda
    assert "gave the session CPUExecutionProvider instead of CUDAExecutionProvider" in caplog.text


def test_cuda_provider_options_are_passed(monkeypatch, ssd):
    seen = {}

    class Recording:
        real = ort.InferenceSession

        def __new__(cls, path, sess_options=None, providers=None):
            seen["providers"] = providers
            return cls.real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU_EPS)
    monkeypatch.setattr(ort, "InferenceSession", Recording)
    with pytest.raises(BackendUnavailable):
        OnnxRuntimeDetector(ssd, device="cuda", device_id=1, cuda_options={"gpu_mem_limit": 1})
    (name, opts), cpu = seen["providers"]
    assert name == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
    assert opts["device_id"] == 1 and opts["gpu_mem_limit"] == 1
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC"


# -- IO binding (CPU memory here; the CUDA path is the same calls with device "cuda") -----------


def _batch(card, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, card.input_height, card.input_width), dtype=np.float32)


@pytest.mark.parametrize("n", [1, 3])
def test_infer_device_with_a_host_pointer_matches_infer(ssd, traffic, n):
    for card in (ssd, traffic):  # fixed batch 1 (pointer offset per slot) and dynamic batch
        det = OnnxRuntimeDetector(card, device="cpu")
        x = _batch(card, n, seed=n)
        want = det.infer(x)
        got = det.infer_device(x.ctypes.data, x.shape, x.dtype)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_infer_ortvalue_matches_infer(traffic):
    det = OnnxRuntimeDetector(traffic, device="cpu")
    x = _batch(traffic, 2, seed=7)
    value = ort.OrtValue.ortvalue_from_numpy(x)
    (got,) = det.infer_ortvalue(value)
    (want,) = det.infer(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_infer_device_refuses_what_it_cannot_bind(ssd, traffic):
    det = OnnxRuntimeDetector(traffic, device="cpu")
    x = _batch(traffic, 1)
    with pytest.raises(ValueError, match=r"takes \(N, 3, \d+, \d+\), got \(1, 3, 300, 300\)"):
        det.infer_device(x.ctypes.data, (1, 3, 300, 300))
    with pytest.raises(ValueError, match="would need a conversion"):
        det.infer_device(x.ctypes.data, x.shape, np.uint8)
    with pytest.raises(ValueError, match="make the detector with device='cuda'"):
        det.infer_device(x.ctypes.data, x.shape, device="cuda")
    bgr = OnnxRuntimeDetector(dataclasses.replace(ssd, colour_order="bgr"), device="cpu")
    y = _batch(ssd, 1)
    with pytest.raises(ValueError, match="would need a conversion"):
        bgr.infer_device(y.ctypes.data, y.shape)


def test_takes_core_tensor(ssd):
    assert takes_core_tensor(ssd, np.float32)
    assert not takes_core_tensor(ssd, np.uint8)
    assert not takes_core_tensor(dataclasses.replace(ssd, colour_order="bgr"), np.float32)
    assert not takes_core_tensor(dataclasses.replace(ssd, value_range=(0.0, 255.0)), np.float32)
    u8 = dataclasses.replace(ssd, dtype="uint8", value_range=(0.0, 255.0))
    assert takes_core_tensor(u8, np.uint8) and not takes_core_tensor(u8, np.float32)


# -- device batches: which detector gets them, and how detect() hands them over -----------------


class _GpuDetector:
    """A DeviceDetector on 'CUDA device 1' that records what it was given (the real one wraps
    ONNX Runtime on the CPU: the calls are the same, the pointer here is host memory)."""

    def __init__(self, card, on_cuda: bool = True) -> None:
        self._inner = OnnxRuntimeDetector(card, device="cpu")
        self.on_cuda, self.device_id = on_cuda, 1
        self.calls: list[tuple] = []

    @property
    def card(self):
        return self._inner.card

    def infer(self, tensor):
        self.calls.append(("infer", tensor.shape))
        return self._inner.infer(tensor)

    def infer_device(self, ptr, shape, dtype=np.float32):
        self.calls.append(("infer_device", ptr, tuple(shape), np.dtype(dtype)))
        return self._inner.infer_device(ptr, shape, dtype)


class _DeviceBatch:
    """What detect() reads of a smartcity Batch, with the tensor in host memory standing in for
    device memory (on_device says which path the batch asks for)."""

    def __init__(self, tensor: np.ndarray, on_device: bool) -> None:
        self._t, self.on_device = tensor, on_device
        n = len(tensor)
        self.shape, self.dtype = tensor.shape, tensor.dtype.name
        self.scale = np.ones((n, 2), np.float32)
        self.pad = np.zeros((n, 2), np.float32)
        self.frame_size = np.full((n, 2), tensor.shape[2], np.int32)
        self.valid = np.ones(n, bool)
        self.tensor_reads = 0

    @property
    def tensor(self):
        self.tensor_reads += 1
        return self._t

    def device_ptr(self) -> int:
        return self._t.ctypes.data


def test_batch_device_of(ssd, traffic):
    assert batch_device_of(OnnxRuntimeDetector(ssd, device="cpu")) == -1  # CPU session
    assert isinstance(_GpuDetector(traffic), DeviceDetector)
    assert batch_device_of(_GpuDetector(traffic)) == 1
    assert batch_device_of(_GpuDetector(traffic, on_cuda=False)) == -1
    bgr = dataclasses.replace(ssd, colour_order="bgr")  # needs a conversion: host tensor
    det = _GpuDetector(ssd)
    det._inner._card = bgr
    assert batch_device_of(det) == -1
    fp16 = _GpuDetector(traffic)
    fp16.input_dtype = np.float16  # a TensorRT engine built with half inputs
    assert batch_device_of(fp16) == -1


def test_detect_hands_a_device_batch_over_as_a_pointer(traffic):
    det = _GpuDetector(traffic)
    x = _batch(traffic, 2, seed=3)
    on_host = detect(det, _DeviceBatch(x, on_device=False))
    dev_batch = _DeviceBatch(x, on_device=True)
    on_dev = detect(det, dev_batch)
    assert det.calls[0] == ("infer", x.shape)
    assert det.calls[1] == ("infer_device", x.ctypes.data, x.shape, np.dtype(np.float32))
    assert dev_batch.tensor_reads == 0  # the host tensor was never asked for
    assert [len(d) for d in on_dev] == [len(d) for d in on_host]
    for a, b in zip(on_dev, on_host, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)


# -- TensorRT: engine cache ---------------------------------------------------------------------


KEY = EngineKey(
    onnx_sha256="ab" * 32,
    gpu="NVIDIA H200",
    tensorrt_version="10.13.0",
    precision="fp16",
    max_batch=8,
)


def test_engine_key_covers_every_field():
    digests = {KEY.digest()}
    for change in (
        {"onnx_sha256": "cd" * 32},
        {"gpu": "NVIDIA H100 80GB HBM3"},
        {"tensorrt_version": "10.14.0"},
        {"precision": "int8"},
        {"max_batch": 16},
    ):
        digests.add(dataclasses.replace(KEY, **change).digest())
    assert len(digests) == 6
    assert KEY.file_name("person-ssdlite").startswith("person-ssdlite.fp16.b8.")
    assert KEY.file_name("m") == dataclasses.replace(KEY).file_name("m")  # stable


def test_engine_cache_round_trip_is_atomic(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    assert cache.load("m", KEY) is None
    plan = bytes(range(256)) * 100
    path = cache.store("m", KEY, plan)
    assert path == cache.path("m", KEY) and path.is_file()
    assert cache.load("m", KEY) == plan
    cache.store("m", KEY, b"newer plan")
    assert cache.load("m", KEY) == b"newer plan"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left
    other = dataclasses.replace(KEY, precision="fp32")
    assert cache.load("m", other) is None  # another key, another file


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda d: d[: len(d) - 10], "checksum mismatch"),
        (lambda d: d[:30], "truncated header"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "checksum mismatch"),
        (lambda d: b"garbage" + d, "not a smartcity engine file"),
        (lambda d: b"", "not a smartcity engine file"),
    ],
)
def test_corrupt_cache_file_is_dropped_with_a_warning(tmp_path, caplog, damage, why):
    cache = EngineCache(tmp_path)
    path = cache.store("m", KEY, b"x" * 1000)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="smartcity.engine.detectors.tensorrt"):
        assert cache.load("m", KEY) is None
    assert why in caplog.text and "rebuilding it" in caplog.text
    assert not path.exists()


def test_cache_file_of_another_key_is_refused(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    src = cache.store("m", dataclasses.replace(KEY, gpu="Tesla T4"), b"plan")
    src.rename(cache.path("m", KEY))  # copied by hand from another machine
    with caplog.at_level(logging.WARNING, logger="smartcity.engine.detectors.tensorrt"):
        assert cache.load("m", KEY) is None
    assert "made for another key" in caplog.text


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SMARTCITY_ENGINE_CACHE", str(tmp_path / "c"))
    assert trt_backend.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SMARTCITY_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert trt_backend.default_cache_dir() == tmp_path / "smartcity" / "engines"


# -- TensorRT: calibration images ---------------------------------------------------------------


def _write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = (10 * i, 100, 200)  # B, G, R
        cv2.imwrite(str(folder / f"img{i:02d}.png"), img)


def test_calibration_images_listing(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        calibration_images(tmp_path / "none")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="holds no"):
        calibration_images(tmp_path)
    _write_images(tmp_path, [(64, 48), (32, 32)])
    assert [p.name for p in calibration_images(tmp_path)] == ["img00.png", "img01.png"]


def test_letterbox_image_places_like_the_core(traffic, ssd):
    img = np.zeros((480, 640, 3), np.uint8)  # 4:3 into a wide model input: pads left and right
    img[:] = (0, 100, 200)  # BGR
    W, H = traffic.input_width, traffic.input_height
    assert W / H > 640 / 480
    x = letterbox_image(img, traffic)
    g = _core.compute_geometry(640, 480, W, H, _core.ResizeMode.letterbox)
    assert g.dst_y == 0 and g.dst_h == H and g.dst_x > 0
    assert x.shape == (3, H, W) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, : g.dst_x], 114 / 255, atol=1e-6)  # padding
    np.testing.assert_allclose(x[:, :, g.dst_x + g.dst_w :], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(x[:, H // 2, W // 2], [200 / 255, 100 / 255, 0], atol=1e-6)  # RGB
    np.testing.assert_allclose(
        x[:, :, g.dst_x : g.dst_x + g.dst_w].min(axis=(1, 2)), [200 / 255, 100 / 255, 0], atol=1e-6
    )
    s = letterbox_image(img, ssd)  # stretch: no padding
    np.testing.assert_allclose(s[0], 200 / 255, atol=1e-6)


def test_calibration_batches_pad_the_last_batch(tmp_path, traffic):
    _write_images(tmp_path, [(640, 360)] * 4 + [(1280, 720)])
    batches = CalibrationBatches(tmp_path, traffic, batch_size=2)
    assert len(batches) == 3
    shapes = []
    while (b := batches.next()) is not None:
        shapes.append(b.shape)
        assert b.dtype == np.float32
    assert shapes == [(2, 3, traffic.input_height, traffic.input_width)] * 3
    with pytest.raises(ValueError, match="batch_size"):
        CalibrationBatches(tmp_path, traffic, batch_size=0)


def test_calibration_batch_in_model_format(tmp_path, ssd):
    _write_images(tmp_path, [(300, 300)])
    card = dataclasses.replace(ssd, colour_order="bgr", value_range=(0.0, 255.0))
    (x,) = CalibrationBatches(tmp_path, card, batch_size=1).next()  # type: ignore[misc]
    np.testing.assert_allclose(x[:, 150, 150], [0, 100, 200], atol=1e-3)  # BGR, 0..255


# -- TensorRT: precision and profile, TensorRT faked --------------------------------------------


def _fake_trt(version: str, weak: bool):
    flags = SimpleNamespace(**({"FP16": 1, "INT8": 2} if weak else {}))
    return SimpleNamespace(__version__=version, BuilderFlag=flags)


def test_resolve_precision_tensorrt_10():
    trt = _fake_trt("10.13.0", weak=True)
    fast = SimpleNamespace(platform_has_fast_fp16=True)
    slow = SimpleNamespace(platform_has_fast_fp16=False)
    assert resolve_precision(trt, fast, "auto", calibration=False) == "fp16"
    assert resolve_precision(trt, slow, "auto", calibration=False) == "fp32"
    assert resolve_precision(trt, fast, "auto", calibration=True) == "int8"
    assert resolve_precision(trt, slow, "fp16", calibration=False) == "fp16"
    with pytest.raises(ValueError, match="needs a calibration folder"):
        resolve_precision(trt, fast, "int8", calibration=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(trt, fast, "bf16", calibration=False)


def test_resolve_precision_tensorrt_11_is_strongly_typed():
    trt = _fake_trt("11.4.0", weak=False)
    builder = SimpleNamespace()
    assert resolve_precision(trt, builder, "auto", calibration=True) == "fp32"
    with pytest.raises(BackendUnavailable, match="ModelOpt AutoCast"):
        resolve_precision(trt, builder, "fp16", calibration=False)
    with pytest.raises(BackendUnavailable, match="Q/DQ"):
        resolve_precision(trt, builder, "int8", calibration=True)


def test_int8_calibrator_refused_where_tensorrt_has_none(tmp_path, traffic):
    _write_images(tmp_path, [(64, 64)])
    batches = CalibrationBatches(tmp_path, traffic, 1)
    with pytest.raises(BackendUnavailable, match="no IInt8EntropyCalibrator2"):
        trt_backend.make_calibrator(_fake_trt("11.4.0", False), batches, tmp_path / "c")


def test_profile_shapes(traffic, ssd):
    chw = (3, traffic.input_height, traffic.input_width)
    assert profile_shapes(traffic, None, 8) == ((1, *chw), (8, *chw), (8, *chw))
    assert profile_shapes(ssd, 1, 8) == ((1, 3, 300, 300),) * 3


def test_tensorrt_module_names_the_package(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(BackendUnavailable, match="pip install tensorrt"):
        trt_backend.tensorrt_module()


# -- GPU (marker gpu): device memory through cuda-python, ORT's CUDA IO binding -----------------


def _cuda_python_gpu() -> bool:
    from smartcity.engine.detectors import cuda

    try:
        return cuda.device_count() > 0
    except cuda.CudaError:
        return False


needs_cuda_python = pytest.mark.skipif(
    not _cuda_python_gpu(), reason="needs cuda-python and a visible NVIDIA GPU"
)


@pytest.mark.gpu
@needs_cuda_python
def test_device_buffer_round_trip():
    from smartcity.engine.detectors import cuda

    assert cuda.device_name(0)
    x = np.arange(1000, dtype=np.float32)
    buf = cuda.DeviceBuffer(x.nbytes)
    stream = cuda.Stream()
    buf.copy_from_host(x, stream)
    out = np.empty_like(x)
    buf.copy_to_host(out, stream)
    stream.synchronize()
    np.testing.assert_array_equal(out, x)
    buf.close()
    stream.close()


@pytest.mark.gpu
@needs_cuda_python
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu"
)
def test_ort_cuda_io_binding_matches_cpu(traffic):
    from smartcity.engine.detectors import cuda

    gpu = OnnxRuntimeDetector(traffic, device="cuda")
    cpu = OnnxRuntimeDetector(traffic, device="cpu")
    x = _batch(traffic, 4, seed=3)
    buf = cuda.DeviceBuffer(x.nbytes)
    buf.copy_from_host(x)
    (got,) = gpu.infer_device(buf.ptr, x.shape, x.dtype)
    (want,) = cpu.infer(x)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
