"""The batched painter draws what the per-object painter draws, and the same silhouettes."""

from __future__ import annotations

import numpy as np
import pytest

from smartcity import scenarios as S
from smartcity.scenarios.draw import FramePainter, ObjectPainter


@pytest.mark.parametrize(
    ("name", "t", "night"),
    [("congestion_arterial", 40.0, False), ("crowd_square", 14.0, False),
     ("wrong_way_night_highway", 8.0, True), ("mixed_urban_bikes", 6.0, False),
     ("junction_cross_traffic", 27.0, False)],
)  # fmt: skip
def test_batched_painter_matches_the_per_object_painter(name, t, night):
    prep = S.prepare(S.load(name), seconds=t + 0.2, resolution="640x360")
    tr, cam = prep.tracks, prep.camera
    f = int(round(t * prep.scenario.fps))
    ks = np.nonzero(tr.present[f])[0]
    assert len(ks) >= 3
    depth = cam.to_camera(np.column_stack([tr.x[f, ks], tr.y[f, ks], np.zeros(len(ks))]))[:, 2]
    order = [int(k) for k in ks[np.argsort(-depth, kind="stable")]]
    bodies = [tr.bodies[k] for k in order]
    xs, ys, hs = tr.x[f, order], tr.y[f, order], tr.heading[f, order]
    bg = S.Renderer(prep).background
    one, batch = bg.copy(), bg.copy()
    single = ObjectPainter(cam, night)
    hulls_one = [
        single.draw(one, b, x, y, h).hull for b, x, y, h in zip(bodies, xs, ys, hs, strict=True)
    ]
    hulls_batch = FramePainter(cam, night).draw_all(batch, bodies, xs, ys, hs)
    assert not np.array_equal(one, bg), "objects should have been drawn"
    assert np.array_equal(one, batch)
    assert len(hulls_one) == len(hulls_batch)
    for a, b in zip(hulls_one, hulls_batch, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and np.abs(a - b).max() < 1e-6
