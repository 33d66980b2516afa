"""The embedded synthetic-traffic model: its card verifies, and it finds the objects of a scene.

The scenes are rendered here (smartcity.scenarios, 640x360, one second, seeds and layouts that
training never used): six cars at known places on the arterial preset; a motorcycle, a bicycle,
a car and three people on the urban street; all visible and labelled by the truth. The frame
goes the appliance's way: H.264 MP4 -> sc.Pipeline (letterbox from the card) ->
OnnxRuntimeDetector -> detect() (C++ decode + NMS) at the card's thresholds.
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

MIXED = """\
name: two_wheelers_and_people
preset: urban_straight
seconds: 1
seed: 4343
objects:
  - {class: motorcycle, lane: main.n0, start_m: 68, speed_kmh: 30}
  - {class: bicycle, lane: main.s0, start_m: 372, speed_kmh: 15}
  - {class: car, lane: main.n0, start_m: 95, speed_kmh: 30}
  - {class: person, path: [[5.0, 22], [5.0, 40]], speed_kmh: 4}
  - {class: person, path: [[-5.5, 30], [-5.5, 10]], speed_kmh: 4}
  - {class: person, path: [[6.0, 32], [6.0, 50]], speed_kmh: 4}
"""
CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")


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


def _frame(tmp_path: Path, make_pipeline, scene: str) -> tuple[list[dict], tuple]:
    """Truth objects kept by the dataset rules and (xyxy, score, class_id) of frame FRAME."""
    path = tmp_path / "scene.yaml"
    path.write_text(scene)
    r = S.render_to_dir(S.load(str(path)), tmp_path, resolution="640x360")
    truth = json.loads(r.truth.read_text().splitlines()[FRAME])
    rules = LabelRules()
    kept = [o for o in truth["objects"] if rules.keep(o)]

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
    return kept, found


def test_finds_the_cars_of_a_rendered_day_frame(tmp_path: Path, make_pipeline):
    kept, (xyxy, score, cls) = _frame(tmp_path, make_pipeline, SCENE)
    cars = np.array([o["box"] for o in kept if o["class"] == "car"], np.float32)
    assert len(cars) == 6  # the scene is laid out so that all six are visible and labelled
    car = cls == 2
    iou = _iou(cars, xyxy[car])
    hits = int((iou.max(axis=1) >= 0.5).sum()) if car.any() else 0
    assert hits >= 5, f"found {hits} of 6 cars: truth {cars.tolist()}, detections {xyxy.tolist()}"
    # what it reports is there: no detection away from every car
    if len(xyxy):
        stray = _iou(xyxy, cars).max(axis=1) < 0.3
        assert int(stray.sum()) <= 1, f"stray detections {xyxy[stray].tolist()} {score[stray]}"


def test_finds_two_wheelers_and_people_of_a_rendered_day_frame(tmp_path: Path, make_pipeline):
    kept, (xyxy, score, cls) = _frame(tmp_path, make_pipeline, MIXED)
    names = sorted(o["class"] for o in kept)
    assert names == ["bicycle", "car", "motorcycle", "person", "person", "person"]
    missed = []
    for o in kept:
        same = cls == CLASSES.index(o["class"])
        box = np.array([o["box"]], np.float32)
        if not same.any() or _iou(box, xyxy[same]).max() < 0.5:
            missed.append(o["class"])
    assert len(missed) <= 2, f"missed {missed}: detections {xyxy.tolist()} {cls.tolist()}"
    if len(xyxy):
        truth = np.array([o["box"] for o in kept], np.float32)
        stray = _iou(xyxy, truth).max(axis=1) < 0.3
        assert int(stray.sum()) <= 1, f"stray detections {xyxy[stray].tolist()} {score[stray]}"
