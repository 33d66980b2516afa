"""A frame with known content: the box found in the tensor maps back within 1 pixel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import smartcity as sc
from tests.conftest import drain


def _write_y4m(path: Path, bgr: np.ndarray) -> None:
    """One 4:2:0 frame as YUV4MPEG2: decoded by FFmpeg's rawvideo path, no lossy codec."""
    h, w = bgr.shape[:2]
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # full-range planes, then tagged as such
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg XCOLORRANGE=FULL\n".encode())
        f.write(b"FRAME\n")
        f.write(yuv.tobytes())


def _crossings(profile: np.ndarray) -> tuple[float, float]:
    """Sub-pixel positions (pixel-edge coordinates) where a bright run crosses 0.5."""
    above = profile > 0.5
    i0 = int(np.argmax(above))
    i1 = len(above) - int(np.argmax(above[::-1])) - 1
    # Linear interpolation between sample centres (i + 0.5).
    left = (i0 - 1 + 0.5) + (0.5 - profile[i0 - 1]) / (profile[i0] - profile[i0 - 1])
    right = (i1 + 0.5) + (profile[i1] - 0.5) / (profile[i1] - profile[i1 + 1])
    return left, right


CASES = [
    # frame size, tensor size, resize, bright box (x0, y0, x1, y1) in frame pixels, file kind
    ((768, 576), (640, 640), "letterbox", (200, 150, 460, 400), "png"),
    ((1280, 720), (640, 640), "letterbox", (101, 333, 777, 601), "png"),
    ((720, 1280), (640, 640), "letterbox", (50, 90, 600, 1100), "png"),
    ((768, 576), (300, 300), "stretch", (120, 60, 500, 420), "png"),
    ((768, 576), (640, 640), "letterbox", (200, 150, 460, 400), "y4m"),
]


@pytest.mark.parametrize(("frame", "tensor", "resize", "box", "kind"), CASES)
def test_box_maps_back_within_one_pixel(tmp_path, make_pipeline, frame, tensor, resize, box, kind):
    w, h = frame
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    path = tmp_path / f"frame.{kind}"
    if kind == "png":
        cv2.imwrite(str(path), img)
    else:
        _write_y4m(path, img)

    p = make_pipeline(
        width=tensor[0], height=tensor[1], resize=getattr(sc.ResizeMode, resize), max_batch=1
    )
    p.add_stream(sc.StreamConfig(camera_id="k", url=str(path), block_when_busy=True))
    batch = p.next_batch(1, 10000)
    assert batch is not None, p.stream_stats("k")
    t = batch.tensor[0]
    sx, sy = batch.scale[0]
    px, py = batch.pad[0]
    assert tuple(batch.frame_size[0]) == (w, h)
    expected = sc.compute_geometry(w, h, tensor[0], tensor[1], getattr(sc.ResizeMode, resize))
    assert (px, py) == (expected.pad_x, expected.pad_y)

    grey = t.mean(axis=0)
    cy = int(((y0 + y1) / 2) * sy + py)
    cx = int(((x0 + x1) / 2) * sx + px)
    left, right = _crossings(grey[cy, :])
    top, bottom = _crossings(grey[:, cx])
    found = ((left - px) / sx, (top - py) / sy, (right - px) / sx, (bottom - py) / sy)
    for got, want in zip(found, box, strict=True):
        assert abs(got - want) <= 1.0, (found, box)

    # Padding holds 114/255 and the picture area does not.
    if resize == "letterbox" and py > 0:
        assert np.allclose(t[:, : int(py), :], 114 / 255)
    if resize == "letterbox" and px > 0:
        assert np.allclose(t[:, :, : int(px)], 114 / 255)
    batch.release()
    drain(p, "k")


def test_uint8_tensor_and_colour_order(tmp_path, make_pipeline):
    """RGB plane order: a pure red frame has R=255 in plane 0 and nothing in planes 1, 2."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, :, 2] = 255  # BGR red
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), img)
    p = make_pipeline(width=160, height=160, dtype=sc.DType.uint8, max_batch=1)
    p.add_stream(sc.StreamConfig(camera_id="r", url=str(path), block_when_busy=True))
    batch = p.next_batch(1, 10000)
    assert batch is not None
    t = batch.tensor[0]
    assert t.dtype == np.uint8
    assert t.shape == (3, 160, 160)
    assert t[0, 80, 80] == 255 and t[1, 80, 80] == 0 and t[2, 80, 80] == 0
    assert t[0, 5, 80] == 114  # the letterbox's top padding


def test_slots_shared_by_differently_shaped_streams_keep_correct_padding(
    tmp_path, vtest, make_pipeline
):
    """Padding is rewritten only when a slot's placement changes: a landscape and a portrait
    stream take turns in the same two slots, and every batch still has the right padding."""
    from tests.support.media import make_clip

    portrait = make_clip(tmp_path / "portrait.mp4", size=(360, 640), fps=10, seconds=3)
    p = make_pipeline(max_batch=1, buffers=2)
    for cam, url in (("land", vtest), ("port", portrait)):
        p.add_stream(sc.StreamConfig(camera_id=cam, url=str(url), block_when_busy=True))
    pad = 114 / 255
    checked = {"land": 0, "port": 0}
    for _ in range(80):
        batch = p.next_batch(1, 5000)
        if batch is None:
            break
        t = batch.tensor[0]
        px, py = (int(v) for v in batch.pad[0])
        cam = batch.camera_ids[0]
        if cam == "land":
            assert (px, py) == (0, 80)
            assert np.all(t[:, :80, :] == np.float32(pad)) and np.all(
                t[:, 560:, :] == np.float32(pad)
            )
        else:
            assert (px, py) == (140, 0)
            assert np.all(t[:, :, :140] == np.float32(pad)) and np.all(
                t[:, :, 500:] == np.float32(pad)
            )
        # The picture area is not padding (the previous frame's padding was overwritten).
        assert t[:, 100:540, 150:490].std() > 0.02
        checked[cam] += 1
        batch.release()
    assert checked["land"] >= 10 and checked["port"] >= 10, checked
