"""The tracker on rendered scenes whose truth is known: ids hold, ground speed matches.

The truth boxes (visible parts) of a rendered scenario are jittered, some dropped and some
given low scores, then tracked with the scenario's own image -> ground homography. Every
truth object followed long enough must map onto one track id for nearly all its frames, and
the speeds the tracker measures must match the scripted speeds.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from smartcity import scenarios
from smartcity.classes import APPLIANCE_CLASSES
from smartcity.tracking import ByteTracker


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.mark.parametrize(
    ("name", "seconds"), [("speeding_arterial", 20), ("counting_arterial", 25)]
)
def test_ids_and_speeds_on_a_rendered_scene(tmp_path, name, seconds):
    out = scenarios.render_to_dir(
        scenarios.load(name), tmp_path, seconds=seconds, resolution="1280x720"
    )
    meta = json.loads(out.scenario.read_text())
    fps = float(meta["fps"])
    tracker = ByteTracker(frame_rate=fps, speed_window_s=1.0)
    tracker.set_calibration(np.asarray(meta["camera"]["image_to_ground"], np.float64))
    rng = np.random.default_rng(7)

    id_votes: dict[int, Counter] = defaultdict(Counter)
    frames_seen: Counter = Counter()
    speed_pairs: list[tuple[float, float]] = []
    for line in out.truth.read_text().splitlines():
        rec = json.loads(line)
        objs = [
            o
            for o in rec["objects"]
            if o["occlusion"] < 0.5
            and (o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]) > 200
        ]
        truth = np.array([o["box"] for o in objs], np.float64).reshape(-1, 4)
        keep = rng.random(len(objs)) > 0.05  # 5 % missed detections
        size = np.stack([truth[:, 2] - truth[:, 0], truth[:, 3] - truth[:, 1]] * 2, 1)
        dets = truth + rng.normal(0, 0.02, truth.shape) * size
        scores = np.where(rng.random(len(objs)) < 0.15, 0.3, 0.9)
        classes = np.array([APPLIANCE_CLASSES.index(o["class"]) for o in objs], np.int32)
        tracks = tracker.update(
            dets[keep].astype(np.float32), scores[keep].astype(np.float32), classes[keep]
        )
        if len(tracks) == 0 or len(objs) == 0:
            continue
        iou = _iou(truth, tracks.xyxy.astype(np.float64))
        for i, o in enumerate(objs):
            j = int(np.argmax(iou[i]))
            if iou[i, j] < 0.5:
                continue
            frames_seen[o["id"]] += 1
            id_votes[o["id"]][int(tracks.track_id[j])] += 1
            v = float(tracks.speed_kmh[j])
            if np.isfinite(v) and o["speed_kmh"] > 20 and o["class"] != "person":
                speed_pairs.append((v, float(o["speed_kmh"])))

    followed = [oid for oid, n in frames_seen.items() if n >= fps]
    assert len(followed) >= 2, frames_seen
    for oid in followed:
        top_id, top_n = id_votes[oid].most_common(1)[0]
        assert top_n >= 0.9 * frames_seen[oid], (oid, id_votes[oid])
    assert len(speed_pairs) >= 30, len(speed_pairs)
    measured, scripted = np.array(speed_pairs).T
    rel = np.abs(measured - scripted) / scripted
    assert np.median(rel) < 0.08, np.median(rel)
    assert np.percentile(rel, 90) < 0.25, np.percentile(rel, 90)
