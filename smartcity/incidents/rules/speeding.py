"""Speeding: a vehicle's ground speed above its lane's limit plus ``margin_kmh`` for ``min_s``.

The speed is the median of the tracker's smoothed ground speed over the last ``window_s``
(robust to a single bad box). One Finding per track, with the highest speed seen, the limit
and the lane (severity: medium, high above the limit by 30 km/h, critical by 50).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, TrackStates, frame_view
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class SpeedingSettings(Settings):
    margin_kmh: float = 10.0
    min_s: float = 1.0
    window_s: float = 1.0
    default_limit_kmh: float = 0.0  # for lanes without a limit; 0: such lanes are not judged
    forget_s: float = 3.0


@dataclass
class _Speeds:
    hist: deque[tuple[float, float]] = field(default_factory=deque)
    over_since: float | None = None
    fired: bool = False
    top: float = 0.0


class Speeding(Rule):
    name = "speeding"
    s: SpeedingSettings
    needs_calibration = True

    def __init__(self, geometry: CameraGeometry, settings: SpeedingSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or SpeedingSettings()
        self.states: TrackStates[_Speeds] = TrackStates(_Speeds, self.s.forget_s)

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        for i in np.nonzero(v.vehicle & (v.lane >= 0) & np.isfinite(v.speed))[0]:
            lane = self.geometry.lanes[int(v.lane[i])]
            limit = lane.speed_limit_kmh or self.s.default_limit_kmh
            if not limit:
                continue
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            st.hist.append((frame.pts, float(v.speed[i])))
            while st.hist and frame.pts - st.hist[0][0] > self.s.window_s:
                st.hist.popleft()
            speed = float(np.median([s for _, s in st.hist]))
            if speed <= limit + self.s.margin_kmh:
                st.over_since = None
                continue
            st.top = max(st.top, speed)
            if st.over_since is None:
                st.over_since = frame.pts
            if not st.fired and frame.pts - st.over_since >= self.s.min_s:
                st.fired = True
                over = st.top - limit
                sev = "critical" if over >= 50 else "high" if over >= 30 else "medium"
                out.append(
                    self.finding(
                        frame, f"track:{tid}", (tid,), severity=sev,
                        details={"speed_kmh": round(st.top, 1), "limit_kmh": limit,
                                 "lane": lane.name},
                    )
                )  # fmt: skip
        self.states.prune(frame.pts)
        return out
