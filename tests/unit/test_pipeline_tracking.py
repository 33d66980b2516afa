"""Tracking inside the pipeline: one tracker per camera, fed slot by slot."""

from __future__ import annotations

import numpy as np
import pytest

import smartcity as sc
from smartcity.engine.detectors import OnnxRuntimeDetector, detect
from smartcity.engine.models import load_card
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def detector():
    return OnnxRuntimeDetector(load_card(ROOT / "models" / "person-ssdlite"))


def _run(p: sc.Pipeline, detector, batches: int) -> dict[str, list[sc.Tracks]]:
    per_cam: dict[str, list] = {}
    for _ in range(batches):
        batch = p.next_batch(4, 10000)
        assert batch is not None
        with batch:
            dets = detect(detector, batch)
            tracks = p.track(batch, dets)
            assert len(tracks) == batch.size
            for cam, t in zip(batch.camera_ids, tracks, strict=True):
                per_cam.setdefault(cam, []).append(t)
    return per_cam


def test_each_camera_has_its_own_tracker(vtest, detector, make_pipeline):
    p = make_pipeline(**detector.card.pipeline_options(), max_batch=4)
    for cam in ("a", "b"):
        p.add_stream(
            sc.StreamConfig(camera_id=cam, url=str(vtest), analyze_fps=5, block_when_busy=True)
        )
    per_cam = _run(p, detector, 15)
    assert set(per_cam) == {"a", "b"}
    ids = {cam: set() for cam in per_cam}
    for cam, ts in per_cam.items():
        for t in ts:
            ids[cam].update(int(i) for i in t.track_id)
    # The same clip on both cameras: each tracker numbers its own tracks from 1 and, fed the
    # same frames, gives the same tracks frame for frame.
    assert min(ids["a"]) == 1 and min(ids["b"]) == 1
    n = min(len(per_cam["a"]), len(per_cam["b"]))
    assert n >= 10
    for ta, tb in zip(per_cam["a"][:n], per_cam["b"][:n], strict=True):
        assert ta.track_id.tolist() == tb.track_id.tolist()
        np.testing.assert_allclose(ta.xyxy, tb.xyxy, atol=1e-3)
    # Ids hold over frames: on average a track is output on several analysed frames.
    outputs = sum(len(t) for t in per_cam["a"])
    assert outputs / len(ids["a"]) >= 4, (outputs, ids["a"])


def test_calibration_gives_ground_positions_and_speeds(vtest, detector, make_pipeline):
    p = make_pipeline(**detector.card.pipeline_options(), max_batch=4)
    p.add_stream(
        sc.StreamConfig(camera_id="a", url=str(vtest), analyze_fps=5, block_when_busy=True)
    )
    p.set_calibration("a", np.diag([0.02, 0.02, 1.0]))  # 2 cm per pixel
    per_cam = _run(p, detector, 10)
    last = [t for t in per_cam["a"] if len(t)][-1]
    assert np.isfinite(last.ground_xy).all()
    speeds = np.concatenate([t.speed_kmh for t in per_cam["a"]])
    walking = speeds[np.isfinite(speeds)]
    assert len(walking) > 5
    assert np.median(walking) < 15  # people walking on a campus road


def test_track_refuses_mismatched_input(vtest, detector, make_pipeline):
    p = make_pipeline(**detector.card.pipeline_options(), max_batch=2)
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest), block_when_busy=True))
    batch = p.next_batch(2, 10000)
    assert batch is not None and batch.size == 2
    with pytest.raises(ValueError, match="2 slots"):
        p.track(batch, [sc.Detections()])
    with pytest.raises(TypeError):
        p.track(batch, ["nope", None])
    assert [len(t) for t in p.track(batch, [None, None])] == [0, 0]
    with pytest.raises(KeyError):
        p.set_calibration("zz", np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        p.set_calibration("a", np.zeros((3, 3)))
    batch.release()
    with pytest.raises(RuntimeError, match="released"):
        p.track(batch, [None, None])
