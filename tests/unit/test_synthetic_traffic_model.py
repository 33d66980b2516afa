"""The embedded synthetic-traffic model: its card verifies, and it finds the cars of a scene.

The scene is rendered here (smartcity.scenarios, 640x360, one second, a seed and a layout that
training never used): six cars at known places on the arterial preset, all visible and labelled
by the truth. The frame goes the appliance's way: H.264 MP4 -> sc.Pipeline (letterbox from the
card) -> OnnxRuntimeDetector -> detect() (C++ decode + NMS) at the card's thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

import smartcity as sc
from smartcity import scenarios as S
from smartcity.engine.detectors import OnnxRuntimeDetector, detect
from smartcity.engine.models import load_card
from smartcity.scenarios.dataset import LabelRules

MODEL = Path(__file__).resolve().parents[2] / "models" / "synthetic-traffic"
FRAME = 12

SCENE = """\
name: six_cars
preset: arterial
seconds: 1
seed: 4242
objects:
  - {class: car, lane: main.n0, start_m: 62, speed_kmh: 30}
  - {class: car, lane: main.n1, start_m: 75, speed_kmh: 30}
  - {class: car, lane: main.n0, start_m: 95, speed_kmh: 30}
  - {class: car, lane: main.s0, start_m: 415, speed_kmh: 30}
  - {class: car, lane: main.s1, start_m: 400, speed_kmh: 30}
  - {class: car, lane: main.s0, start_m: 380, speed_kmh: 30}
"""


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + ab[None] - inter)


def test_card_verifies():
    card = load_card(MODEL)  # sha256, ONNX input/outputs against the card, class map
    assert card.output_format == "yolo" and card.resize == "letterbox"
    assert card.class_names == ("person", "bicycle", "car", "motorcycle", "bus", "truck")
    assert card.class_map.tolist() == [0, 1, 2, 3, 4, 5]
    assert card.onnx_path.stat().st_size < 4 * 1024 * 1024


def test_yolo_layout_with_dynamic_batch():
    card = load_card(MODEL)
    s = ort.InferenceSession(str(card.onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 3, card.input_height, card.input_width), np.float32)
    (out,) = s.run(None, {card.input_name: x})
    assert out.shape[:2] == (3, 4 + 6)
    assert np.all((out[:, 4:] >= 0) & (out[:, 4:] <= 1))  # class scores after a sigmoid


def test_finds_the_cars_of_a_rendered_day_frame(tmp_path: Path, make_pipeline):
    path = tmp_path / "six_cars.yaml"
    path.write_text(SCENE)
    r = S.render_to_dir(S.load(str(path)), tmp_path, resolution="640x360")
    truth = json.loads(r.truth.read_text().splitlines()[FRAME])
    rules = LabelRules()
    cars = np.array(
        [o["box"] for o in truth["objects"] if o["class"] == "car" and rules.keep(o)], np.float32
    )
    assert len(cars) == 6  # the scene is laid out so that all six are visible and labelled

    card = load_card(MODEL)
    detector = OnnxRuntimeDetector(card, intra_op_threads=1)
    p = make_pipeline(**card.pipeline_options(), max_batch=card.max_batch)
    p.add_stream(sc.StreamConfig(camera_id="t", url=str(r.video), block_when_busy=True))
    found = None
    for _ in range(100):
        batch = p.next_batch(card.max_batch, 200)
        if batch is None:
            continue
        with batch:
            for fn, d in zip(batch.frame_numbers.tolist(), detect(detector, batch), strict=True):
                if fn == FRAME:
                    found = d.xyxy.copy(), d.score.copy(), d.class_id.copy()
        if found is not None:
            break
    assert found is not None, "frame not decoded"
    xyxy, score, cls = found
    car = cls == 2
    iou = _iou(cars, xyxy[car])
    hits = int((iou.max(axis=1) >= 0.5).sum()) if car.any() else 0
    assert hits >= 5, f"found {hits} of 6 cars: truth {cars.tolist()}, detections {xyxy.tolist()}"
    # what it reports is there: no detection away from every car
    if len(xyxy):
        stray = _iou(xyxy, cars).max(axis=1) < 0.3
        assert int(stray.sum()) <= 1, f"stray detections {xyxy[stray].tolist()} {score[stray]}"
