"""Line crossing and counting per line, class and direction.

Each track's side of each line is remembered; it changes only when the track's point is more
than ``band`` (metres for ground lines, pixels for image lines) away from the line, so jitter on
the line never counts twice (hysteresis). A change of side is one crossing when the step between
the last point on the old side and the new point passes between a and b (within
``end_margin`` of the line's length). The point is the track's ground point for ground lines,
the bottom centre of its box for image lines.

A change of side counts once it is settled: the track has gone ``settle_m`` (``settle_px`` for
image lines) beyond the line and, for a person, stayed on the new side for ``person_dwell_s``;
or it vanished on the new side before that (counted when the track is forgotten, or by
``flush`` at the end of a stream). A track that comes back over the line before its change of
side is settled was never across: a car standing on a stop line, its box bottom jumping by
metres as the detector's box changes, or a bus turning along the line, counts once when it
drives on, not at every jump. A person standing in a crowd astride a line, whose box bottom
jumps by metres as others hide their feet, flips sides for moments and is not a crossing either.
The crossing keeps the time (and speed) of its first frame on the new side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry, Line
from smartcity.incidents.rules.base import (
    PERSON,
    Rule,
    Settings,
    TrackStates,
    class_ids,
    class_name,
    frame_view,
    require,
)
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class LineSettings(Settings):
    band_m: float = 0.3  # hysteresis half-width for ground lines
    band_px: float = 3.0  # ... and for image lines
    end_margin: float = 0.05  # fraction of the line's length beyond a and b still counted
    classes: tuple[str, ...] = ()  # counted classes; empty: all
    alert: bool = False  # also emit a Finding per crossing (a tripwire)
    alert_direction: str = "any"  # in | out | any
    settle_m: float = 2.0  # a change of side counts once this far beyond a ground line ...
    settle_px: float = 8.0  # ... or an image line
    dwell_s: float = 0.0  # ... and this long on the new side ...
    person_dwell_s: float = 1.0  # ... for people (their feet hide in a crowd)
    recross_s: float = 10.0  # a track crossing a line it was counted on this recently: not again
    forget_s: float = 3.0

    def check(self, path: str) -> None:
        require(self.alert_direction in ("in", "out", "any"), f"{path}.alert_direction",
                "must be in, out or any")  # fmt: skip
        for k in ("band_m", "band_px", "settle_m", "settle_px", "dwell_s", "person_dwell_s",
                  "recross_s"):  # fmt: skip
            require(getattr(self, k) >= 0, f"{path}.{k}", "must be 0 or more")
        class_ids(self.classes, f"{path}.classes")


@dataclass(frozen=True)
class Crossing:
    """One track crossing one line: direction ``in`` (towards the line's "in" side) or ``out``."""

    line: str
    track_id: int
    class_id: int
    direction: str
    pts: float
    t_ns: int
    speed_kmh: float  # NaN when unknown


_Point = tuple[float, float, float]  # x, y, signed distance from the line
# a change of side not counted yet: new side, pts, t_ns, class id, speed, the first point on
# the new side, the last point on the old side
_Pending = tuple[int, float, int, int, float, _Point, _Point]


@dataclass
class _Side:
    side: dict[str, int] = field(default_factory=dict)  # line -> -1 / +1
    last: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # x, y, signed d
    pending: dict[str, _Pending] = field(default_factory=dict)  # line -> its change of side
    counted: dict[str, float] = field(default_factory=dict)  # line -> pts of its last crossing


class LineCrossing(Rule):
    """``update(frame)`` returns Findings (only with ``alert``); the crossings of the frame are
    in ``events`` and the running totals in ``counts[line][direction][class name]``."""

    name = "line_crossing"
    s: LineSettings

    def __init__(self, geometry: CameraGeometry, settings: LineSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or LineSettings()
        self.classes = class_ids(self.s.classes, "classes") or None
        self.lines = geometry.lines
        self.line_by_name = {ln.name: ln for ln in self.lines}
        self.states: TrackStates[_Side] = TrackStates(_Side, self.s.forget_s)
        self.events: list[Crossing] = []
        self.counts: dict[str, dict[str, dict[str, int]]] = {
            ln.name: {"in": {}, "out": {}} for ln in self.lines
        }

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        self.events = []
        out: list[Finding] = []
        for line in self.lines:
            pts = v.ground if line.space == "ground" else v.px
            band = self.s.band_m if line.space == "ground" else self.s.band_px
            settle = self.s.settle_m if line.space == "ground" else self.s.settle_px
            d = line.side(pts) if len(pts) else np.zeros(0)
            for i in range(len(v.ids)):
                if self.classes is not None and int(v.cls[i]) not in self.classes:
                    continue
                if not np.isfinite(d[i]):
                    continue
                tid = int(v.ids[i])
                st = self.states.get(tid, frame.pts)
                if abs(d[i]) <= band:
                    continue
                new = 1 if d[i] > 0 else -1
                here = (float(pts[i, 0]), float(pts[i, 1]), float(d[i]))
                dwell = self.s.person_dwell_s if int(v.cls[i]) == PERSON else self.s.dwell_s
                pend = st.pending.get(line.name)
                if pend is None:
                    old = st.side.get(line.name)
                    prev = st.last.get(line.name)
                    st.last[line.name] = here
                    if old is None or prev is None:
                        st.side[line.name] = new
                        continue
                    if old == new:
                        continue
                    cls, speed = int(v.cls[i]), float(v.speed[i])
                    pend = (new, frame.pts, frame.t_ns, cls, speed, here, prev)
                    st.pending[line.name] = pend
                else:
                    st.last[line.name] = here
                    if new != pend[0]:  # back on the old side: a moment, not a crossing
                        del st.pending[line.name]
                        continue
                if frame.pts - pend[1] >= dwell - 1e-9 and abs(d[i]) >= settle:
                    del st.pending[line.name]
                    st.side[line.name] = new
                    out += self._count(frame, line, tid, pend, st)
        return out + self._vanished(frame, frame.pts)

    def flush(self, frame: FrameTracks) -> list[Finding]:
        """Counts the changes of side not settled yet as crossings (the stream ended: each
        track vanished where it was); ``frame`` is the last one. Forgets every track."""
        self.events = []
        return self._vanished(frame, math.inf)

    def _vanished(self, frame: FrameTracks, pts: float) -> list[Finding]:
        """Forgets the tracks gone by ``pts`` (TrackStates.prune) and counts each one's change
        of side not settled yet: it left the picture on the new side."""
        out: list[Finding] = []
        for tid, st in self.states.prune(pts):
            for name, pend in st.pending.items():
                out += self._count(frame, self.line_by_name[name], tid, pend, st)
        return out

    def _count(
        self, frame: FrameTracks, line: Line, tid: int, pend: _Pending, st: _Side
    ) -> list[Finding]:
        """Counts a change of side when the step from the old side's last point to the new
        side's first passes between a and b, unless the track was counted on this line within
        ``recross_s`` (then the time is kept as the last crossing's); a Finding with ``alert``."""
        new, pts, t_ns, cls, speed, here, prev = pend
        k = prev[2] / (prev[2] - here[2])
        q = np.array(prev[:2]) + k * (np.array(here[:2]) - np.array(prev[:2]))
        u = float(line.along(q[None, :])[0])
        if not -self.s.end_margin <= u <= 1 + self.s.end_margin:
            return []
        last = st.counted.get(line.name)
        st.counted[line.name] = pts
        if last is not None and pts - last < self.s.recross_s:
            return []  # back and forth over the line: a long box's bottom jumping, not traffic
        towards_left = new > 0
        direction = "in" if towards_left == (line.in_side == "left") else "out"
        ev = Crossing(line.name, tid, cls, direction, pts, t_ns, speed)
        self.events.append(ev)
        per = self.counts[line.name][direction]
        per[class_name(cls)] = per.get(class_name(cls), 0) + 1
        if not (self.s.alert and self.s.alert_direction in ("any", direction)):
            return []
        return [
            self.finding(
                frame, f"line:{line.name}:track:{tid}:{frame.frame}", (tid,), severity="info",
                details={"line": line.name, "direction": direction, "class": class_name(cls)},
            )
        ]  # fmt: skip

    def total(self, line: str | None = None) -> int:
        return sum(
            n
            for name, per in self.counts.items()
            if line is None or name == line
            for d in per.values()
            for n in d.values()
        )
