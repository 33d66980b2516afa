"""Loitering: one person staying within ``radius_m`` of where a window began for ``min_s``.

Per person a history of ground points (pixels for an uncalibrated camera, with ``radius_px``);
points farther than the radius from the newest are dropped from the front, so the history's
span is how long the person has stayed near. A person's track that is lost (not seen for up to
``rejoin_s``) hands its history on to the track nearest its last point (within ``rejoin_m``,
``rejoin_px`` uncalibrated) that began after it: the same person under a new id (the detector
lost them behind someone, or a second track took over) keeps their stay. One Finding per
person; closed when they leave (the span falls back under ``min_s``) or vanish. Only people
inside ``zones`` when given.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import (
    Rule,
    Settings,
    TrackStates,
    box_iou,
    frame_view,
    require,
)
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class LoiteringSettings(Settings):
    radius_m: float = 6.0
    radius_px: float = 60.0
    min_s: float = 30.0
    rejoin_s: float = 2.0
    rejoin_m: float = 1.5
    rejoin_px: float = 15.0
    rejoin_iou: float = 0.3  # ... or a box overlapping its last box this much (0: off)
    forget_s: float = 5.0
    zones: tuple[str, ...] = ()
    severity: str = "low"


@dataclass
class _Stay:
    hist: deque[tuple[float, float, float]] = field(default_factory=deque)
    open: bool = False
    box: tuple[float, float, float, float] | None = None  # its last box, image pixels


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

    def _began_after(self, other: int, st: _Stay) -> bool:
        """Whether track ``other``'s history (none yet counts) began after that of ``st``."""
        o = self.states.peek(other)
        return o is None or not o.hist or o.hist[0][0] > st.hist[0][0]

    def _hand_over(
        self, now: float, ids: np.ndarray, pts: np.ndarray, boxes: np.ndarray, reach: float
    ) -> None:
        """Each track lost within rejoin_s (not reported) gives its history to the nearest
        track seen now within ``reach`` of its last point whose own history began later;
        failing that, to the one whose box overlaps its last box most (IoU of ``rejoin_iou``
        or more). Far away a second box on the same person (their upper body, a few pixels
        shorter) puts the ground point metres off: the boxes still overlap. A history handed
        on is gone from the giver; a track that received one hands it on again when it is lost
        in turn, and a giver seen again gathers a new one (a person missed for a frame beside
        a second box on them hands their stay to that box, and takes it back when it goes)."""
        here = {int(t): k for k, t in enumerate(ids)}
        for tid, st in self.states.items():
            if tid in here or st.open or not st.hist:
                continue
            t_last, x, y = st.hist[-1]
            if now - t_last > self.s.rejoin_s:
                continue
            later = [(other, k) for other, k in here.items() if self._began_after(other, st)]
            best, best_d = None, reach
            for other, k in later:
                d = float(np.hypot(pts[k, 0] - x, pts[k, 1] - y))
                if d <= best_d:
                    best, best_d = other, d
            if best is None and self.s.rejoin_iou > 0 and st.box is not None:
                best_iou = self.s.rejoin_iou
                for other, k in later:
                    iou = box_iou(st.box, boxes[k])
                    if iou >= best_iou:
                        best, best_iou = other, iou
            if best is None:
                continue
            o = self.states.get(best, now)
            o.hist = deque(sorted([*st.hist, *o.hist]))
            st.hist.clear()

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
        xyxy = np.asarray(frame.xyxy, np.float64).reshape(-1, 4)
        self._hand_over(frame.pts, v.ids[sel], pts[sel], xyxy[sel], self.s.rejoin_m if self.metres
                        else self.s.rejoin_px)  # fmt: skip
        for i in np.nonzero(sel)[0]:
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            x, y = float(pts[i, 0]), float(pts[i, 1])
            st.hist.append((frame.pts, x, y))
            st.box = (xyxy[i, 0], xyxy[i, 1], xyxy[i, 2], xyxy[i, 3])
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
