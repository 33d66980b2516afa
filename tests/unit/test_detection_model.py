"""The embedded person-ssdlite on frame 0 of the real clip: people where its README says.

Reference (models/person-ssdlite/README.md, measured when the model was converted): two people
at about (500,160)-(529,233) and (250,219)-(285,311) in 768x576 pixels, scores 0.97 and 0.94.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import smartcity as sc
from smartcity import _core
from smartcity.engine.detectors import OnnxRuntimeDetector, detect
from smartcity.engine.models import load_card
from tests.unit.test_models import SSD

README_BOXES = np.array([[500, 160, 529, 233], [250, 219, 285, 311]], dtype=np.float32)
README_SCORES = np.array([0.97, 0.94], dtype=np.float32)


@pytest.fixture(scope="module")
def detector() -> OnnxRuntimeDetector:
    return OnnxRuntimeDetector(load_card(SSD), intra_op_threads=1)


def _match(d: _core.Detections) -> np.ndarray:
    """Order of d's boxes that matches README_BOXES (nearest box for each reference)."""
    assert len(d) == 2, f"expected the two people, got {len(d)}: {d.xyxy} {d.score}"
    order = [int(np.abs(d.xyxy - ref).sum(axis=1).argmin()) for ref in README_BOXES]
    assert sorted(order) == [0, 1]
    return np.array(order)


def test_readme_people_with_readme_style_preprocessing(detector, vtest: Path):
    """Frame decoded and resized by OpenCV (bilinear), as the reference was made: the detector
    and the C++ post-processing give the README's boxes and scores."""
    cap = cv2.VideoCapture(str(vtest))
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape == (576, 768, 3)
    rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (300, 300))
    tensor = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    card = detector.card
    (d,) = _core.postprocess(
        detector.infer(tensor),
        format=card.output_format,
        scale=np.array([[300 / 768, 300 / 576]], np.float32),
        pad=np.zeros((1, 2), np.float32),
        frame_size=np.array([[768, 576]], np.int32),
        input_w=300,
        input_h=300,
        class_map=card.class_map,
        score_threshold=0.5,
        iou_threshold=0.5,
    )
    order = _match(d)
    np.testing.assert_allclose(d.xyxy[order], README_BOXES, atol=4)
    np.testing.assert_allclose(d.score[order], README_SCORES, atol=0.05)
    assert d.class_id.tolist() == [0, 0]


def test_readme_people_through_the_pipeline(detector, vtest: Path, make_pipeline):
    """The whole path: core decode + stretch into the batch tensor, ONNX Runtime, C++ decode.

    The model is sensitive to how the frame is shrunk: with the card's resize_filter (area)
    the second person scores 0.89 (0.84 with swscale's anti-aliased bilinear, 0.91 with
    OpenCV's bilinear), so its score is held to 0.08; boxes agree within a few pixels.
    """
    card = detector.card
    assert (card.score_threshold, card.iou_threshold) == (0.5, 0.5)
    p = make_pipeline(**card.pipeline_options(), max_batch=1)
    assert p.resize == sc.ResizeMode.stretch and (p.width, p.height) == (300, 300)
    assert p.resize_filter == sc.ResizeFilter.area
    p.add_stream(sc.StreamConfig(camera_id="v", url=str(vtest), block_when_busy=True))
    batch = p.next_batch(1, 10000)
    assert batch is not None
    with batch:
        assert batch.frame_numbers.tolist() == [0]
        (d,) = detect(detector, batch)
        # Pipeline.submit: the same decode with the slot geometry read in C++.
        (s,) = detect(detector, batch, p)
        outputs = detector.infer(batch.tensor)
        (raw,) = p.submit(batch, outputs, **card.postprocess_options())
    for other in (s, raw):
        np.testing.assert_array_equal(other.xyxy, d.xyxy)
        np.testing.assert_array_equal(other.score, d.score)
        np.testing.assert_array_equal(other.class_id, d.class_id)
    order = _match(d)
    np.testing.assert_allclose(d.xyxy[order], README_BOXES, atol=6)
    np.testing.assert_allclose(d.score[order][0], README_SCORES[0], atol=0.05)
    np.testing.assert_allclose(d.score[order][1], README_SCORES[1], atol=0.08)
    assert d.class_id.tolist() == [0, 0]
