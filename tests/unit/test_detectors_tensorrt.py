"""The TensorRT backend on a GPU (marker `tensorrt`): build, cache, reload, corrupt cache rebuilt,
outputs against ONNX Runtime on the CPU, the core-style device pointer path. Skipped where
`import tensorrt` fails or no GPU is visible through cuda-python (the development machines)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from smartcity.engine.detectors import OnnxRuntimeDetector, create_detector, cuda
from smartcity.engine.detectors.tensorrt import TensorRTDetector
from smartcity.engine.models import load_card
from tests.unit.test_models import MODELS, SSD

pytestmark = pytest.mark.tensorrt

pytest.importorskip("tensorrt", reason="needs the tensorrt package")


def _gpu() -> bool:
    try:
        return cuda.device_count() > 0
    except cuda.CudaError:
        return False


if not _gpu():
    pytest.skip("needs cuda-python and a visible NVIDIA GPU", allow_module_level=True)


@pytest.fixture(scope="module")
def traffic():
    return load_card(MODELS / "synthetic-traffic")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def built(traffic, cache_dir):
    return TensorRTDetector(traffic, max_batch=4, precision="fp32", cache_dir=cache_dir)


def _batch(card, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, card.input_height, card.input_width), dtype=np.float32)


def test_fp32_engine_matches_onnxruntime(built, traffic):
    assert built.built and built.engine_path.is_file()
    x = _batch(traffic, 3)
    (got,) = built.infer(x)
    (want,) = OnnxRuntimeDetector(traffic, device="cpu").infer(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=2e-3)


def test_second_start_loads_the_cache(built, traffic, cache_dir):
    again = TensorRTDetector(traffic, max_batch=4, precision="fp32", cache_dir=cache_dir)
    assert not again.built and again.engine_path == built.engine_path
    x = _batch(traffic, 2, seed=1)
    np.testing.assert_array_equal(again.infer(x)[0], built.infer(x)[0])


def test_corrupt_cache_is_rebuilt(built, traffic, cache_dir, caplog):
    data = built.engine_path.read_bytes()
    built.engine_path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        again = TensorRTDetector(traffic, max_batch=4, precision="fp32", cache_dir=cache_dir)
    assert again.built and "rebuilding it" in caplog.text


def test_device_pointer_path(built, traffic):
    x = _batch(traffic, 4, seed=2)
    buf = cuda.DeviceBuffer(x.nbytes)
    buf.copy_from_host(x)
    (got,) = built.infer_device(buf.ptr, x.shape, x.dtype)
    (want,) = built.infer(x)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="does not take batch"):
        big = cuda.DeviceBuffer(x.nbytes * 2)
        built._execute(big.ptr, 8)


def test_fixed_batch_model_and_auto_precision(tmp_path):
    ssd = load_card(SSD)
    det = create_detector(ssd, "tensorrt", cache_dir=tmp_path)
    assert isinstance(det, TensorRTDetector) and det.fixed_batch == 1
    assert det.precision in ("fp16", "fp32")
    x = _batch(ssd, 3, seed=4)
    boxes, scores = det.infer(x)
    assert boxes.shape[0] == 3 and scores.shape[0] == 3
