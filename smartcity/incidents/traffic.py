"""Traffic statistics: line crossings and lane samples -> one-minute buckets.

The rules report what happens frame by frame (a vehicle crossed a counting line; a lane's
occupancy and speeds on this frame). `TrafficAggregator` sums them into buckets of one
wall-clock minute (UTC, from the frames' capture time) per camera, source (a line or a lane),
class and direction. A bucket is emitted once the camera's frames have moved `lateness_s`
past its end (or at `flush`), so the service writes each minute once; the store rolls minutes
up into 15 minutes, hours and days.

Per bucket: `count` (objects that crossed the line, or distinct vehicles seen in the lane),
`speed_mean` and `speed_p85` (km/h; line buckets: the speeds of the crossing objects; lane
buckets: the speeds of the vehicles present, one value per vehicle and frame), `occupancy` (lane
buckets: the mean over frames of the lane's occupancy 0..1) and `los` (lane buckets: the level
of service A-F of the minute from its mean occupancy and speed, `level_of_service`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

MINUTE_NS = 60_000_000_000

#: Level-of-service bands. A lane's minute is the worst of the speed band (mean speed as a
#: fraction of the lane's free-flow speed, after the US Highway Capacity Manual's urban street
#: classes) and the occupancy band (share of the lane's area covered by vehicles).
LOS_LEVELS = ("A", "B", "C", "D", "E", "F")
_SPEED_RATIO_MIN = (0.85, 0.67, 0.50, 0.40, 0.30)  # at or above -> A, B, C, D, E; below -> F
_OCCUPANCY_MAX = (0.10, 0.18, 0.26, 0.35, 0.45)  # at or below -> A, B, C, D, E; above -> F


def level_of_service(occupancy: float, mean_speed_kmh: float, free_flow_kmh: float) -> str:
    """A-F from a lane's occupancy (0..1) and mean speed; NaN speed uses occupancy alone."""
    occ_band = next((i for i, m in enumerate(_OCCUPANCY_MAX) if occupancy <= m), 5)
    if math.isfinite(mean_speed_kmh) and free_flow_kmh > 0:
        ratio = mean_speed_kmh / free_flow_kmh
        speed_band = next((i for i, m in enumerate(_SPEED_RATIO_MIN) if ratio >= m), 5)
    else:
        speed_band = 0
    return LOS_LEVELS[max(occ_band, speed_band)]


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
    vehicles: set[int] = field(default_factory=set)
    free_flow_kmh: float = math.nan


class TrafficAggregator:
    """Sums crossings and lane samples into minute buckets for every camera."""

    def __init__(
        self,
        lateness_s: float = 5.0,
        los: Callable[[float, float, float], str] = level_of_service,
    ) -> None:
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s: must be >= 0, got {lateness_s!r}")
        self._lateness_ns = int(lateness_s * 1e9)
        self._los = los
        # (cam, kind, name, start_ns, cls, direction) -> accumulator
        self._acc: dict[tuple[str, str, str, int, str, str], _Acc] = {}
        self._latest_ns: dict[str, int] = {}

    @staticmethod
    def minute(t_ns: int) -> int:
        return t_ns - t_ns % MINUTE_NS

    def add_crossing(
        self, cam: str, line: str, cls: str, direction: str, t_ns: int, speed_kmh: float
    ) -> None:
        """One object crossed `line` in `direction` at t_ns (speed NaN when not known)."""
        acc = self._acc.setdefault((cam, "line", line, self.minute(t_ns), cls, direction), _Acc())
        acc.count += 1
        acc.samples += 1
        if math.isfinite(speed_kmh):
            acc.speeds.append(float(speed_kmh))
        self._seen(cam, t_ns)

    def add_lane_sample(
        self,
        cam: str,
        lane: str,
        direction: str,
        t_ns: int,
        occupancy: float,
        track_ids: Iterable[int],
        speeds_kmh: Iterable[float],
        free_flow_kmh: float = math.nan,
    ) -> None:
        """One frame's view of a lane: occupancy 0..1, the vehicles in it and their speeds."""
        key = (cam, "lane", lane, self.minute(t_ns), "all", direction)
        acc = self._acc.setdefault(key, _Acc())
        acc.samples += 1
        acc.occupancy_sum += min(max(float(occupancy), 0.0), 1.0)
        acc.vehicles.update(int(i) for i in track_ids)
        acc.speeds.extend(float(s) for s in speeds_kmh if math.isfinite(s))
        acc.free_flow_kmh = free_flow_kmh
        self._seen(cam, t_ns)

    def _seen(self, cam: str, t_ns: int) -> None:
        if t_ns > self._latest_ns.get(cam, -1):
            self._latest_ns[cam] = t_ns

    def advance(self, cam: str, t_ns: int) -> None:
        """The camera's frames reached t_ns (call on every frame, with or without traffic)."""
        self._seen(cam, t_ns)

    def pop_closed(self, now_ns: int | None = None) -> list[TrafficBucket]:
        """Buckets whose minute ended more than lateness_s before the camera's latest frame.

        `now_ns` (wall clock) also closes the minutes of cameras that went silent.
        """
        done = []
        for key in list(self._acc):
            cam, _, _, start, _, _ = key
            latest = max(self._latest_ns.get(cam, 0), now_ns or 0)
            if start + MINUTE_NS + self._lateness_ns <= latest:
                done.append(self._emit(key, self._acc.pop(key)))
        return sorted(done, key=lambda b: (b.start_ns, b.cam, b.kind, b.name, b.cls, b.direction))

    def flush(self) -> list[TrafficBucket]:
        """Every bucket, closed or not (at stop)."""
        out = [self._emit(k, a) for k, a in self._acc.items()]
        self._acc.clear()
        return sorted(out, key=lambda b: (b.start_ns, b.cam, b.kind, b.name, b.cls, b.direction))

    def _emit(self, key: tuple[str, str, str, int, str, str], acc: _Acc) -> TrafficBucket:
        cam, kind, name, start, cls, direction = key
        mean = float(np.mean(acc.speeds)) if acc.speeds else math.nan
        if kind == "lane":
            occ = acc.occupancy_sum / acc.samples if acc.samples else math.nan
            return TrafficBucket(
                cam=cam,
                kind=kind,
                name=name,
                start_ns=start,
                cls=cls,
                direction=direction,
                count=len(acc.vehicles),
                speed_mean=mean,
                speed_p85=p85(acc.speeds),
                occupancy=occ,
                los=self._los(occ, mean, acc.free_flow_kmh),
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
