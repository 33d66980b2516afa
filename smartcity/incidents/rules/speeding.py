"""Speeding: a vehicle's ground speed above its lane's limit plus ``margin_kmh`` for ``min_s``, or
over ``min_m`` of road if that comes first (a fast vehicle crosses the view in under a second),
in at least ``min_frames`` frames.

The speed is the median of the tracker's smoothed ground speed over the last ``window_s``
(robust to a single bad box), and the straight line fitted to the track's ground points over
that window must clear the threshold by ``confidence_z`` standard errors of its slope: far
away, where a pixel of box bottom is metres, a box that grows and shrinks or slides onto
another vehicle makes a fast "speed" with a wide scatter, a real speeder a tight line. At a low
analysis rate (under ~3 frames a second) the window holds fewer than the three points a line
and its scatter need: the last three are fitted then (``low_rate_s``: reaching at most that far
back).

Ground points are kept from a track's first frame, not only once the tracker gives it a speed
(after half its speed window): the line is then sure from the first frame with a speed, where
it needed three more frames, and a 160 km/h motorcycle seen for under a second covers
``min_m`` before it leaves the view.

One Finding per vehicle, with the highest speed seen, the limit
and the lane (severity: medium, high above the limit by 30 km/h, critical by 50): a candidate
where a reported vehicle of the same direction was heading (within ``rejoin_m`` plus a quarter
of the distance it could have driven, seen at most ``rejoin_s`` before: its track lost and
found again under a new id) is that vehicle and opens nothing new.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import (
    ReportedVehicles,
    Rule,
    Settings,
    TrackStates,
    frame_view,
    ground_line,
)
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class SpeedingSettings(Settings):
    margin_kmh: float = 10.0
    min_s: float = 1.0
    min_m: float = 20.0  # ... or over this much road, whichever comes first (0: time only)
    min_frames: int = 3  # ... and over in at least this many frames
    window_s: float = 1.0
    confidence_z: float = 2.0  # ... and the fitted speed less this many standard errors too
    low_rate_s: float = 3.0  # fewer than 3 ground points in window_s: the last 3 within this
    default_limit_kmh: float = 0.0  # for lanes without a limit; 0: such lanes are not judged
    rejoin_s: float = 10.0
    rejoin_m: float = 15.0
    forget_s: float = 3.0


@dataclass
class _Speeds:
    hist: deque[tuple[float, float]] = field(default_factory=deque)
    over_since: float | None = None
    over_at: tuple[float, float] | None = None  # where it was when over_since began
    over_frames: int = 0
    fired: bool = False
    key: str = ""  # the incident of its vehicle, once it fired or was found to be a reported one
    top: float = 0.0
    ground: deque[tuple[float, float, float]] = field(default_factory=deque)  # t, x, y


class Speeding(Rule):
    name = "speeding"
    s: SpeedingSettings
    needs_calibration = True

    def __init__(self, geometry: CameraGeometry, settings: SpeedingSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or SpeedingSettings()
        self.states: TrackStates[_Speeds] = TrackStates(_Speeds, self.s.forget_s)
        self.reported = ReportedVehicles(self.s.rejoin_s, self.s.rejoin_m)
        self._keep_s = max(1.5, self.s.window_s, self.s.low_rate_s)  # ground points kept

    def _sure(self, st: _Speeds, threshold_kmh: float) -> bool:
        """Whether the speed fitted to the ground points of the last window_s (a least-squares
        line per axis) less confidence_z standard errors is above the threshold."""
        if not self.s.confidence_z or not st.ground:
            return True
        t1 = st.ground[-1][0]
        pts = np.array([p for p in st.ground if t1 - p[0] <= self.s.window_s + 1e-9])
        if len(pts) < 3:
            pts = np.array([p for p in list(st.ground)[-3:] if t1 - p[0] <= self.s.low_rate_s])
        line = ground_line(pts)
        if line is None:
            return False
        vel, se = line
        v = float(np.hypot(*vel))
        if v <= 0:
            return False
        se_v = float(np.hypot(vel[0] * se[0], vel[1] * se[1])) / v
        return (v - self.s.confidence_z * se_v) * 3.6 > threshold_kmh

    def _sustained(self, st: _Speeds, pts: float, here: tuple[float, float] | None) -> bool:
        """Over the threshold for min_s, or over min_m of road (a fast vehicle crosses a
        camera's view in less than a second), in at least min_frames frames either way."""
        if st.over_since is None or st.over_frames < self.s.min_frames:
            return False
        if pts - st.over_since >= self.s.min_s:
            return True
        if not self.s.min_m or here is None or st.over_at is None:
            return False
        return math.hypot(here[0] - st.over_at[0], here[1] - st.over_at[1]) >= self.s.min_m

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        for i in np.nonzero(v.vehicle & (v.lane >= 0))[0]:
            lane = self.geometry.lanes[int(v.lane[i])]
            limit = lane.speed_limit_kmh or self.s.default_limit_kmh
            if not limit:
                continue
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            gd = lane.ground_direction
            way = None if gd is None else (float(gd[0]), float(gd[1]))
            if np.all(np.isfinite(v.ground[i])):
                st.ground.append((frame.pts, float(v.ground[i, 0]), float(v.ground[i, 1])))
                while frame.pts - st.ground[0][0] > self._keep_s:
                    st.ground.popleft()
            if not np.isfinite(v.speed[i]):  # the tracker has no speed yet: points kept only
                continue
            if st.key and st.ground:
                self.reported.seen(st.key, st.ground, way)
            st.hist.append((frame.pts, float(v.speed[i])))
            while st.hist and frame.pts - st.hist[0][0] > self.s.window_s:
                st.hist.popleft()
            speed = float(np.median([s for _, s in st.hist]))
            if speed <= limit + self.s.margin_kmh or not self._sure(st, limit + self.s.margin_kmh):
                st.over_since, st.over_at, st.over_frames = None, None, 0
                continue
            st.top = max(st.top, speed)
            here = (st.ground[-1][1], st.ground[-1][2]) if st.ground else None
            if st.over_since is None:
                st.over_since, st.over_at = frame.pts, here
            st.over_frames += 1
            if not st.key and self._sustained(st, frame.pts, here):
                if st.ground:
                    g = np.array(st.ground[-1][1:], np.float64)
                    st.key = self.reported.match(frame.pts, g, way)
                    if st.key:  # the same vehicle, reported already under another track
                        continue
                st.fired, st.key = True, f"track:{tid}"
                if st.ground:
                    self.reported.seen(st.key, st.ground, way)
                over = st.top - limit
                sev = "critical" if over >= 50 else "high" if over >= 30 else "medium"
                out.append(
                    self.finding(
                        frame, st.key, (tid,), severity=sev,
                        details={"speed_kmh": round(st.top, 1), "limit_kmh": limit,
                                 "lane": lane.name},
                    )
                )  # fmt: skip
        self.states.prune(frame.pts)
        self.reported.prune(frame.pts)
        return out
