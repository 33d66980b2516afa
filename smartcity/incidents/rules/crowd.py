"""Crowd gathering: at least ``min_people`` people within ``radius_m`` of one of them (ground,
needs a calibration), or inside one of the named geometry ``zones`` (pixels are fine), for
``min_s``; cleared (closed) after the count stayed below ``clear_people`` for ``clear_s``.
Optionally a fast rise (``rise_people`` more people within ``rise_s``) raises it at once.

People in a crowd hide one another: a detector finds each of them in some frames only. A
person seen within the last ``hold_s`` (and not seen in this frame) is counted where they were
last seen, so the count is of the people there, not of the boxes of one frame; unless a
person seen now stands within ``hold_merge_m`` of that place (the tracker gave the same person
a new id: counted once). Only a track seen over at least ``hold_min_s`` is held: far away a
detector can find a cyclist as two or three person boxes that each last a few frames, and a
string of short-lived ids held for ``hold_s`` each counted one rider many times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, frame_view, require
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class CrowdSettings(Settings):
    min_people: int = 8
    radius_m: float = 4.0
    min_s: float = 4.0
    clear_people: int = 6
    clear_s: float = 3.0
    grace_s: float = 1.0
    rise_people: int = 0  # 0: off
    rise_s: float = 10.0
    zones: tuple[str, ...] = ()  # geometry zone names; empty: the radius around each person
    hold_s: float = 1.5  # a person not seen for up to this long is still counted (0: off)
    hold_merge_m: float = 0.7  # ... unless someone seen now stands this close to that place
    hold_min_s: float = 1.0  # ... and only a track seen over this long (not a flicker of ids)
    severity: str = "medium"

    def check(self, path: str) -> None:
        require(self.min_people >= 2, f"{path}.min_people", "must be at least 2")
        require(self.clear_people <= self.min_people, f"{path}.clear_people",
                "must not exceed min_people")  # fmt: skip


@dataclass
class _Area:
    on_since: float | None = None
    last_on: float | None = None
    off_since: float | None = None
    active: bool = False
    hist: deque[tuple[float, int]] = field(default_factory=deque)


class Crowd(Rule):
    name = "crowd"
    s: CrowdSettings

    def __init__(self, geometry: CameraGeometry, settings: CrowdSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or CrowdSettings()
        names = {z.name: z for z in geometry.zones}
        for i, z in enumerate(self.s.zones):
            require(z in names, f"cameras.{geometry.cam}.rules.crowd.zones[{i}]",
                    f"no zone named {z!r} in the geometry")  # fmt: skip
        self.zones = [names[z] for z in self.s.zones]
        self.needs_metres = not self.zones
        self.areas: dict[str, _Area] = {}
        # person track id -> (pts, pixel point, ground point) where last seen, and when first seen
        self.seen: dict[int, tuple[float, np.ndarray, np.ndarray, float]] = {}

    def _people(self, frame: FrameTracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids, pixel points and ground points of the people seen now or within hold_s."""
        v = frame_view(frame, self.geometry)
        t = frame.pts
        for i in np.nonzero(v.person)[0]:
            tid = int(v.ids[i])
            first = self.seen[tid][3] if tid in self.seen else t
            self.seen[tid] = (t, v.px[i].copy(), v.ground[i].copy(), first)
        for tid in [k for k, x in self.seen.items() if t - x[0] > self.s.hold_s]:
            del self.seen[tid]
        count = {k: x for k, x in self.seen.items()
                 if x[0] == t or x[0] - x[3] >= self.s.hold_min_s}  # fmt: skip
        ids = np.array(list(count), np.int64)
        px = np.array([x[1] for x in count.values()], np.float64).reshape(-1, 2)
        g = np.array([x[2] for x in count.values()], np.float64).reshape(-1, 2)
        now = np.array([x[0] == t for x in count.values()], dtype=bool)
        held = np.nonzero(~now)[0]
        if len(held) and now.any() and self.s.hold_merge_m > 0:
            d = np.hypot(g[held, None, 0] - g[None, now, 0], g[held, None, 1] - g[None, now, 1])
            near = (d <= self.s.hold_merge_m).any(axis=1)  # NaN (uncalibrated) is never near
            keep = np.ones(len(ids), dtype=bool)
            keep[held[near]] = False
            ids, px, g = ids[keep], px[keep], g[keep]
        return ids, px, g

    def _counts(self, frame: FrameTracks) -> dict[str, tuple[int, list[int]]]:
        ids, px, g = self._people(frame)
        out: dict[str, tuple[int, list[int]]] = {}
        if self.zones:
            for z in self.zones:
                inside = z.contains(px, g) if len(ids) else np.zeros(0, bool)
                out[f"zone:{z.name}"] = (int(inside.sum()), ids[inside].tolist())
            return out
        ok = np.all(np.isfinite(g), axis=1)
        ids, g = ids[ok], g[ok]
        if len(ids) == 0:
            out["crowd"] = (0, [])
            return out
        d = np.hypot(g[:, None, 0] - g[None, :, 0], g[:, None, 1] - g[None, :, 1])
        close = d <= self.s.radius_m
        c = int(np.argmax(close.sum(axis=1)))
        out["crowd"] = (int(close[c].sum()), ids[close[c]].tolist())
        return out

    def _update(self, frame: FrameTracks) -> list[Finding]:
        out: list[Finding] = []
        t = frame.pts
        for key, (n, ids) in self._counts(frame).items():
            st = self.areas.setdefault(key, _Area())
            st.hist.append((t, n))
            while st.hist and t - st.hist[0][0] > self.s.rise_s:
                st.hist.popleft()
            details = {"people": n}
            if not st.active:
                rising = (
                    self.s.rise_people > 0 and n - min(c for _, c in st.hist) >= self.s.rise_people
                )
                if n >= self.s.min_people or rising:
                    st.last_on = t
                    if st.on_since is None:
                        st.on_since = t
                    if rising or t - st.on_since >= self.s.min_s:
                        st.active, st.off_since = True, None
                        details["rising"] = rising
                        out.append(self.finding(frame, key, tuple(ids), severity=self.s.severity,
                                                details=details))  # fmt: skip
                elif st.last_on is None or t - st.last_on > self.s.grace_s:
                    st.on_since = None
            elif n < self.s.clear_people:
                if st.off_since is None:
                    st.off_since = t
                if t - st.off_since >= self.s.clear_s:
                    st.active, st.on_since = False, None
                    out.append(self.finding(frame, key, tuple(ids), closed=True,
                                            severity=self.s.severity, details=details))  # fmt: skip
            else:
                st.off_since = None
        return out
