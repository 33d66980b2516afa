"""Loitering: one person staying within ``radius_m`` of where a window began for ``min_s``.

Per person a history of ground points (pixels for an uncalibrated camera, with ``radius_px``);
points farther than the radius from the newest are dropped from the front, so the history's
span is how long the person has stayed near. One Finding per person; closed when they leave
(the span falls back under ``min_s``) or vanish. Only people inside ``zones`` when given.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, TrackStates, frame_view, require
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class LoiteringSettings(Settings):
    radius_m: float = 6.0
    radius_px: float = 60.0
    min_s: float = 30.0
    forget_s: float = 5.0
    zones: tuple[str, ...] = ()
    severity: str = "low"


@dataclass
class _Stay:
    hist: deque[tuple[float, float, float]] = field(default_factory=deque)
    open: bool = False


class Loitering(Rule):
    name = "loitering"
    s: LoiteringSettings

    def __init__(self, geometry: CameraGeometry, settings: LoiteringSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or LoiteringSettings()
        names = {z.name: z for z in geometry.zones}
        for i, z in enumerate(self.s.zones):
            require(z in names, f"cameras.{geometry.cam}.rules.loitering.zones[{i}]",
                    f"no zone named {z!r} in the geometry")  # fmt: skip
        self.zones = [names[z] for z in self.s.zones]
        self.metres = geometry.calibrated
        self.states: TrackStates[_Stay] = TrackStates(_Stay, self.s.forget_s)

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        pts = v.ground if self.metres else v.px
        r = self.s.radius_m if self.metres else self.s.radius_px
        sel = v.person & np.all(np.isfinite(pts), axis=1)
        if self.zones:
            inz = np.zeros(len(sel), dtype=bool)
            for z in self.zones:
                inz |= z.contains(v.px, v.ground)
            sel &= inz
        for i in np.nonzero(sel)[0]:
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            x, y = float(pts[i, 0]), float(pts[i, 1])
            st.hist.append((frame.pts, x, y))
            while st.hist and np.hypot(st.hist[0][1] - x, st.hist[0][2] - y) > r:
                st.hist.popleft()
            span = frame.pts - st.hist[0][0]
            if not st.open and span >= self.s.min_s:
                st.open = True
                out.append(self.finding(frame, f"track:{tid}", (tid,), severity=self.s.severity,
                                        details={"stayed_s": round(span, 1)}))  # fmt: skip
            elif st.open and span < self.s.min_s / 2:
                st.open = False
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        for tid, st in self.states.prune(frame.pts):
            if st.open:
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        return out
