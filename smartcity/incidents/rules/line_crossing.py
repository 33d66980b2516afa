"""Line crossing and counting per line, class and direction.

Each track's side of each line is remembered; it changes only when the track's point is more
than ``band`` (metres for ground lines, pixels for image lines) away from the line, so jitter on
the line never counts twice (hysteresis). A change of side is one crossing when the step between
the last point on the old side and the new point passes between a and b (within
``end_margin`` of the line's length, or ``end_margin_m`` metres for a ground line if more: a
partly hidden vehicle's box pulls its point aside). The point is the track's ground point for
ground lines, the bottom centre of its box for image lines.

A change of side counts once it is settled: the track has gone ``settle_m`` (``settle_px`` for
image lines) beyond the line and, for a person, stayed on the new side for ``person_dwell_s``;
or it vanished on the new side before that (counted when the track is forgotten, or by
``flush`` at the end of a stream). A track that comes back over the line before its change of
side is settled was never across: a car standing on a stop line, its box bottom jumping by
metres as the detector's box changes, or a bus turning along the line, counts once when it
drives on, not at every jump. A person standing in a crowd astride a line, whose box bottom
jumps by metres as others hide their feet, flips sides for moments and is not a crossing either.
The crossing keeps the time (and speed) of its first frame on the new side.

A vehicle the detector loses while it crosses a ground line comes back under a new track id
already on the far side: neither track is on both sides. ``bridge_s`` joins the two for
counting: a new vehicle track (first seen at most 0.5 s ago) first on one side takes the old
side of a vehicle track lost on the other side within ``bridge_s`` before, driving towards the
line at ``bridge_kmh`` or more (tracked for 0.5 s at least; its motion a least-squares line
through its last ground points, at least two standard errors from standing still), whose
constant-velocity prediction lies within ``bridge_along_m`` (plus a quarter of the distance it
would have driven) along its motion and ``bridge_across_m`` across it of where the new track is
first seen, ahead of where it was last seen; the step between the two must cross the line
between its ends. Each lost track lends its side once (and is not counted on that line itself
within ``recross_s``); a new box overlapping a box seen in the same frame (IoU ``bridge_iou``
or more: a second box on a vehicle) takes none. The tracker's id recovery (docs/tracking.md)
joins most such gaps; this joins those it does not reach before the line is crossed.

Two tracks on one vehicle (in a queue the detector also finds a box between two cars, and it
is tracked beside the car's own) each cross the line: a car, bus or truck crossing a ground
line the same way within ``twin_m`` along the line of another track's counted crossing, at
most ``twin_s`` later and less than ``twin_gap_m`` behind it at their mean speed (shorter
than a car: not the next vehicle of the lane; one of the two speeds must be known), is not
counted. Motorcycles and bicycles ride beside
cars and one another in a lane and are always counted.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from smartcity.incidents.geometry import CameraGeometry, Line
from smartcity.incidents.rules.base import (
    PERSON,
    VEHICLE_CLASSES,
    FrameView,
    Rule,
    Settings,
    TrackStates,
    box_iou,
    class_ids,
    class_name,
    frame_view,
    ground_line,
    require,
)
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class LineSettings(Settings):
    band_m: float = 0.3  # hysteresis half-width for ground lines
    band_px: float = 3.0  # ... and for image lines
    end_margin: float = 0.05  # fraction of the line's length beyond a and b still counted ...
    end_margin_m: float = 1.0  # ... or, for a ground line, these metres if more
    classes: tuple[str, ...] = ()  # counted classes; empty: all
    alert: bool = False  # also emit a Finding per crossing (a tripwire)
    alert_direction: str = "any"  # in | out | any
    settle_m: float = 2.0  # a change of side counts once this far beyond a ground line ...
    settle_px: float = 8.0  # ... or an image line
    dwell_s: float = 0.0  # ... and this long on the new side ...
    person_dwell_s: float = 1.0  # ... for people (their feet hide in a crowd)
    recross_s: float = 10.0  # a track crossing a line it was counted on this recently: not again
    bridge_s: float = 2.0  # a vehicle lost this long before a new one is seen over a ground line
    bridge_kmh: float = 10.0  # ... driving towards the line at least this fast ...
    bridge_along_m: float = 3.0  # ... predicted this near along its motion ...
    bridge_across_m: float = 3.5  # ... and across it: one vehicle crossing unseen (0 s: off)
    bridge_iou: float = 0.3  # a new box overlapping a seen track's this much is not bridged
    twin_s: float = 1.5  # a car, bus or truck crossing a ground line this soon after another,
    twin_gap_m: float = 5.0  # ... this near behind it at their speed (shorter than a car) ...
    twin_m: float = 1.5  # ... and this near along the line, the same way: one vehicle (0: off)
    forget_s: float = 3.0

    def check(self, path: str) -> None:
        require(self.alert_direction in ("in", "out", "any"), f"{path}.alert_direction",
                "must be in, out or any")  # fmt: skip
        for k in ("band_m", "band_px", "settle_m", "settle_px", "dwell_s", "person_dwell_s",
                  "recross_s", "bridge_s", "bridge_kmh", "bridge_along_m", "bridge_across_m",
                  "twin_s", "twin_gap_m", "twin_m", "end_margin", "end_margin_m"):  # fmt: skip
            require(getattr(self, k) >= 0, f"{path}.{k}", "must be 0 or more")
        require(self.bridge_s <= self.forget_s, f"{path}.bridge_s",
                f"must not be more than forget_s ({self.forget_s})")  # fmt: skip
        require(0 < self.bridge_iou <= 1, f"{path}.bridge_iou", "must be over 0 and at most 1")
        class_ids(self.classes, f"{path}.classes")


#: classes whose second crossing beside a first one is a second box (motorcycles and bicycles
#: ride beside cars and one another in a lane)
_TWIN_CLASSES = frozenset(class_ids(("car", "bus", "truck"), "classes"))
_BRIDGE_NEW_S = 0.5  # a track first seen this recently is new (may take a lost track's side)
_BRIDGE_MIN_S = 0.5  # a lost track seen this long at least ...
_BRIDGE_MIN_POINTS = 5  # ... its motion: a least-squares line through its last points
_BRIDGE_Z = 2.0  # ... whose speed is this many standard errors of its slope


def _length(line: Line) -> float:
    return float(np.hypot(*(line.b - line.a)))


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
    first: float = math.nan  # pts of the track's first frame
    class_id: int = -1  # its class in its last frame
    track: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=40))


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
        # ground points are kept per track only where the bridge can use them
        self.bridging = self.s.bridge_s > 0 and any(ln.space == "ground" for ln in self.lines)
        self.events: list[Crossing] = []
        # per ground line: (track, pts, metres along the line, direction, km/h) of its recent
        # crossings by cars, buses and trucks
        self.recent: dict[str, deque[tuple[int, float, float, str, float]]] = {
            ln.name: deque(maxlen=64) for ln in self.lines
        }
        self.counts: dict[str, dict[str, dict[str, int]]] = {
            ln.name: {"in": {}, "out": {}} for ln in self.lines
        }

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        self.events = []
        out: list[Finding] = []
        seen = self._seen(v)
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
                st = seen[i]
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
                    if old is None and line.space == "ground" and self.bridging:
                        lent = self._bridge(v, i, line, new, seen)
                        if lent is not None:
                            old, prev = -new, lent
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

    def _seen(self, v: FrameView) -> list[_Side]:
        """The state of each track of the frame, its first time, class and (for the bridge)
        ground points (the last 40) brought up to date."""
        out = []
        for i in range(len(v.ids)):
            st = self.states.get(int(v.ids[i]), v.pts)
            if math.isnan(st.first):
                st.first = v.pts
            st.class_id = int(v.cls[i])
            if self.bridging and np.all(np.isfinite(v.ground[i])):
                st.track.append((v.pts, float(v.ground[i, 0]), float(v.ground[i, 1])))
            out.append(st)
        return out

    def _bridge(
        self, v: FrameView, i: int, line: Line, new: int, seen: list[_Side]
    ) -> _Point | None:
        """For track ``i``, new and first on side ``new`` of a ground line: the last point on
        the old side of the vehicle track lost on the other side that would be where ``i`` is
        (the best such), which lends its side only this once; None when there is none."""
        st = seen[i]
        if not v.vehicle[i] or v.pts - st.first > _BRIDGE_NEW_S or not st.track:
            return None
        box = np.asarray(v.frame.xyxy, np.float64).reshape(-1, 4)
        if any(box_iou(box[i], box[j]) >= self.s.bridge_iou for j in range(len(box)) if j != i):
            return None  # a second box on a vehicle seen in this frame
        q = np.array(st.track[-1][1:])
        best: tuple[float, _Side] | None = None
        for tid, lost in self.states.items():
            last = self.states.last_seen(tid)
            dt = v.pts - last
            if not 0 < dt <= self.s.bridge_s or lost.side.get(line.name) != -new:
                continue
            if lost.class_id not in VEHICLE_CLASSES:
                continue
            if line.name in lost.pending or line.name not in lost.last:
                continue
            if v.pts - lost.counted.get(line.name, -math.inf) < self.s.recross_s:
                continue  # counted on this line lately, or already lent its side
            if last - lost.first < _BRIDGE_MIN_S or len(lost.track) < _BRIDGE_MIN_POINTS:
                continue  # too short a track to say where it was going
            fit = ground_line(np.asarray(lost.track, np.float64))
            if fit is None:
                continue
            vel, se = fit
            speed = float(np.hypot(*vel))
            if speed * 3.6 < self.s.bridge_kmh or speed < _BRIDGE_Z * float(np.hypot(*se)):
                continue  # standing, or a far box's jitter rather than a drive
            g = np.array(lost.track[-1][1:])
            u = vel / speed
            if float((q - g) @ u) <= 0:
                continue  # the new track is behind where the lost one was last seen
            off = q - (g + vel * dt)
            along, across = float(off @ u), abs(float(off[0] * u[1] - off[1] * u[0]))
            gate = self.s.bridge_along_m + 0.25 * speed * dt
            if abs(along) > gate or across > self.s.bridge_across_m:
                continue
            score = (along / gate) ** 2 + (across / max(self.s.bridge_across_m, 1e-9)) ** 2
            if best is None or score < best[0]:
                best = (score, lost)
        if best is None:
            return None
        best[1].counted[line.name] = v.pts  # lends its side once; not counted itself after
        return best[1].last[line.name]

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
        margin = self.s.end_margin
        if line.space == "ground":
            margin = max(margin, self.s.end_margin_m / max(_length(line), 1e-9))
        if not -margin <= u <= 1 + margin:
            return []
        last = st.counted.get(line.name)
        st.counted[line.name] = pts
        if last is not None and pts - last < self.s.recross_s:
            return []  # back and forth over the line: a long box's bottom jumping, not traffic
        towards_left = new > 0
        direction = "in" if towards_left == (line.in_side == "left") else "out"
        if line.space == "ground" and self.s.twin_m > 0 and cls in _TWIN_CLASSES:
            at = u * _length(line)
            if self._twin(line.name, tid, pts, at, direction, speed):
                return []  # a second track on one vehicle (a box between two queued cars)
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

    def _twin(
        self, line: str, tid: int, pts: float, at: float, direction: str, speed: float
    ) -> bool:
        """Whether track ``tid`` crossing at ``pts``, ``at`` metres along ``line``, is a second
        track of a vehicle another track was counted for there (remembered for the next
        crossings when not)."""
        recent = self.recent[line]
        for t, p, m, d, v in recent:
            if (
                t == tid
                or d != direction
                or abs(at - m) > self.s.twin_m
                or abs(pts - p) > self.s.twin_s
            ):
                continue
            known = [x for x in (speed, v) if math.isfinite(x)]
            if not known or abs(pts - p) * sum(known) / len(known) / 3.6 > self.s.twin_gap_m:
                continue  # far enough behind to be the next vehicle of the lane (or unknown)
            return True
        recent.append((tid, pts, at, direction, speed))
        return False

    def total(self, line: str | None = None) -> int:
        return sum(
            n
            for name, per in self.counts.items()
            if line is None or name == line
            for d in per.values()
            for n in d.values()
        )
