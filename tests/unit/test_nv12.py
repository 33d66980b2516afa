"""The NV12 conversion: CPU reference always, CUDA kernel against it where a GPU is visible."""

from __future__ import annotations

import numpy as np
import pytest

import smartcity as sc
from smartcity import _core


def _frame(w: int, h: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gx = np.linspace(16, 235, w, dtype=np.float32)[None, :]
    gy = np.linspace(0, 60, h, dtype=np.float32)[:, None]
    y = np.clip(gx + gy + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
    uv = rng.integers(16, 241, (h // 2, w), dtype=np.uint8)
    return y, uv


def test_cpu_reference_grey_and_padding():
    y = np.full((48, 64), 126, np.uint8)
    uv = np.full((24, 64), 128, np.uint8)
    out = _core.nv12_to_tensor(y, uv, width=64, height=64)
    assert out.shape == (3, 64, 64)
    assert np.allclose(out[:, 32, 32], (126 - 16) / 219, atol=1e-5)
    assert np.allclose(out[:, :8, :], 114 / 255)  # 64x48 letterboxed into 64x64: 8 rows each side


def test_cpu_reference_rejects_bad_planes():
    with pytest.raises(ValueError, match="uv must have shape"):
        _core.nv12_to_tensor(np.zeros((48, 64), np.uint8), np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match="device"):
        _core.nv12_to_tensor(np.zeros((4, 4), np.uint8), np.zeros((2, 4), np.uint8), device="tpu")


gpu = pytest.mark.gpu


@gpu
@pytest.mark.skipif(
    sc.build_info()["cuda"] != "yes" or _core.cuda_device_count() == 0,
    reason="needs a CUDA build of smartcity and a visible NVIDIA GPU",
)
@pytest.mark.parametrize("size", [(768, 576), (1920, 1080), (640, 360)])
@pytest.mark.parametrize("resize", [sc.ResizeMode.letterbox, sc.ResizeMode.stretch])
def test_cuda_kernel_matches_cpu_reference(size, resize):
    w, h = size
    y, uv = _frame(w, h, seed=w + h)
    kwargs = {"width": 640, "height": 640, "resize": resize}
    ref = _core.nv12_to_tensor(y, uv, device="cpu", **kwargs)
    got = _core.nv12_to_tensor(y, uv, device="cuda", **kwargs)
    assert np.abs(got - ref).max() <= 1 / 255
