"""Wrong-way driving: a vehicle moving against its lane's direction over ``min_distance_m``.

Far away the distance must also span ``min_px`` pixels of box bottom at the vehicle's place
(there a pixel is metres, and a box sliding from car to car along a standing queue drifts by a
few pixels: 15 m at 120 m from the camera).

Each vehicle's progress along the lane's ground direction is followed; the distance it has gone
back from the furthest point it reached (in the lane's direction) is the distance driven the
wrong way, which jitter of a standing vehicle cannot build up. It must also be moving
(``min_speed_kmh``), and have been moving against the lane without a break for ``sustain_s``:
over the last ``sustain_s`` every step of ``step_s`` (or more, at low analysis rates) went back
by at least half of ``min_speed_kmh``. Far away a pixel of box is metres: a box that slides
onto the next car of a queue, or grows and shrinks by a pixel, goes back for a moment and then
forth, and does not build up a sustained drive. A vehicle that changes to a lane of another
direction starts afresh, and so does a track whose ground point jumps faster than
``max_step_kmh`` between two frames (no vehicle does that: the tracker took over another
object). Far away at a high frame rate a steady drive can jump like that at every other frame
(a pixel is metres): the long path (``_long_drive``, ``long_distance_m`` over
``long_window_s``) follows such a track through its jumps. Either way the track must have been
found in ``min_seen`` of the camera's frames over the last ``sustain_s``: a far box sliding from
car to car along a queue is found in a third of them or fewer, a driving vehicle in most.

A vehicle already reported keeps its incident when its track is lost and found again under a
new id (a far, small box; a vehicle hidden for a moment) or when it has two tracks at once: a
candidate within ``rejoin_m`` (plus a quarter of the distance the reported vehicle could have
driven since it was last seen) of where a reported vehicle of the same direction was heading,
seen at most ``rejoin_s`` ago, is that vehicle and opens nothing new. One Finding per vehicle
(severity high); closed when its first track vanishes. (Handing an unreported track's drive
on to a new id was tried, for the night scene whose car the detector finds in a quarter of its
frames: in queues it chained the boxes of standing cars into "drives", docs/incidents.md.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import takewhile

import numpy as np

from smartcity.incidents.geometry import CameraGeometry, GeometryError
from smartcity.incidents.rules.base import (
    ReportedVehicles,
    Rule,
    Settings,
    TrackStates,
    frame_view,
)
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class WrongWaySettings(Settings):
    min_distance_m: float = 15.0
    min_px: float = 10.0  # ... and at least this many pixels of box bottom where it is now
    min_speed_kmh: float = 5.0
    max_step_kmh: float = 250.0
    sustain_s: float = 2.0
    step_s: float = 0.5
    rejoin_s: float = 10.0
    rejoin_m: float = 15.0
    forget_s: float = 3.0
    long_distance_m: float = 40.0  # the jittery-track path (0: off), over long_window_s
    long_window_s: float = 5.0
    min_seen: float = 0.5  # seen in this share of the camera's frames over sustain_s (0: off)
    severity: str = "high"

    def check(self, path: str) -> None:
        if self.step_s <= 0:
            raise GeometryError(f"{path}.step_s", "must be > 0")
        if self.sustain_s and self.sustain_s < self.step_s:
            raise GeometryError(f"{path}.sustain_s", f"must be 0 or >= step_s ({self.step_s})")
        if not 0 <= self.min_seen <= 1:
            raise GeometryError(f"{path}.min_seen", "must be between 0 and 1")
        if self.long_distance_m and self.long_window_s < max(self.sustain_s, self.step_s):
            raise GeometryError(
                f"{path}.long_window_s",
                f"must be >= sustain_s ({self.sustain_s}) while long_distance_m is on",
            )


class _LineWindow:
    """(pts, progress) points over a sliding window with the running sums of their
    least-squares line, so that the line's slope costs O(1) a frame (every moving vehicle asks
    for it); times are taken from ``t0`` and the sums recomputed every ``REBASE`` appends, so
    that they lose nothing over a long track."""

    REBASE = 256
    __slots__ = ("points", "t0", "n", "st", "ss", "stt", "sts", "adds")

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()
        self.clear()

    def clear(self) -> None:
        self.points.clear()
        self.t0 = 0.0
        self.n = self.st = self.ss = self.stt = self.sts = 0.0
        self.adds = 0

    def _add(self, t: float, s: float, w: float) -> None:
        t -= self.t0
        self.n += w
        self.st += w * t
        self.ss += w * s
        self.stt += w * t * t
        self.sts += w * t * s

    def append(self, t: float, s: float) -> None:
        if not self.points:
            self.clear()
            self.t0 = t
        self.points.append((t, s))
        self._add(t, s, 1.0)
        self.adds += 1

    def keep_last(self, span: float, now: float) -> None:
        """Drops the points older than ``span`` seconds before ``now``."""
        pts = self.points
        while pts and now - pts[0][0] > span:
            t, s = pts.popleft()
            self._add(t, s, -1.0)
        if self.adds >= self.REBASE and pts:
            kept = list(pts)
            self.clear()
            self.t0 = kept[0][0]
            for t, s in kept:
                self.points.append((t, s))
                self._add(t, s, 1.0)

    def slope(self) -> float:
        """The least-squares slope (progress per second), NaN under two distinct times."""
        den = self.n * self.stt - self.st * self.st
        if self.n < 2 or not den > 1e-12 * self.n * self.n:
            return float("nan")
        return (self.n * self.sts - self.st * self.ss) / den


@dataclass
class _Progress:
    direction: tuple[float, float] | None = None
    best: float = -np.inf  # furthest progress along the lane direction, metres
    lane: str = ""
    fired: bool = False
    key: str = ""  # the incident this track belongs to ("" until it fires or rejoins one)
    # (pts, progress s, ground x, ground y) of the recent frames, oldest first
    hist: deque[tuple[float, float, float, float]] = field(default_factory=deque)
    # (pts, progress s) over long_window_s, kept through jumps (cleared on a change of lane
    # direction only): the jittery-track path
    raw: _LineWindow = field(default_factory=_LineWindow)


class WrongWay(Rule):
    name = "wrong_way"
    s: WrongWaySettings
    needs_calibration = True

    def __init__(self, geometry: CameraGeometry, settings: WrongWaySettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or WrongWaySettings()
        self.states: TrackStates[_Progress] = TrackStates(_Progress, self.s.forget_s)
        self.reported = ReportedVehicles(self.s.rejoin_s, self.s.rejoin_m)
        self._frames: deque[float] = deque()  # the camera's analysed frames of the last seconds

    def _seen_enough(self, st: _Progress, now: float) -> bool:
        """Whether the track was in at least min_seen of the camera's frames over the last
        sustain_s (step_s at least). A far box in a queue that slides from car to car is
        found in a third of the frames or fewer; a driving vehicle, even at night, in most."""
        if not self.s.min_seen:
            return True
        span = max(self.s.sustain_s, self.s.step_s) - 1e-6
        frames = sum(1 for _ in takewhile(lambda t: now - t < span, reversed(self._frames)))
        seen = sum(1 for _ in takewhile(lambda p: now - p[0] < span, reversed(st.raw.points)))
        return seen >= self.s.min_seen * frames

    def _sustained(self, st: _Progress) -> bool:
        """Whether the track went back at every step over the last sustain_s."""
        if not self.s.sustain_s:
            return True
        h = st.hist
        t, s = h[-1][0], h[-1][1]
        need = self.s.min_speed_kmh / 3.6 * 0.5  # metres back per second, at least
        for pts, prev, _, _ in reversed(h):
            if t - pts < self.s.step_s - 1e-6:
                continue
            if prev - s < need * (t - pts):
                return False
            t, s = pts, prev
            if h[-1][0] - t >= self.s.sustain_s - 1e-6:
                return True
        return False

    def _long_drive(self, st: _Progress, m_per_px: float) -> float:
        """The distance (m) a jittery track drove the wrong way over long_window_s, or 0.

        Far away and at a high frame rate a box's bottom can jump by more than
        ``max_step_kmh`` between two frames while the vehicle drives steadily, so the drive of
        ``_sustained`` restarts again and again. Here the track's points are taken through
        those jumps: a least-squares line of progress against time over the window must go
        back by ``long_distance_m`` (and ``min_px`` pixels of box bottom) at ``min_speed_kmh``
        or more, over at least ``sustain_s``, and the medians of the window's four quarters
        must each lie further back than the one before by a quarter of the expected step. A
        box sliding from car to car along a standing queue moves in a few steps, not in four
        quarters of one steady drive."""
        r = st.raw.points
        if not self.s.long_distance_m or len(r) < 8:
            return 0.0
        span = r[-1][0] - r[0][0]
        if span < max(self.s.sustain_s, 1e-6):
            return 0.0
        slope = st.raw.slope()  # running sums: the points are read only when this passes
        back = -slope * span
        need = max(self.s.long_distance_m, self.s.min_px * m_per_px)
        if not (back >= need and -slope * 3.6 >= self.s.min_speed_kmh):
            return 0.0
        t = np.fromiter((p[0] for p in r), np.float64, len(r))
        s = np.fromiter((p[1] for p in r), np.float64, len(r))
        edges = t[0] + span * np.arange(1, 4) / 4
        parts = np.split(s, np.searchsorted(t, edges))
        if any(len(q) < 2 for q in parts):
            return 0.0
        med = [float(np.median(q)) for q in parts]
        step = back / 4
        if any(med[k] - med[k + 1] < 0.25 * step for k in range(3)):
            return 0.0
        return back

    def _seen(self, st: _Progress) -> None:
        """Keeps the reported vehicle of a fired or rejoined track up to date."""
        self.reported.seen(st.key, [(t, x, y) for t, _, x, y in st.hist], st.direction)

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        lanes = self.geometry.lanes
        keep = max(self.s.sustain_s, 1.0) + self.s.step_s
        self._frames.append(frame.pts)
        while frame.pts - self._frames[0] > keep:
            self._frames.popleft()
        for i in np.nonzero(v.vehicle & (v.lane >= 0) & v.metric)[0]:
            lane = lanes[int(v.lane[i])]
            g = lane.ground_direction
            if g is None or not np.all(np.isfinite(v.ground[i])):
                continue
            tid = int(v.ids[i])
            st = self.states.get(tid, frame.pts)
            d = (float(g[0]), float(g[1]))
            gx, gy = float(v.ground[i][0]), float(v.ground[i][1])
            if st.direction is None or np.dot(st.direction, d) < 0.9:
                st.direction, st.best, st.lane = d, -np.inf, lane.name
                st.hist.clear()
                st.raw.clear()
            s = gx * d[0] + gy * d[1]
            if st.hist and frame.pts > st.hist[-1][0]:
                last_s, last_t = st.hist[-1][1], st.hist[-1][0]
                if abs(s - last_s) / (frame.pts - last_t) * 3.6 > self.s.max_step_kmh:
                    st.best = -np.inf  # a jump, not a drive: start afresh
                    st.hist.clear()
            st.hist.append((frame.pts, s, gx, gy))
            while frame.pts - st.hist[0][0] > keep:
                st.hist.popleft()
            st.raw.append(frame.pts, s)
            st.raw.keep_last(self.s.long_window_s, frame.pts)
            st.best = max(st.best, s)
            if st.key:
                self._seen(st)
                continue
            back = st.best - s
            need = max(self.s.min_distance_m, self.s.min_px * float(v.m_per_px[i]))
            moving = not np.isfinite(v.speed[i]) or v.speed[i] >= self.s.min_speed_kmh
            if not moving:
                continue
            if not (back >= need and self._sustained(st)):
                back = self._long_drive(st, float(v.m_per_px[i]))
                if not back:
                    continue
            if not self._seen_enough(st, frame.pts):
                continue
            st.key = self.reported.match(frame.pts, np.array((gx, gy)), st.direction)
            if st.key:  # the same vehicle, reported already under another track
                self._seen(st)
                continue
            st.fired, st.key = True, f"track:{tid}"
            self._seen(st)
            out.append(
                self.finding(
                    frame, st.key, (tid,), severity=self.s.severity,
                    details={"lane": st.lane, "distance_m": round(back, 1),
                             "speed_kmh": round(float(v.speed[i]), 1)
                             if np.isfinite(v.speed[i]) else None},
                )
            )  # fmt: skip
        for tid, st in self.states.prune(frame.pts):
            if st.fired:
                out.append(self.finding(frame, f"track:{tid}", (tid,), closed=True,
                                        severity=self.s.severity))  # fmt: skip
        self.reported.prune(frame.pts)
        return out
