"""Minute buckets of traffic statistics from line crossings and lane samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smartcity.incidents.rules.line_crossing import Crossing
from smartcity.incidents.rules.traffic import LaneSample
from smartcity.incidents.traffic import MINUTE_NS, TrafficAggregator, p85, to_record

T0 = 1_790_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS  # a whole minute
S = 1_000_000_000


def crossing(t_ns, cls=2, direction="in", kmh=40.0, line="gate"):
    return Crossing(line, 1, cls, direction, 0.0, t_ns, kmh)


def lane(t_ns, vehicles, kmh, occ, level):
    return LaneSample("n0", "main:north", 0.0, t_ns, vehicles, kmh, occ, math.nan, level)


def test_crossings_sum_per_minute_class_and_direction():
    agg = TrafficAggregator(lateness_s=5)
    for i in range(10):
        agg.add_crossing("c1", crossing(T0 + i * 5 * S, kmh=40.0 + i))
    agg.add_crossing("c1", crossing(T0 + 10 * S, cls=5, direction="out", kmh=math.nan))
    agg.add_crossing("c1", crossing(T0 + MINUTE_NS + 1, kmh=50.0))
    assert agg.pop_closed() == []  # frames have not moved past the first minute + lateness
    agg.advance("c1", T0 + MINUTE_NS + 6 * S)
    out = agg.pop_closed()
    assert [(b.cls, b.direction, b.count) for b in out] == [("car", "in", 10), ("truck", "out", 1)]
    car = out[0]
    assert car.start_ns == T0 and car.kind == "line" and car.name == "gate"
    speeds = [40.0 + i for i in range(10)]
    assert car.speed_mean == pytest.approx(np.mean(speeds))
    assert car.speed_p85 == pytest.approx(np.percentile(speeds, 85))
    assert math.isnan(out[1].speed_mean)  # no speed known: NaN, not 0
    rest = agg.flush()
    assert [(b.start_ns, b.count) for b in rest] == [(T0 + MINUTE_NS, 1)]
    assert agg.flush() == []


def test_lane_buckets_average_the_minute():
    agg = TrafficAggregator()
    for f in range(40):
        agg.add_lane("c1", lane(T0 + f * S, 4, 6.0, 0.5, "F"))
    for f in range(40, 60):
        agg.add_lane("c1", lane(T0 + f * S, 1, math.nan, 0.1, "A"))
    (b,) = agg.flush()
    assert (b.kind, b.name, b.cls, b.direction) == ("lane", "n0", "all", "north")
    assert b.count == 3 and b.samples == 60  # (40 * 4 + 20 * 1) / 60 = 3
    assert b.occupancy == pytest.approx((40 * 0.5 + 20 * 0.1) / 60)
    assert b.speed_mean == pytest.approx(6.0)  # frames without a speed do not count
    assert b.los == "F"  # F for two thirds of the minute


def test_silent_camera_closes_by_its_arrival_clock():
    now = [100.0]
    agg = TrafficAggregator(lateness_s=1, clock=lambda: now[0])
    agg.add_crossing("c1", crossing(T0))
    now[0] = 101.0
    assert agg.pop_closed() == []  # not silent for longer than lateness_s yet
    now[0] = 101.5
    (b,) = agg.pop_closed()
    assert b.count == 1
    # A late crossing for the minute already written is dropped and counted, never written
    # again over the stored figures.
    agg.add_crossing("c1", crossing(T0 + 30 * S))
    assert agg.late == 1 and agg.flush() == []


def test_old_timestamps_do_not_close_minutes_early():
    """A camera whose clock is far behind this machine's (a replay) still fills its minutes."""
    agg = TrafficAggregator(lateness_s=5)
    for i in range(20):
        agg.add_crossing("c1", crossing(T0 + i * S))
        assert agg.pop_closed() == []
    assert agg.flush()[0].count == 20


def test_store_record():
    agg = TrafficAggregator()
    agg.add_crossing("c1", crossing(T0 + 3 * S, kmh=math.nan))
    rec = to_record(agg.flush()[0])
    assert rec.period == "1m" and rec.speed_mean is None and rec.los is None
    assert rec.start.timestamp() * 1e9 == T0


def test_p85_ignores_nan():
    assert math.isnan(p85([]))
    assert p85([1.0, math.nan, 3.0]) == pytest.approx(np.percentile([1.0, 3.0], 85))


def test_bad_lateness_refused():
    with pytest.raises(ValueError, match="lateness_s"):
        TrafficAggregator(lateness_s=-1)
