"""How the int8 copy's detections are matched to the original's (smartcity.engine.quantize)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from smartcity.engine.quantize import Agreement, agreement_counts


def dets(*boxes: tuple[float, float, float, float, int]) -> SimpleNamespace:
    a = np.array([b[:4] for b in boxes], np.float32).reshape(-1, 4)
    return SimpleNamespace(xyxy=a, class_id=np.array([b[4] for b in boxes], np.int32))


def test_two_int8_boxes_on_one_object_both_agree() -> None:
    """The copy keeps two boxes on a car the original saw once (NMS at 0.5 kept both: IoU 0.44
    with each other, 0.72 each with the original's): both are the original's detection, so the
    precision is 1; the other frame's extra box of another class is not."""
    car = (0, 0, 100, 100, 2)
    original = [dets(car), dets((0, 0, 50, 50, 0))]
    quantized = [dets((0, 0, 100, 72, 2), (0, 28, 100, 100, 2)), dets((0, 0, 50, 50, 2))]
    n_f, n_q, matched, q_matched = agreement_counts(original, quantized)
    assert (n_f, n_q, matched, q_matched) == (2, 3, 1, 2)
    a = Agreement(2, n_f, n_q, matched, 1.0, 1.0, int8_matched=q_matched)
    assert a.recall == 0.5
    assert abs(a.precision - 2 / 3) < 1e-9


def test_empty_frames_and_no_detections() -> None:
    assert agreement_counts([dets(), dets()], [dets(), dets()]) == (0, 0, 0, 0)
    a = Agreement(2, 0, 0, 0, 1.0, 1.0)
    assert a.recall == 1.0 and a.precision == 1.0
