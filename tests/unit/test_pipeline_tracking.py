"""Tracking inside the pipeline: one tracker per camera, fed slot by slot."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import smartcity as sc
from smartcity.engine.detectors import OnnxRuntimeDetector, detect
from smartcity.engine.models import load_card
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def detector():
    return OnnxRuntimeDetector(load_card(ROOT / "models" / "person-ssdlite"))


def _run(p: sc.Pipeline, detector, frames: int, cameras: int) -> dict[str, list[sc.Tracks]]:
    """Runs until every one of `cameras` cameras has `frames` analysed frames.

    How slots fall into batches depends on timing; counting frames per camera keeps the test
    independent of it.
    """
    per_cam: dict[str, list] = {}
    for _ in range(frames * cameras):
        if len(per_cam) == cameras and all(len(v) >= frames for v in per_cam.values()):
            break
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
    per_cam = _run(p, detector, 40, 2)
    assert set(per_cam) == {"a", "b"}
    ids = {cam: set() for cam in per_cam}
    for cam, ts in per_cam.items():
        for t in ts:
            ids[cam].update(int(i) for i in t.track_id)
    # The same clip on both cameras: each tracker numbers its own tracks from 1 and, fed the
    # same frames, gives the same tracks frame for frame.
    assert min(ids["a"]) == 1 and min(ids["b"]) == 1
    n = min(len(per_cam["a"]), len(per_cam["b"]))
    assert n >= 40
    for ta, tb in zip(per_cam["a"][:n], per_cam["b"][:n], strict=True):
        assert ta.track_id.tolist() == tb.track_id.tolist()
        np.testing.assert_allclose(ta.xyxy, tb.xyxy, atol=1e-3)
    # Ids hold over frames: the people who stay in view keep one id each for many analysed
    # frames (the first 40 frames of a camera are the same whatever the batching). The weak
    # person model also gives short-lived tracks, so the test looks at the long ones.
    lives = collections.Counter()
    for t in per_cam["a"][:40]:
        lives.update(int(i) for i in t.track_id)
    long_lived = [n for n in lives.values() if n >= 8]
    assert len(long_lived) >= 3 and max(long_lived) >= 20, lives


def test_calibration_gives_ground_positions_and_speeds(vtest, detector, make_pipeline):
    p = make_pipeline(**detector.card.pipeline_options(), max_batch=4)
    p.add_stream(
        sc.StreamConfig(camera_id="a", url=str(vtest), analyze_fps=5, block_when_busy=True)
    )
    p.set_calibration("a", np.diag([0.02, 0.02, 1.0]))  # 2 cm per pixel
    per_cam = _run(p, detector, 10, 1)
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
