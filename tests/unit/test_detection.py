"""Post-processing through the Python binding, against hand-made tensors and a NumPy reference."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest

from smartcity import _core
from smartcity.engine.detectors import OnnxRuntimeDetector, prepare_input
from smartcity.engine.models import load_card
from tests.unit.test_models import SSD


def _geometry(rows: list[tuple[float, float, float, float, int, int]]) -> dict[str, np.ndarray]:
    """(scale_x, scale_y, pad_x, pad_y, frame_w, frame_h) per slot -> the Batch-style arrays."""
    a = np.array(rows, dtype=np.float64)
    return {
        "scale": a[:, 0:2].astype(np.float32),
        "pad": a[:, 2:4].astype(np.float32),
        "frame_size": a[:, 4:6].astype(np.int32),
    }


def test_yolo_tensor_by_hand():
    # [1, 4+2, 3]: cx, cy, w, h, class 0, class 1 rows; anchors are columns.
    t = np.array(
        [
            [320, 10, 100],
            [320, 10, 200],
            [100, 4, 40],
            [50, 4, 40],
            [0.9, 0.1, 0.1],
            [0.1, 0.2, 0.6],
        ],
        dtype=np.float32,
    )[None]
    # 1280x720 letterboxed into 640x640: scale 0.5, picture from y = 140.
    (d,) = _core.postprocess(
        [t],
        format="yolo",
        **_geometry([(0.5, 0.5, 0, 140, 1280, 720)]),
        input_w=640,
        input_h=640,
        class_map=np.array([2, 0], dtype=np.int32),
        score_threshold=0.25,
        iou_threshold=0.5,
    )
    assert len(d) == 2
    # anchor 0: model (270, 295)-(370, 345) -> frame (540, 310)-(740, 410), car
    # anchor 2: model (80, 180)-(120, 220) -> frame (160, 80)-(240, 160), person
    np.testing.assert_allclose(d.xyxy, [[540, 310, 740, 410], [160, 80, 240, 160]], atol=1e-3)
    np.testing.assert_allclose(d.score, [0.9, 0.6], rtol=1e-6)
    assert d.class_id.tolist() == [2, 0]
    assert d.xyxy.dtype == np.float32 and d.class_id.dtype == np.int32


def test_slots_marked_invalid_get_no_detections():
    # The same yolo slot twice with the same geometry; the second marked invalid (its conversion
    # failed) comes back empty, the first as without `valid`.
    t = np.array([[320], [320], [100], [50], [0.9], [0.1]], dtype=np.float32)[None]
    t = np.concatenate([t, t])
    geo = _geometry([(0.5, 0.5, 0, 140, 1280, 720)] * 2)
    opts = {"format": "yolo", "input_w": 640, "input_h": 640}
    opts["class_map"] = np.array([2, 0], np.int32)
    a, b = _core.postprocess([t], **geo, **opts, valid=np.array([True, False]))
    (ref,) = _core.postprocess([t[:1]], **_geometry([(0.5, 0.5, 0, 140, 1280, 720)]), **opts)
    assert [len(d) for d in _core.postprocess([t], **geo, **opts)] == [1, 1]
    assert len(b) == 0 and len(a) == len(ref) == 1
    np.testing.assert_array_equal(a.xyxy, ref.xyxy)
    with pytest.raises(ValueError, match=r"valid must have shape \(2,\)"):
        _core.postprocess([t], **geo, **opts, valid=np.array([True]))


def test_detections_views_are_read_only_and_outlive_the_list():
    t = np.zeros((1, 5, 1), dtype=np.float32)
    t[0, :, 0] = [50, 50, 10, 10, 0.9]
    dets = _core.postprocess(
        [t],
        format="yolo",
        **_geometry([(1, 1, 0, 0, 100, 100)]),
        input_w=100,
        input_h=100,
        class_map=np.array([0], dtype=np.int32),
    )
    xyxy = dets[0].xyxy
    del dets
    gc.collect()
    np.testing.assert_allclose(xyxy, [[45, 45, 55, 55]])
    with pytest.raises(ValueError):
        xyxy[0, 0] = 1
    empty = _core.Detections()
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4)
    made = _core.Detections(np.ones((2, 4)), np.array([0.5, 0.6]), np.array([1, 2]))
    assert made.class_id.tolist() == [1, 2] and made.score.dtype == np.float32
    with pytest.raises(ValueError, match="xyxy"):
        _core.Detections(np.ones((2, 3)), np.array([0.5, 0.6]), np.array([1, 2]))


@pytest.mark.parametrize(
    ("outputs", "fmt", "message"),
    [
        ([np.zeros((1, 84), np.float32)], "yolo", r"\[B, 4\+C, N\]"),
        ([np.zeros((1, 6, 10), np.float32)], "yolo", "class_map has 1 entries"),
        ([np.zeros((2, 5, 10), np.float32)], "yolo", "batch has 1 slot"),
        ([np.zeros((1, 10, 4), np.float32)], "boxes_scores", "takes 2 output tensor"),
        ([np.zeros((1, 10, 7), np.float32)], "end2end", r"\[B, K, 6\]"),
        ([np.zeros((1, 10, 6), np.float32)], "ssd", "unknown output format 'ssd'"),
    ],
)
def test_wrong_shapes_raise_value_error_with_the_reason(outputs, fmt, message):
    with pytest.raises(ValueError, match=message):
        _core.postprocess(
            outputs,
            format=fmt,
            **_geometry([(1, 1, 0, 0, 100, 100)]),
            input_w=100,
            input_h=100,
            class_map=np.array([0], dtype=np.int32),
        )


def _candidates(fmt, outputs, b, input_w, input_h):
    """One slot's candidates in model pixels: (x1, y1, x2, y2), score, model class, per format."""
    if fmt == "yolo":
        x = outputs[0][b]
        cls, score = x[4:].argmax(0), x[4:].max(0)
        cx, cy, w, h = x[0], x[1], x[2], x[3]
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), score, cls
    if fmt == "yolov5":
        x = outputs[0][b]
        cls, best = x[:, 5:].argmax(1), x[:, 5:].max(1)
        cx, cy, w, h = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        return xyxy, x[:, 4] * best, cls
    if fmt == "boxes_scores":
        boxes, scores = outputs[0][b], outputs[1][b]
        xyxy = boxes * np.array([input_w, input_h, input_w, input_h], np.float32)
        return xyxy, scores.max(1), scores.argmax(1)
    x = outputs[0][b]  # end2end
    return x[:, :4], x[:, 4], x[:, 5].astype(np.int64)


