"""Traffic statistics: line crossings and lane samples -> one-minute buckets.

The rules report what happens frame by frame (a vehicle crossed a counting line; a lane's
occupancy and speeds on this frame). `TrafficAggregator` sums them into buckets of one
wall-clock minute (UTC, from the frames' capture time) per camera, source (a line or a lane),
class and direction. A bucket is emitted once the camera's frames have moved `lateness_s`
past its end (or at `flush`), so the service writes each minute once; the store rolls minutes
up into 15 minutes, hours and days.

Per bucket: `count` (line buckets: objects that crossed the line; lane buckets: vehicles
present on the lane, averaged over the minute's frames and rounded), `speed_mean` and
`speed_p85` (km/h; line buckets: the speeds of the crossing objects; lane buckets: the lane's
mean speed on each frame that had one), `occupancy` (lane buckets: the mean over frames, 0..1)
and `los` (lane buckets: the median of the per-frame levels of service A-F, that is the level
the lane was at or better than for at least half of the minute; the per-frame level comes from
density and speed, smartcity.incidents.rules.traffic).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.incidents.rules.line_crossing import Crossing
from smartcity.incidents.rules.traffic import LaneSample
from smartcity.store import BucketRecord, utc_from_ns

MINUTE_NS = 60_000_000_000


def p85(values: Iterable[float]) -> float:
    """85th percentile (linear interpolation); NaN for no values."""
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    return float(np.percentile(arr, 85)) if arr.size else math.nan


@dataclass(frozen=True, slots=True)
class TrafficBucket:
    """One minute of one source of one camera, per class and direction."""

    cam: str
    kind: str  # "line" or "lane"
    name: str  # the line's or lane's name in the camera geometry
    start_ns: int  # bucket start, ns since the Unix epoch (a whole UTC minute)
    cls: str  # appliance class name, or "all" (lane occupancy buckets)
    direction: str  # lines: "in" / "out"; lanes: the lane's direction name
    count: int
    speed_mean: float  # km/h, NaN when no speed was known
    speed_p85: float
    occupancy: float = math.nan  # lanes only, 0..1
    los: str = ""  # lanes only, A-F
    samples: int = 0  # frames (lanes) or crossings (lines) that went into it

    @property
    def period(self) -> str:
        return "1m"


@dataclass
class _Acc:
    count: int = 0
    speeds: list[float] = field(default_factory=list)
    occupancy_sum: float = 0.0
    samples: int = 0
    vehicles_sum: int = 0
    levels: list[str] = field(default_factory=list)


class TrafficAggregator:
    """Sums crossings and lane samples into minute buckets for every camera."""

    def __init__(
        self, lateness_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s: must be >= 0, got {lateness_s!r}")
        self._lateness_ns = int(lateness_s * 1e9)
        self._lateness_s = float(lateness_s)
        self._clock = clock
        self._arrival: dict[str, float] = {}  # cam -> clock() when its last frame arrived
        self._closed_until: dict[str, int] = {}  # cam -> end of the newest minute emitted
        self.late = 0  # measurements for a minute already written (dropped, counted)
        # (cam, kind, name, start_ns, cls, direction) -> accumulator
        self._acc: dict[tuple[str, str, str, int, str, str], _Acc] = {}
        self._latest_ns: dict[str, int] = {}

    @staticmethod
    def minute(t_ns: int) -> int:
        return t_ns - t_ns % MINUTE_NS

    def add_crossing(self, cam: str, c: Crossing) -> None:
        """One track crossed a counting line."""
        if self._is_late(cam, c.t_ns):
            return
        cls = APPLIANCE_CLASSES[c.class_id] if 0 <= c.class_id < len(APPLIANCE_CLASSES) else "other"
        acc = self._acc.setdefault(
            (cam, "line", c.line, self.minute(c.t_ns), cls, c.direction), _Acc()
        )
        acc.count += 1
        acc.samples += 1
        if math.isfinite(c.speed_kmh):
            acc.speeds.append(float(c.speed_kmh))
        self._seen(cam, c.t_ns)

    def add_lane(self, cam: str, s: LaneSample) -> None:
        """One frame's view of one lane."""
        if self._is_late(cam, s.t_ns):
            return
        # group is "road:direction" when the lane names them, else the lane's own name
        direction = s.group.split(":", 1)[1] if ":" in s.group else ""
        acc = self._acc.setdefault(
            (cam, "lane", s.lane, self.minute(s.t_ns), "all", direction), _Acc()
        )
        acc.samples += 1
        acc.vehicles_sum += int(s.vehicles)
        if math.isfinite(s.occupancy):
            acc.occupancy_sum += min(max(float(s.occupancy), 0.0), 1.0)
        if math.isfinite(s.mean_speed_kmh):
            acc.speeds.append(float(s.mean_speed_kmh))
        acc.levels.append(s.level)
        self._seen(cam, s.t_ns)

    def _is_late(self, cam: str, t_ns: int) -> bool:
        if self.minute(t_ns) < self._closed_until.get(cam, -1):
            self.late += 1
            return True
        return False

    def _seen(self, cam: str, t_ns: int) -> None:
        self._arrival[cam] = self._clock()
        if t_ns > self._latest_ns.get(cam, -1):
            self._latest_ns[cam] = t_ns

    def advance(self, cam: str, t_ns: int) -> None:
        """The camera's frames reached t_ns (call on every frame, with or without traffic)."""
        self._seen(cam, t_ns)

    def pop_closed(self) -> list[TrafficBucket]:
        """Buckets whose minute ended more than lateness_s before the camera's latest frame
        (the camera's own clock, so a replayed or skewed clock never splits a minute), and
        every bucket of a camera whose frames stopped arriving lateness_s ago (by this
        process's clock). Measurements that arrive later for a minute already written are
        dropped and counted in `late` (a minute is written once)."""
        now = self._clock()
        done = []
        for key in list(self._acc):
            cam, _, _, start, _, _ = key
            silent = now - self._arrival.get(cam, now) > self._lateness_s
            if silent or start + MINUTE_NS + self._lateness_ns <= self._latest_ns.get(cam, 0):
                done.append(self._emit(key, self._acc.pop(key)))
        for b in done:
            end = b.start_ns + MINUTE_NS
            if end > self._closed_until.get(b.cam, -1):
                self._closed_until[b.cam] = end
        return sorted(done, key=lambda b: (b.start_ns, b.cam, b.kind, b.name, b.cls, b.direction))

    def pop_camera(self, cam: str) -> list[TrafficBucket]:
        """Every bucket of `cam`, closed or not, when the camera goes away; later measurements
        of those minutes are dropped as late (a minute is written once) and the camera's clocks
        are forgotten."""
        done = [self._emit(k, self._acc.pop(k)) for k in [k for k in self._acc if k[0] == cam]]
        for b in done:
            self._closed_until[cam] = max(self._closed_until.get(cam, -1), b.start_ns + MINUTE_NS)
        self._arrival.pop(cam, None)
        self._latest_ns.pop(cam, None)
        return sorted(done, key=lambda b: (b.start_ns, b.kind, b.name, b.cls, b.direction))

    def flush(self) -> list[TrafficBucket]:
        """Every bucket, closed or not (at stop)."""
        out = [self._emit(k, a) for k, a in self._acc.items()]
        self._acc.clear()
        return sorted(out, key=lambda b: (b.start_ns, b.cam, b.kind, b.name, b.cls, b.direction))

    def _emit(self, key: tuple[str, str, str, int, str, str], acc: _Acc) -> TrafficBucket:
        cam, kind, name, start, cls, direction = key
        mean = float(np.mean(acc.speeds)) if acc.speeds else math.nan
        if kind == "lane":
            n = max(acc.samples, 1)
            return TrafficBucket(
                cam=cam,
                kind=kind,
                name=name,
                start_ns=start,
                cls=cls,
                direction=direction,
                count=round(acc.vehicles_sum / n),
                speed_mean=mean,
                speed_p85=p85(acc.speeds),
                occupancy=acc.occupancy_sum / n,
                los=sorted(acc.levels)[(len(acc.levels) - 1) // 2] if acc.levels else "",
                samples=acc.samples,
            )
        return TrafficBucket(
            cam=cam,
            kind=kind,
            name=name,
            start_ns=start,
            cls=cls,
            direction=direction,
            count=acc.count,
            speed_mean=mean,
            speed_p85=p85(acc.speeds),
            samples=acc.samples,
        )


def to_record(b: TrafficBucket) -> BucketRecord:
    """The store's row for a minute bucket."""

    def num(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return BucketRecord(
        camera_id=b.cam,
        source_kind=b.kind,
        source_name=b.name,
        period="1m",
        start=utc_from_ns(b.start_ns),
        cls=b.cls,
        direction=b.direction,
        count=b.count,
        speed_mean=num(b.speed_mean),
        speed_p85=num(b.speed_p85),
        occupancy=num(b.occupancy),
        los=b.los or None,
    )
