"""Suspected crash: two vehicles in contact (boxes overlapping on the image and ground points within
``contact_m``), both standing (below ``stopped_kmh``), at least one after a sharp stop (its speed
fell by ``drop_kmh`` or more within ``drop_s`` to standing, from the 80th percentile of its speeds
over ``drop_s``, not the highest: a far box's line overshooting for a moment makes no drop; having
travelled ``min_travel_m`` before, spanning ``min_travel_px`` pixels of box bottom where it stopped,
not having stood between ``drop_s`` and ``stood_s`` before, and it then stood for ``confirm_s``);
or a single vehicle stopping sharply off every lane, or stopping faster than brakes can stop it
(``impact_kmh`` lost within the ``impact_s`` before it stood: it hit something, perhaps hidden
behind it) (``single``). Severity from the speed before the stop: ``high`` from 50
km/h, ``medium`` from 25, ``low`` below; single-vehicle crashes one step lower. The crashed track
ids are kept (``crashed_ids``) so the stopped-vehicle rule does not take a crashed vehicle for one
queued behind the other.

The speeds judged are the rule's own: a least-squares line through the track's ground points of
the last ``speed_window_s``, not the tracker's estimate, which may smooth over a longer window
while the motion looks steady (``speed_long_window_s``) and then step down to its short window
when a gentle slowing becomes clear: that step is no sharp stop.
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
    ground_line,
)
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class CrashSettings(Settings):
    drop_kmh: float = 20.0
    drop_s: float = 1.5
    stopped_kmh: float = 5.0
    confirm_s: float = 1.5  # ... and it must then stand this long (a box glitch does not)
    sharp_memory_s: float = 3.0  # a confirmed sharp stop counts for a pair met within this time
    contact_m: float = 9.0
    min_iou: float = 0.0  # boxes must overlap more than this
    min_travel_m: float = 10.0  # ... and it had travelled this far over the 2 s before: a box
    #                              edge jumping under occlusion makes no sharp stop
    min_travel_px: float = 10.0  # ... spanning this many pixels of box bottom where it stopped
    #                              (far away an id switch between queued cars jumps 10 m in 5 px)
    min_moving_s: float = 1.5  # ... and it had moved at half its top speed for this long in
    #                            them (a far box sliding onto the car behind in a standing queue
    #                            reads as a 1 s "drive" of one speed window, then a stop)
    stood_s: float = 3.5  # ... and it had not stood (three readings of its line below
    #                      stopped_kmh) between drop_s and this long before: a queue's stop and
    #                      go seen through a far box's jitter (0: off; the rule keeps
    #                      max(drop_s, impact_s) + 2 s of history)
    min_box_px: float = 8.0  # boxes smaller than this (either side) are too coarse to judge
    single: bool = True
    impact_kmh: float = 40.0  # a fall this large within impact_s (beyond any braking: ~11 m/s2
    impact_s: float = 1.0  # with the tracker's 1 s speed window) is an impact, even in lane
    forget_s: float = 5.0
    speed_window_s: float = 1.0  # the rule's own speed: a line through this much ground track


@dataclass
class _Speed:
    # t, v, x, y, and whether v is the rule's own line (not the tracker's estimate)
    hist: deque[tuple[float, float, float, float, bool]] = field(default_factory=deque)
    sharp_at: float | None = None
    stand_at: float | None = None  # when its current stand began (None: moving)
    before_kmh: float = 0.0
    impact: bool = False


def _sev(kmh: float, single: bool) -> str:
    levels = ("low", "medium", "high")
    k = 2 if kmh >= 50 else 1 if kmh >= 25 else 0
    return levels[max(0, k - int(single))]


class Crash(Rule):
    name = "crash"
    s: CrashSettings
    needs_calibration = True

    def __init__(self, geometry: CameraGeometry, settings: CrashSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or CrashSettings()
        self.states: TrackStates[_Speed] = TrackStates(_Speed, self.s.forget_s)
        self.crashed_ids: set[int] = set()
        self.pairs: set[tuple[int, int]] = set()

    def _confirmed(self, st: _Speed, t: float) -> bool:
        if st.sharp_at is None:
            return False
        age = t - st.sharp_at
        return self.s.confirm_s <= age <= self.s.confirm_s + self.s.sharp_memory_s

    @staticmethod
    def _moved_for(st: _Speed, kmh: float) -> float:
        """Seconds of the track's kept history it spent at ``kmh`` or faster."""
        h = st.hist
        return sum(h[k + 1][0] - h[k][0] for k in range(len(h) - 1) if h[k][1] >= kmh)

    def _stood(self, st: _Speed, t: float) -> bool:
        """Whether the track stood (three readings in a row of its own line below stopped_kmh)
        between drop_s and stood_s before ``t``."""
        lo, hi, stop = self.s.drop_s, self.s.stood_s, self.s.stopped_kmh
        run = 0  # three readings of its own line in a row (not a new track's first estimates)
        for h in st.hist:
            run = run + 1 if lo < t - h[0] <= hi and h[4] and h[1] < stop else 0
            if run >= 3:
                return True
        return False

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        t = frame.pts
        out: list[Finding] = []
        xyxy = np.asarray(frame.xyxy, np.float64).reshape(-1, 4)
        side = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
        big = side >= self.s.min_box_px
        idx = np.nonzero(v.vehicle & np.isfinite(v.speed) & v.metric & big)[0]
        standing = []
        for i in idx:
            tid = int(v.ids[i])
            st = self.states.get(tid, t)
            x, y = float(v.ground[i, 0]), float(v.ground[i, 1])
            sp = _line_kmh(st.hist, t, x, y, self.s.speed_window_s)
            own = sp is not None
            if sp is None:  # too little of its own history yet: the tracker's estimate
                sp = float(v.speed[i])
            st.hist.append((t, sp, x, y, own))
            while st.hist and t - st.hist[0][0] > max(self.s.drop_s, self.s.impact_s) + 2.0:
                st.hist.popleft()
            if sp < self.s.stopped_kmh:
                if st.stand_at is None:
                    st.stand_at = t
                readings = [h[1] for h in st.hist if t - h[0] <= self.s.drop_s]
                # the 80th percentile is at most the highest: the sort only where that clears
                # the drop (a standing vehicle, every frame, mostly does not)
                top = max(readings)
                if st.sharp_at is None and top - sp >= self.s.drop_kmh:
                    top = float(np.percentile(readings, 80))
                travel = float(np.hypot(x - st.hist[0][2], y - st.hist[0][3]))
                need = max(self.s.min_travel_m, self.s.min_travel_px * float(v.m_per_px[i]))
                if (top - sp >= self.s.drop_kmh and st.sharp_at is None and travel >= need
                        and self._moved_for(st, top / 2) >= self.s.min_moving_s
                        and not self._stood(st, t)):  # fmt: skip
                    st.sharp_at, st.before_kmh = t, top
                    # An impact is judged over the second before it came to a stand, which may
                    # be a few frames before the stop is recognised as sharp (min_moving_s).
                    at = st.stand_at if st.stand_at is not None else t
                    hit = max(h[1] for h in st.hist if 0 <= at - h[0] <= self.s.impact_s)
                    st.impact = hit - sp >= self.s.impact_kmh
                standing.append(i)
            else:
                st.sharp_at = st.stand_at = None
        for a_k, a in enumerate(standing):
            sa = self.states.peek(int(v.ids[a]))
            for b in standing[a_k + 1 :]:
                sb = self.states.peek(int(v.ids[b]))
                if sa is None or sb is None:
                    continue
                recent = [s for s in (sa, sb) if self._confirmed(s, t)]
                if not recent:
                    continue
                if float(np.hypot(*(v.ground[a] - v.ground[b]))) > self.s.contact_m:
                    continue
                if box_iou(xyxy[a], xyxy[b]) <= self.s.min_iou:
                    continue
                pair = tuple(sorted((int(v.ids[a]), int(v.ids[b]))))
                if pair in self.pairs:
                    continue
                self.pairs.add(pair)  # type: ignore[arg-type]
                self.crashed_ids.update(pair)
                before = max(s.before_kmh for s in (sa, sb) if s.sharp_at is not None)
                out.append(
                    self.finding(
                        frame, f"tracks:{pair[0]}-{pair[1]}", pair, severity=_sev(before, False),
                        details={"speed_before_kmh": round(before, 1),
                                 "x_m": round(float(v.ground[[a, b], 0].mean()), 2),
                                 "y_m": round(float(v.ground[[a, b], 1].mean()), 2)},
                    )
                )  # fmt: skip
        if self.s.single and self.geometry.lanes:
            for i in standing:
                tid = int(v.ids[i])
                one = self.states.peek(tid)
                if one is None or not self._confirmed(one, t) or tid in self.crashed_ids:
                    continue
                if v.lane[i] >= 0 and not one.impact:
                    continue
                self.crashed_ids.add(tid)
                out.append(
                    self.finding(frame, f"track:{tid}", (tid,), severity=_sev(one.before_kmh, True),
                                 details={"speed_before_kmh": round(one.before_kmh, 1),
                                          "off_lane": bool(v.lane[i] < 0)})
                )  # fmt: skip
        for tid, _ in self.states.prune(t):
            self.crashed_ids.discard(tid)
        return out


def _line_kmh(
    hist: deque[tuple[float, float, float, float, bool]],
    t: float,
    x: float,
    y: float,
    window: float,
) -> float | None:
    """Ground speed in km/h of the line (`ground_line`) through the points of ``hist`` within
    ``window`` of ``t`` and the point (t, x, y); None with fewer than 3 points or less than half
    the window covered."""
    pts = [(h[0], h[2], h[3]) for h in hist if t - h[0] <= window + 1e-9]
    if len(pts) < 2 or t - pts[0][0] < 0.5 * window:
        return None
    line = ground_line(np.array([*pts, (t, x, y)], np.float64))
    return None if line is None else float(np.hypot(*line[0])) * 3.6