def _reference(fmt, outputs, geo, class_map, score_thr, iou_thr, max_det, input_w, input_h):
    """Plain NumPy decode: best class, threshold, map, back to frame pixels, clip, NMS per
    appliance class (not for end2end), at most max_det by score."""
    out = []
    for b in range(outputs[0].shape[0]):
        xyxy, score, cls = _candidates(fmt, outputs, b, input_w, input_h)
        sx, sy = geo["scale"][b]
        px, py = geo["pad"][b]
        fw, fh = geo["frame_size"][b]
        boxes = np.stack(
            [
                np.clip((xyxy[:, 0] - px) / sx, 0, fw),
                np.clip((xyxy[:, 1] - py) / sy, 0, fh),
                np.clip((xyxy[:, 2] - px) / sx, 0, fw),
                np.clip((xyxy[:, 3] - py) / sy, 0, fh),
            ],
            axis=1,
        )
        ok_cls = (cls >= 0) & (cls < len(class_map))
        app = np.where(ok_cls, class_map[np.clip(cls, 0, len(class_map) - 1)], -1)
        keep = (score >= score_thr) & (app >= 0)
        keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        idx = np.nonzero(keep)[0]
        idx = idx[np.argsort(-score[idx], kind="stable")]
        kept: list[int] = []
        for i in idx:
            if len(kept) == max_det:
                break
            ok = True
            for k in kept if fmt != "end2end" else ():
                if app[k] != app[i]:
                    continue
                ix = min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0])
                iy = min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1])
                inter = max(ix, 0) * max(iy, 0)
                area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
                area_k = (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])
                if inter / (area_i + area_k - inter) > iou_thr:
                    ok = False
                    break
            if ok:
                kept.append(int(i))
        out.append((boxes[kept], score[kept], app[kept]))
    return out


