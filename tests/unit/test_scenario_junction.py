"""The junction preset: geometry, the camera's view, turning vehicles, lanes in the box, counts."""

from __future__ import annotations

import numpy as np
import pytest

from smartcity import scenarios as S
from smartcity.scenarios.truth import expected_incidents, lane_index, line_counts

LANES = ("main.n0", "main.s0", "cross.e0", "cross.w0")


def _scenario(objects: str, holds: str = "", seconds: float = 25) -> S.Scenario:
    return S.load_scenario_text(
        f"name: t\npreset: junction\nseconds: {seconds}\nholds: [{holds}]\nobjects:\n{objects}"
    )


def _path(prep: S.Prepared, k: int) -> tuple[np.ndarray, list[str | None]]:
    tr = prep.tracks
    f = np.nonzero(tr.present[:, k])[0]
    lanes = lane_index(prep.scene, tr.x[f, k], tr.y[f, k], tr.heading[f, k])
    return f, [prep.scene.lanes[i].id if i >= 0 else None for i in lanes]


def test_junction_preset_two_crossing_roads_stop_lines_zebras_lines():
    scene = S.make_scene("junction")
    assert scene.lane_ids() == list(LANES)
    assert {lane.road for lane in scene.lanes} == {"main", "cross"}
    headings = {lane.id: round(lane.heading_deg) for lane in scene.lanes}
    assert headings == {"main.n0": 0, "main.s0": 180, "cross.e0": 90, "cross.w0": 270}
    assert set(scene.lines) == {"main", "cross"}
    assert len(scene.crossings) == 4 and len(scene.carriageways) == 2
    assert set(scene.stop_lines) == set(LANES)
    for lane in scene.lanes:  # every stop line is 16.3 m before the centre, on the approach
        x, y = lane.point(scene.stop_lines[lane.id])
        assert np.hypot(x, y) == pytest.approx(np.hypot(16.3, 1.75))
        assert (np.array([x, y]) @ np.array(lane.direction)) < 0


def test_junction_camera_sees_the_box_and_every_approach():
    cam = S.make_scene("junction").camera
    box = [(-3.5, -3.5), (3.5, -3.5), (3.5, 3.5), (-3.5, 3.5)]
    stops = [(1.75, -16.3), (-1.75, 16.3), (-16.3, -1.75), (16.3, 1.75)]
    far = [(0.0, 60.0), (60.0, 0.0)]
    pts = np.array([[x, y, 0.0] for x, y in box + stops + far])
    uv, z = cam.project(pts)
    assert np.all(z > 0)
    assert np.all((uv[:, 0] >= 0) & (uv[:, 0] < cam.width))
    assert np.all((uv[:, 1] >= 0) & (uv[:, 1] < cam.height))


@pytest.mark.parametrize(
    ("first", "second", "turn_deg"),
    [("main.n0", "cross.w0", -90), ("main.n0", "cross.e0", 90), ("cross.w0", "main.s0", -90),
     ("cross.e0", "main.s0", 90)],
)  # fmt: skip
def test_turning_vehicle_path_is_continuous_and_changes_lane(first, second, turn_deg):
    start = "start_m: 150, " if first in ("main.s0", "cross.w0") else ""
    scen = _scenario(
        f"  - {{class: car, lane: {first}, {start}speed_kmh: 40, turn_to: {second}}}\n"
    )
    prep = S.prepare(scen)
    tr = prep.tracks
    frames, lanes = _path(prep, 0)
    # continuous: no step longer than the speed allows, no gap in presence
    assert np.all(np.diff(frames) == 1)
    step = np.hypot(np.diff(tr.x[frames, 0]), np.diff(tr.y[frames, 0]))
    assert step.max() <= 40 / 3.6 / tr.fps + 1e-6
    # heading turns by 90 degrees, smoothly
    h = tr.heading[frames, 0]
    change = (h[-1] - h[0] + 180) % 360 - 180
    assert change == pytest.approx(turn_deg, abs=0.5)
    dh = np.abs((np.diff(h) + 180) % 360 - 180)
    assert dh.max() < 3.0
    # slower in the turn than on the straight
    turning = dh > 0.1
    assert tr.speed[frames[1:][turning], 0].max() * 3.6 < 20
    # the truth's lane goes from the first lane to the second (maybe nothing between, on the arc)
    named = [lane for lane in lanes if lane is not None]
    assert named[0] == first and named[-1] == second
    switches = [b for a, b in zip(named, named[1:], strict=False) if a != b]
    assert switches == [second]
    assert tr.bodies[0].lane == first and tr.bodies[0].turn_to == second


