"""Minute buckets of traffic statistics from crossings and lane samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smartcity.incidents.traffic import (
    MINUTE_NS,
    TrafficAggregator,
    level_of_service,
    p85,
)

T0 = 1_790_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS  # a whole minute


def test_crossings_sum_per_minute_class_and_direction():
    agg = TrafficAggregator(lateness_s=5)
    for i in range(10):
        agg.add_crossing("c1", "gate", "car", "in", T0 + i * 5_000_000_000, 40.0 + i)
    agg.add_crossing("c1", "gate", "truck", "out", T0 + 10_000_000_000, math.nan)
    agg.add_crossing("c1", "gate", "car", "in", T0 + MINUTE_NS + 1, 50.0)
    assert agg.pop_closed() == []  # frames have not moved past the first minute + lateness
    agg.advance("c1", T0 + MINUTE_NS + 6_000_000_000)
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


def test_lane_buckets_count_distinct_vehicles_and_mean_occupancy():
    agg = TrafficAggregator()
    for f in range(50):
        t = T0 + f * 1_000_000_000
        agg.add_lane_sample("c1", "n0", "north", t, 0.5, [1, 2], [5.0, 7.0], free_flow_kmh=50)
    agg.add_lane_sample("c1", "n0", "north", T0 + 51_000_000_000, 0.0, [], [], 50)
    (b,) = agg.flush()
    assert b.count == 2 and b.samples == 51
    assert b.occupancy == pytest.approx(25 / 51)
    assert b.speed_mean == pytest.approx(6.0)
    assert b.los == "F"  # 6 km/h on a 50 km/h lane


def test_silent_camera_closes_by_wall_clock():
    agg = TrafficAggregator(lateness_s=1)
    agg.add_crossing("c1", "gate", "car", "in", T0, 30.0)
    assert agg.pop_closed(now_ns=T0 + MINUTE_NS) == []
    assert len(agg.pop_closed(now_ns=T0 + MINUTE_NS + 2_000_000_000)) == 1


def test_level_of_service_bands():
    assert level_of_service(0.05, 48, 50) == "A"
    assert level_of_service(0.05, 30, 50) == "C"  # speed decides
    assert level_of_service(0.40, 48, 50) == "E"  # occupancy decides
    assert level_of_service(0.9, math.nan, 50) == "F"
    assert level_of_service(0.0, math.nan, math.nan) == "A"


def test_p85_ignores_nan():
    assert math.isnan(p85([]))
    assert p85([1.0, math.nan, 3.0]) == pytest.approx(np.percentile([1.0, 3.0], 85))


def test_bad_lateness_refused():
    with pytest.raises(ValueError, match="lateness_s"):
        TrafficAggregator(lateness_s=-1)