def _random_outputs(fmt: str, rng: np.random.Generator, b: int, c: int, n: int):
    """Random raw outputs of a 640x640 model in each format's layout."""
    cx = rng.uniform(-20, 660, (b, n))  # some centres outside the picture
    cy = rng.uniform(60, 580, (b, n))
    w, h = rng.uniform(5, 120, (b, n)), rng.uniform(5, 120, (b, n))
    cls_scores = rng.uniform(0, 1, (b, n, c)) ** 3
    if fmt == "yolo":
        boxes = np.stack([cx, cy, w, h], 1)
        return [np.concatenate([boxes, cls_scores.transpose(0, 2, 1)], 1).astype(np.float32)]
    if fmt == "yolov5":
        obj = rng.uniform(0, 1, (b, n, 1))
        return [
            np.concatenate([np.stack([cx, cy, w, h], 2), obj, cls_scores], 2).astype(np.float32)
        ]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 2)
    if fmt == "boxes_scores":
        return [(xyxy / 640).astype(np.float32), cls_scores.astype(np.float32)]
    score = rng.uniform(0, 1, (b, n, 1))  # end2end: what in-model NMS left, in any order
    cls = rng.integers(0, c, (b, n, 1))
    return [np.concatenate([xyxy, score, cls], 2).astype(np.float32)]


@pytest.mark.parametrize("fmt", ["yolo", "yolov5", "boxes_scores", "end2end"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_format_matches_numpy_reference_on_random_outputs(fmt: str, seed: int):
    rng = np.random.default_rng(seed)
    outputs = _random_outputs(fmt, rng, 2, 3, 300)
    geo = _geometry([(0.5, 0.5, 0, 140, 1280, 720), (640 / 768, 480 / 576, 0, 80, 768, 576)])
    class_map = np.array([0, -1, 2], dtype=np.int32)
    got = _core.postprocess(
        outputs,
        format=fmt,
        **geo,
        input_w=640,
        input_h=640,
        class_map=class_map,
        score_threshold=0.3,
        iou_threshold=0.45,
        max_detections=25,
    )
    ref = _reference(fmt, outputs, geo, class_map, 0.3, 0.45, 25, 640, 640)
    for d, (boxes, score, cls) in zip(got, ref, strict=True):
        assert len(d) == len(score) > 5
        np.testing.assert_allclose(d.xyxy, boxes, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(d.score, score, rtol=1e-6)
        np.testing.assert_array_equal(d.class_id, cls)


def test_prepare_input_swaps_channels_and_scales():
    card = load_card(SSD, check_file=False)
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 300, 300)).astype(np.float32)
    assert prepare_input(card, x) is x or np.shares_memory(prepare_input(card, x), x)
    bgr255 = dataclasses.replace(card, colour_order="bgr", value_range=(0.0, 255.0))
    y = prepare_input(bgr255, x)
    np.testing.assert_allclose(y[:, 0], x[:, 2] * 255, rtol=1e-6)
    assert y.flags.c_contiguous
    with pytest.raises(ValueError, match="pipeline_options"):
        prepare_input(card, x[:, :, :200])


def test_fixed_batch_model_runs_slot_by_slot():
    detector = OnnxRuntimeDetector(load_card(SSD))
    assert detector.fixed_batch == 1
    assert detector.providers[-1] == "CPUExecutionProvider"
    x = np.random.default_rng(1).uniform(0, 1, (3, 3, 300, 300)).astype(np.float32)
    boxes, scores = detector.infer(x)
    assert boxes.shape == (3, 1917, 4) and scores.shape == (3, 1917, 1)
    one_boxes, one_scores = detector.infer(x[1:2])
    np.testing.assert_allclose(boxes[1:2], one_boxes, atol=1e-5)
    np.testing.assert_allclose(scores[1:2], one_scores, atol=1e-5)
    assert not np.allclose(scores[0], scores[1])  # the slots really differ