def test_turning_vehicle_obeys_holds_on_its_first_lane_before_the_turn_only():
    # red at the south stop line until 12 s; a hold far beyond the junction on the same lane
    holds = "{lane: main.n0, at_m: 43.7, from_s: 0, to_s: 12}, {lane: main.n0, at_m: 100, to_s: 99}"
    scen = _scenario(
        "  - {class: car, lane: main.n0, speed_kmh: 40, turn_to: cross.e0}\n"
        "  - {class: car, lane: main.n0, enter_s: 14, speed_kmh: 40}\n",
        holds,
        seconds=30,
    )
    tr = S.prepare(scen).tracks
    t12 = int(12 * tr.fps)
    # waits at the red light: front the jam distance (2 m) before the stop line
    assert tr.speed[t12 - 5, 0] < 0.1
    assert tr.y[t12 - 5, 0] + tr.bodies[0].length / 2 == pytest.approx(-18.3, abs=0.5)
    # then turns east and drives on; the straight car stops at the far hold
    assert tr.x[-1, 0] > 60 and tr.y[-1, 0] == pytest.approx(-1.75)
    assert tr.speed[-1, 1] < 0.1 and 30 < tr.y[-1, 1] < 40


def test_lane_in_the_box_follows_the_heading():
    scene = S.make_scene("junction")
    x = np.array([1.75, 1.75, 0.0, 1.75])
    y = np.array([1.75, 1.75, 1.75, -20.0])
    h = np.array([0.0, 270.0, 90.0, 90.0])
    ids = [scene.lanes[i].id for i in lane_index(scene, x, y, h)]
    assert ids == ["main.n0", "cross.w0", "cross.w0", "main.n0"]
    # without headings: the first lane, as before
    assert [scene.lanes[i].id for i in lane_index(scene, x, y)] == ["main.n0"] * 3 + ["main.n0"]


def test_both_roads_count_straight_through_traffic():
    # no right of way at the box (docs/scenarios.md): the cross street's cars come later
    scen = _scenario(
        "  - {class: car, lane: main.n0, speed_kmh: 40}\n"
        "  - {class: car, lane: main.s0, start_m: 140, speed_kmh: 40}\n"
        "  - {class: car, lane: cross.e0, enter_s: 8, speed_kmh: 40}\n"
        "  - {class: truck, lane: cross.w0, enter_s: 8, start_m: 140, speed_kmh: 40}\n",
        seconds=20,
    )
    prep = S.prepare(scen)
    assert prep.tracks.crashes == []
    counts = line_counts(prep.scene.lines, prep.tracks)
    nonzero = {
        name: {d: {c: n for c, n in v[d].items() if n} for d in ("forward", "backward")}
        for name, v in counts.items()
    }
    assert nonzero == {
        "main": {"forward": {"car": 1}, "backward": {"car": 1}},
        "cross": {"forward": {"car": 1}, "backward": {"truck": 1}},
    }
    assert expected_incidents(scen, prep.scene, prep.camera, prep.tracks) == []


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("{class: car, lane: main.n0, speed_kmh: 40, turn_to: main.s0}", "same road"),
        ("{class: car, lane: main.n0, speed_kmh: 40, turn_to: main.x0}", "must be a lane id"),
        ("{class: car, lane: main.s0, against_lane: true, speed_kmh: 40, turn_to: cross.e0}",
         "only objects driving with"),
        ("{class: person, path: [[0, 0], [1, 1]], turn_to: cross.e0}", "only objects driving"),
        ("{class: car, lane: main.n0, speed_kmh: 40, turn_to: cross.e0, "
         "actions: [{at_s: 1, change_lane: main.s0}]}", "cannot also change lane"),
    ],
)  # fmt: skip
def test_bad_turn_names_the_field(obj, message):
    with pytest.raises(S.ScenarioError, match=rf"^objects\[0\]\.turn_to: .*{message}"):
        _scenario(f"  - {obj}\n")


def test_turn_between_parallel_lanes_is_refused():
    with pytest.raises(S.ScenarioError, match=r"^objects\[0\]\.turn_to: .*same road"):
        S.load_scenario_text(
            "name: t\npreset: highway\nobjects:\n"
            "  - {class: car, lane: main.n0, speed_kmh: 90, turn_to: main.n1}\n"
        )
