"""Congestion per lane group (the lanes of one road and direction; a lane without names is its
own group): at least ``min_vehicles`` vehicles on the group's lanes with a median ground speed
below ``max_kmh``, sustained for ``raise_s``, raises it; it is cleared (a Finding with
``closed=True``) once the condition has been off (fewer than ``clear_vehicles`` vehicles, or a
median speed above ``clear_kmh``) for ``clear_s``. Between the two thresholds nothing changes
(hysteresis). Each Finding carries the group's worst level of service (traffic.LaneMeter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, frame_view
from smartcity.incidents.rules.traffic import LaneMeter, LaneSample
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class CongestionSettings(Settings):
    min_vehicles: int = 5
    max_kmh: float = 10.0
    raise_s: float = 10.0
    clear_vehicles: int = 3
    clear_kmh: float = 20.0
    clear_s: float = 5.0
    grace_s: float = 1.0  # a gap in the condition this short does not restart the clock


@dataclass
class _Group:
    on_since: float | None = None
    off_since: float | None = None
    last_on: float | None = None
    active: bool = False


class Congestion(Rule):
    name = "congestion"
    s: CongestionSettings
    needs_calibration = True

    def __init__(
        self, geometry: CameraGeometry, settings: CongestionSettings | None = None
    ) -> None:
        super().__init__(geometry)
        self.s = settings or CongestionSettings()
        self.meter = LaneMeter(geometry)
        self.groups: dict[str, list[int]] = {}
        for k, lane in enumerate(geometry.lanes):
            self.groups.setdefault(lane.group, []).append(k)
        self.state = {g: _Group() for g in self.groups}
        #: the lane samples of the last frame (the traffic statistics read them)
        self.samples: list[LaneSample] = []

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        self.samples = self.meter.sample(v)
        out: list[Finding] = []
        t = frame.pts
        for g, members in self.groups.items():
            st = self.state[g]
            on = v.vehicle & np.isin(v.lane, members)
            n = int(on.sum())
            sp = v.speed[on]
            known = sp[np.isfinite(sp)]
            med = float(np.median(known)) if len(known) else math.nan
            cond = n >= self.s.min_vehicles and len(known) > 0 and med < self.s.max_kmh
            off = n < self.s.clear_vehicles or not (med <= self.s.clear_kmh)
            levels = [self.samples[k].level for k in members]
            worst = max(levels) if levels else "A"
            med_r = round(med, 1) if math.isfinite(med) else None
            details = {"group": g, "vehicles": n, "level": worst, "median_speed_kmh": med_r}
            if not st.active:
                if cond:
                    st.last_on = t
                    if st.on_since is None:
                        st.on_since = t
                    if t - st.on_since >= self.s.raise_s:
                        st.active, st.off_since = True, None
                        out.append(self.finding(frame, f"lane:{g}", details=details))
                elif st.last_on is None or t - st.last_on > self.s.grace_s:
                    st.on_since = None
            else:
                if off:
                    if st.off_since is None:
                        st.off_since = t
                    if t - st.off_since >= self.s.clear_s:
                        st.active, st.on_since, st.off_since = False, None, None
                        out.append(self.finding(frame, f"lane:{g}", closed=True, details=details))
                else:
                    st.off_since = None
        return out
