"""RuleSet: building a camera's rules from geometry and config, refusals, traffic output."""

from __future__ import annotations

import math

import pytest

from smartcity.incidents.geometry import GeometryError, parse_camera_geometry
from smartcity.incidents.rules import RuleSet
from tests.unit.test_rules import CAR, GEOMETRY, drive, frame, geo, merge


def test_defaults_follow_what_the_camera_has() -> None:
    rs = RuleSet(geo())
    assert set(rs.rules) == {
        "line_crossing", "zone_intrusion", "wrong_way", "crash", "stopped_vehicle", "speeding",
        "congestion", "crowd", "loitering", "pedestrian_on_carriageway",
    }  # fmt: skip
    bare = RuleSet(parse_camera_geometry("cam", {"lines": GEOMETRY["lines"][1:]}))
    assert set(bare.rules) == {"line_crossing", "loitering"}
    assert "calibration" in bare.skipped["speeding"]


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"speding": {}}, "cameras.cam.rules.speding", "unknown rule"),
        ({"speeding": {"margin": 5}}, "cameras.cam.rules.speeding.margin", "unknown setting"),
        ({"speeding": {"margin_kmh": "ten"}}, "cameras.cam.rules.speeding.margin_kmh", "number"),
        ({"speeding": {"margin_kmh": -1}}, "cameras.cam.rules.speeding.margin_kmh", ">= 0"),
        ({"crowd": {"min_people": 2.5}}, "cameras.cam.rules.crowd.min_people", "whole"),
        ({"crowd": {"min_people": 1}}, "cameras.cam.rules.crowd.min_people", "at least 2"),
        ({"crowd": {"zones": ["nowhere"]}}, "cameras.cam.rules.crowd.zones[0]", "no zone"),
        ({"wrong_way": {"severity": "huge"}}, "cameras.cam.rules.wrong_way.severity", "one of"),
        ({"line_crossing": {"classes": ["tank"]}},
         "cameras.cam.rules.line_crossing.classes[0]", "unknown class"),
        ({"line_crossing": {"alert_direction": "up"}},
         "cameras.cam.rules.line_crossing.alert_direction", "in, out or any"),
        ({"congestion": []}, "cameras.cam.rules.congestion", "mapping"),
    ],
)  # fmt: skip
def test_bad_config_is_refused_naming_camera_and_field(config, field, words) -> None:
    with pytest.raises(GeometryError) as e:
        RuleSet(geo(), config)
    assert e.value.field == field and words in str(e.value), str(e.value)


def test_a_named_rule_that_cannot_run_is_refused() -> None:
    uncalibrated = parse_camera_geometry("cam", {"lines": GEOMETRY["lines"][1:]})
    with pytest.raises(GeometryError, match=r"cameras\.cam\.rules\.speeding: needs a calib"):
        RuleSet(uncalibrated, {"speeding": {"margin_kmh": 5}})
    with pytest.raises(GeometryError, match=r"rules\.zone_intrusion: needs zones"):
        RuleSet(uncalibrated, {"zone_intrusion": {}})
    rs = RuleSet(uncalibrated, {"speeding": False, "loitering": {"enabled": False}})
    assert set(rs.rules) == {"line_crossing"} and rs.skipped["speeding"] == "disabled"


def test_update_returns_findings_and_traffic() -> None:
    rs = RuleSet(geo())
    outs = [rs.update(f) for f in merge(drive(1, CAR, 2.0, 30, 80, 0, 3),
                                        drive(2, CAR, 5.0, 40, 40, 0, 3))]  # fmt: skip
    found = [f for o in outs for f in o.findings]
    assert [(f.rule, f.key) for f in found] == [("speeding", "track:1")]
    crossings = [c for o in outs for c in o.traffic.crossings if c.line == "gate"]
    assert sorted((c.line, c.track_id, c.direction) for c in crossings) == [
        ("gate", 1, "in"), ("gate", 2, "in")]  # fmt: skip
    assert rs.line_counts["gate"]["in"] == {"car": 2}
    last = outs[-1].traffic
    assert [s.lane for s in last.lanes] == ["n0", "n1", "s0"]
    n0 = last.lanes[0]
    assert n0.vehicles == 1 and n0.mean_speed_kmh == pytest.approx(80)
    assert n0.occupancy == pytest.approx(0.045, rel=0.01)
    assert n0.density_per_km == pytest.approx(10, rel=0.01)
    assert n0.level == "B" and last.lanes[2].vehicles == 0
    assert math.isnan(last.lanes[2].mean_speed_kmh)


def test_other_camera_refused_and_time_going_back_resets() -> None:
    rs = RuleSet(geo())
    with pytest.raises(ValueError, match="camera"):
        rs.update(frame(0, []).__class__(cam="other", frame=0, pts=0, t_ns=0))
    for f in merge(drive(1, CAR, 2.0, 45, 30, 0, 1)):
        rs.update(f)
    rs.update(frame(0.0, [(1, CAR, 2.0, 55, 30)]))  # stream restarted: no memory of y 45
    assert rs.line_counts["gate"]["in"] == {}


def test_pending_crossings_count_before_a_restart_forgets_them() -> None:
    """finish() without a frame takes the last one (nothing before the first); a stream whose
    time goes back counts what was pending in the first frame after the restart."""
    rs = RuleSet(geo())
    assert rs.finish().findings == [] and rs.finish().traffic.crossings == ()
    frames = merge(drive(1, CAR, 2.0, 48, 3.6, 0, 2.5))  # 48 -> 50.5 m: 0.5 m past the gate
    outs = [rs.update(f) for f in frames]
    assert not [c for o in outs for c in o.traffic.crossings]
    again = rs.update(frame(0.0, [(7, CAR, 2.0, 10, 30)]))  # the stream restarted
    assert [(c.line, c.track_id) for c in again.traffic.crossings] == [("gate", 1)]
    assert rs.line_counts["gate"]["in"] == {}  # ... and the counts start again
    done = rs.finish(frame(9.0, []))  # a frame with no tracks is still the frame given
    assert done.traffic.pts == 9.0


def test_finish_counts_the_crossings_not_settled_when_the_stream_ends() -> None:
    rs = RuleSet(geo())
    frames = merge(
        drive(1, CAR, 2.0, 48, 3.6, 0, 1)
    )  # 1 m a second, then 50.5 m (the gate is at 50)
    frames += [frame(1.1 + k / 10, [(1, CAR, 2.0, 49.0 + 0.15 * k, 3.6)]) for k in range(11)]
    outs = [rs.update(f) for f in frames]
    assert not [c for o in outs for c in o.traffic.crossings if c.line == "gate"]
    end = rs.finish(frames[-1])
    got = [(c.line, c.track_id, c.direction) for c in end.traffic.crossings]
    assert got == [("gate", 1, "in")]
    assert rs.line_counts["gate"]["in"] == {"car": 1}
