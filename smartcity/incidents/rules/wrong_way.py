"""Wrong-way driving: a vehicle moving against its lane's direction over ``min_distance_m``.

Each vehicle's progress along the lane's ground direction is followed; the distance it has gone
back from the furthest point it reached (in the lane's direction) is the distance driven the
wrong way, which jitter of a standing vehicle cannot build up. It must also be moving
(``min_speed_kmh``). A vehicle that changes to a lane of another direction starts afresh, and so
does a track whose ground point jumps faster than ``max_step_kmh`` between two frames (no
vehicle does that: the tracker took over another object, typically the next car of a queue far
away, where a pixel is metres). One Finding per track (severity high); closed when the track
vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, TrackStates, frame_view
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class WrongWaySettings(Settings):
    min_distance_m: float = 15.0
    min_speed_kmh: float = 5.0
    max_step_kmh: float = 250.0
    forget_s: float = 3.0
    severity: str = "high"


@dataclass
class _Progress:
    direction: tuple[float, float] | None = None
    best: float = -np.inf  # furthest progress along the lane direction, metres
    lane: str = ""
    fired: bool = False
    last: tuple[float, float] | None = None  # (progress s, pts) of the previous frame


class WrongWay(Rule):
    name = "wrong_way"
    s: WrongWaySettings
    needs_calibration = True

    def __init__(self, geometry: CameraGeometry, settings: WrongWaySettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or WrongWaySettings()
        self.states: TrackStates[_Progress] = TrackStates(_Progress, self.s.forget_s)

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        lanes = self.geometry.lanes
        for i in np.nonzero(v.vehicle & (v.lane >= 0) & v.metric)[0]:
            lane = lanes[int(v.lane[i])]
            g = lane.ground_direction
            if g is None or not np.all(np.isfinite(v.ground[i])):
                continue
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            d = (float(g[0]), float(g[1]))
            if st.direction is None or np.dot(st.direction, d) < 0.9:
                st.direction, st.best, st.lane = d, -np.inf, lane.name
            s = float(v.ground[i] @ np.asarray(d))
            if st.last is not None and frame.pts > st.last[1]:
                step_kmh = abs(s - st.last[0]) / (frame.pts - st.last[1]) * 3.6
                if step_kmh > self.s.max_step_kmh:
                    st.best = -np.inf  # a jump, not a drive: start afresh
            st.last = (s, frame.pts)
            st.best = max(st.best, s)
            back = st.best - s
            moving = not np.isfinite(v.speed[i]) or v.speed[i] >= self.s.min_speed_kmh
            if not st.fired and back >= self.s.min_distance_m and moving:
                st.fired = True
                out.append(
                    self.finding(
                        frame, f"track:{tid}", (tid,), severity=self.s.severity,
                        details={"lane": st.lane, "distance_m": round(back, 1),
                                 "speed_kmh": round(float(v.speed[i]), 1)
                                 if np.isfinite(v.speed[i]) else None},
                    )
                )  # fmt: skip
        for tid, st in self.states.prune(frame.pts):
            if st.fired:
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        return out
