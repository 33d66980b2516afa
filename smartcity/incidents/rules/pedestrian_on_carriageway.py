"""Pedestrian on the carriageway: a person standing or walking on the road surface (the
geometry's ``carriageways``, or its lanes when none are given), off the pedestrian
``crossings``, for ``min_s``. Closed after ``leave_s`` off the road, or when the track vanishes.

A rider is no pedestrian: a "person" faster than ``max_kmh`` (a cyclist the detector took for a
person: 18 km/h along a lane), or whose box lies for ``rider_overlap`` of its area or more in
the box of a bicycle or motorcycle track (a detector that finds the rider and the machine
apart), counts as off the road in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, TrackStates, frame_view
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class PedestrianSettings(Settings):
    min_s: float = 2.0
    leave_s: float = 1.0
    grace_s: float = 0.5
    max_kmh: float = 15.0
    rider_overlap: float = 0.3
    forget_s: float = 3.0
    severity: str = "high"


@dataclass
class _OnRoad:
    since: float | None = None
    last_on: float | None = None
    off_since: float | None = None
    open: bool = False


_TWO_WHEELERS = [APPLIANCE_CLASSES.index(c) for c in ("bicycle", "motorcycle")]


def _riding(xyxy: np.ndarray, person: np.ndarray, wheels: np.ndarray, share: float) -> np.ndarray:
    """Per person box, whether ``share`` of its area or more lies in one of the ``wheels``
    boxes."""
    out = np.zeros(len(xyxy), dtype=bool)
    if not len(person) or not len(wheels) or share <= 0:
        return out
    p, w = xyxy[person][:, None, :], xyxy[wheels][None, :, :]
    iw = np.clip(np.minimum(p[..., 2], w[..., 2]) - np.maximum(p[..., 0], w[..., 0]), 0, None)
    ih = np.clip(np.minimum(p[..., 3], w[..., 3]) - np.maximum(p[..., 1], w[..., 1]), 0, None)
    area = np.maximum((p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1]), 1e-6)
    out[person] = ((iw * ih) / area >= share).any(axis=1)
    return out


class PedestrianOnCarriageway(Rule):
    name = "pedestrian_on_carriageway"
    s: PedestrianSettings

    def __init__(
        self, geometry: CameraGeometry, settings: PedestrianSettings | None = None
    ) -> None:
        super().__init__(geometry)
        self.s = settings or PedestrianSettings()
        self.road = geometry.carriageways or geometry.lanes
        self.states: TrackStates[_OnRoad] = TrackStates(_OnRoad, self.s.forget_s)

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        on = np.zeros(len(v.ids), dtype=bool)
        for r in self.road:
            on |= r.contains(v.px, v.ground)
        for r in self.geometry.crossings:
            on &= ~r.contains(v.px, v.ground)
        on &= ~(v.speed > self.s.max_kmh)  # NaN (not known yet) compares False: kept
        xyxy = np.asarray(frame.xyxy, np.float64).reshape(-1, 4)
        wheels = np.nonzero(np.isin(v.cls, _TWO_WHEELERS))[0]
        on &= ~_riding(xyxy, np.nonzero(v.person)[0], wheels, self.s.rider_overlap)
        t = frame.pts
        for i in np.nonzero(v.person)[0]:
            tid = int(v.ids[i])
            st = self.states.get(tid, t)
            if on[i]:
                st.last_on, st.off_since = t, None
                if st.since is None:
                    st.since = t
                if not st.open and t - st.since >= self.s.min_s:
                    st.open = True
                    out.append(
                        self.finding(frame, f"track:{tid}", (tid,), severity=self.s.severity,
                                     details={"x_m": round(float(v.ground[i, 0]), 2),
                                              "y_m": round(float(v.ground[i, 1]), 2)})
                    )  # fmt: skip
                continue
            if st.off_since is None:
                st.off_since = t
            if not st.open and st.last_on is not None and t - st.last_on > self.s.grace_s:
                st.since = None
            if st.open and t - st.off_since >= self.s.leave_s:
                st.open, st.since = False, None
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        for tid, st in self.states.prune(t):
            if st.open:
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        return out
