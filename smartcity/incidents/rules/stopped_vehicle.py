"""Stopped vehicle / illegal parking: a vehicle standing (ground speed below ``max_kmh``) in a
live lane for ``min_s``, or in a no-stopping area for ``no_stopping_min_s``.

Not a stopped vehicle: one queued behind something (another track standing or slow within
``queue_gap_m`` ahead of it in its lane's direction and ``queue_lateral_m`` across), unless a
crash involved it; and one in a waiting area (before a stop line) for less than
``waiting_max_s``: a queue at a red light is traffic, not an incident. Either resets the clock.
Closed when the vehicle moves on or vanishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import FrameView, Rule, Settings, TrackStates, frame_view
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class StoppedSettings(Settings):
    max_kmh: float = 3.0
    min_s: float = 8.0
    no_stopping_min_s: float = 30.0
    grace_s: float = 0.6  # moving this briefly does not reset the clock (jitter)
    queue_gap_m: float = 14.0  # ground points (box bottom centres) this close ahead: queued
    queue_lateral_m: float = 2.0
    queue_ahead_kmh: float = 15.0  # ... when the one ahead is no faster than this
    jam_range_m: float = 40.0  # slow vehicles in another lane of its road and direction this
    #                            close along the road: a jam, not a stopped vehicle
    waiting_max_s: float = 120.0
    forget_s: float = 3.0
    severity: str = "high"


@dataclass
class _Still:
    since: float | None = None
    moving_since: float | None = None
    waiting_since: float | None = None
    open: bool = False


class StoppedVehicle(Rule):
    name = "stopped_vehicle"
    s: StoppedSettings
    needs_calibration = True

    def __init__(self, geometry: CameraGeometry, settings: StoppedSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or StoppedSettings()
        self.states: TrackStates[_Still] = TrackStates(_Still, self.s.forget_s)
        #: track ids a crash involved (set by the crash rule in a RuleSet): never "queued"
        self.crashed: Callable[[], set[int]] = set

    def _queued(self, v: FrameView, i: int, direction: np.ndarray) -> bool:
        rel = v.ground - v.ground[i]
        ahead = rel @ direction
        lateral = np.abs(rel[:, 0] * direction[1] - rel[:, 1] * direction[0])
        slow = ~(v.speed > self.s.queue_ahead_kmh)  # NaN counts as slow
        near = (ahead > 0.5) & (ahead <= self.s.queue_gap_m) & (lateral <= self.s.queue_lateral_m)
        near &= slow
        near[i] = False
        return bool(near.any())

    def _jammed(self, v: FrameView, i: int, direction: np.ndarray) -> bool:
        lanes = self.geometry.lanes
        group = lanes[int(v.lane[i])].group
        same = np.array([k >= 0 and lanes[int(k)].group == group for k in v.lane], dtype=bool)
        # a jam is vehicles known to be slow: a track too young for a speed (NaN) is no evidence
        other = same & (v.lane != v.lane[i]) & v.vehicle & (v.speed <= self.s.queue_ahead_kmh)
        along = np.abs((v.ground - v.ground[i]) @ direction)
        return bool((other & (along <= self.s.jam_range_m)).any())

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        geo = self.geometry
        out: list[Finding] = []
        crashed = self.crashed()
        no_stop = np.zeros(len(v.ids), dtype=bool)
        for r in geo.no_stopping:
            no_stop |= r.contains(v.px, v.ground)
        waiting = np.zeros(len(v.ids), dtype=bool)
        for r in geo.waiting_areas:
            waiting |= r.contains(v.px, v.ground)
        for i in np.nonzero(v.vehicle & ((v.lane >= 0) | no_stop))[0].tolist():
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            still = bool(v.speed[i] < self.s.max_kmh)
            in_lane = v.lane[i] >= 0
            exempt = False
            if in_lane and tid not in crashed:
                lane = geo.lanes[int(v.lane[i])]
                gd = lane.ground_direction
                if gd is not None and (self._queued(v, i, gd) or self._jammed(v, i, gd)):
                    exempt = True
                if waiting[i] and still:
                    if st.waiting_since is None:
                        st.waiting_since = frame.pts
                    exempt = exempt or frame.pts - st.waiting_since < self.s.waiting_max_s
                else:
                    st.waiting_since = None
            if not still or exempt:
                if st.moving_since is None:
                    st.moving_since = frame.pts
                if exempt or frame.pts - st.moving_since >= self.s.grace_s:
                    st.since = None
                    if st.open and not exempt:
                        st.open = False
                        out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                                severity=self.s.severity))  # fmt: skip
                continue
            st.moving_since = None
            if st.since is None:
                st.since = frame.pts
            limit = self.s.min_s if in_lane else self.s.no_stopping_min_s
            if not st.open and frame.pts - st.since >= limit:
                st.open = True
                where = geo.lanes[int(v.lane[i])].name if in_lane else "no_stopping"
                out.append(
                    self.finding(
                        frame, f"track:{tid}", (tid,), severity=self.s.severity,
                        details={"where": where, "stopped_s": round(frame.pts - st.since, 1),
                                 "x_m": round(float(v.ground[i, 0]), 2),
                                 "y_m": round(float(v.ground[i, 1]), 2)},
                    )
                )  # fmt: skip
        for tid, st in self.states.prune(frame.pts):
            if st.open:
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        return out
