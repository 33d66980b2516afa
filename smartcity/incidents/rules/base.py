"""What every rule shares: settings parsing, the per-frame view of the tracks, per-track state.

A rule is a noun with one verb: ``findings = rule.update(frame)`` (a `FrameTracks` of its
camera, in stream order). Rules measure time with ``frame.pts`` and distances on the ground with
``frame.ground_xy`` (metres, from the camera's calibration); a rule that needs metres refuses a
camera without a calibration when it is built (`GeometryError` naming the camera and field).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.incidents.geometry import CameraGeometry, GeometryError
from smartcity.incidents.types import Finding, FrameTracks

F64 = npt.NDArray[np.float64]
PERSON = APPLIANCE_CLASSES.index("person")
VEHICLE_CLASSES = frozenset(
    APPLIANCE_CLASSES.index(c) for c in ("bicycle", "car", "motorcycle", "bus", "truck")
)
#: typical length on the road (metres) per class id, for lane occupancy
CLASS_LENGTH_M = np.array([0.6, 1.8, 4.5, 2.2, 12.0, 9.0])


def class_name(class_id: int) -> str:
    return APPLIANCE_CLASSES[class_id] if 0 <= class_id < len(APPLIANCE_CLASSES) else str(class_id)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Base of each rule's settings: every rule has ``enabled`` and a cool-down."""

    enabled: bool = True
    cooldown_s: float = 60.0

    def check(self, path: str) -> None:
        """Extra validation beyond types and signs; raise GeometryError(path.field, ...)."""


S = TypeVar("S", bound=Settings)


def parse_settings(cls: type[S], v: Any, path: str) -> S:
    """A settings dataclass from a dict: unknown fields, wrong types and negative numbers are
    refused naming ``path.field``."""
    if v is None:
        v = {}
    if isinstance(v, bool):
        v = {"enabled": v}
    if not isinstance(v, Mapping):
        raise GeometryError(path, f"must be a mapping, got {type(v).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kw: dict[str, Any] = {}
    for k, x in v.items():
        if k not in fields:
            raise GeometryError(f"{path}.{k}", f"unknown setting (allowed: {', '.join(fields)})")
        want = getattr(defaults, k)
        fp = f"{path}.{k}"
        if isinstance(want, bool):
            if not isinstance(x, bool):
                raise GeometryError(fp, f"must be true or false, got {x!r}")
        elif isinstance(want, int | float) or want is None:
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                if not (want is None and x is None):
                    raise GeometryError(fp, f"must be a number, got {x!r}")
            if x is not None and x < 0:
                raise GeometryError(fp, f"must be >= 0, got {x!r}")
            if isinstance(want, int) and x is not None and x != int(x):
                raise GeometryError(fp, f"must be a whole number, got {x!r}")
            if isinstance(want, int) and x is not None:
                x = int(x)
            elif x is not None:
                x = float(x)
        elif isinstance(want, tuple):
            if not isinstance(x, list | tuple) or not all(isinstance(i, str) for i in x):
                raise GeometryError(fp, f"must be a list of names, got {x!r}")
            x = tuple(x)
        elif isinstance(want, str) and not isinstance(x, str):
            raise GeometryError(fp, f"must be a string, got {x!r}")
        kw[k] = x
    out = cls(**kw)
    out.check(path)
    return out


def class_ids(names: tuple[str, ...], path: str) -> frozenset[int]:
    out = set()
    for i, n in enumerate(names):
        if n not in APPLIANCE_CLASSES:
            raise GeometryError(
                f"{path}[{i}]", f"unknown class {n!r} (one of {', '.join(APPLIANCE_CLASSES)})"
            )
        out.add(APPLIANCE_CLASSES.index(n))
    return frozenset(out)


# --------------------------------------------------------------------------- frame view


@dataclass(frozen=True)
class FrameView:
    """Per-frame arrays every rule uses, computed once per frame and geometry."""

    frame: FrameTracks
    ids: npt.NDArray[np.int64]
    cls: npt.NDArray[np.int32]
    px: F64  # bottom centre of each box, pixels
    ground: F64  # ground point, metres (NaN when uncalibrated)
    speed: F64  # km/h (NaN when unknown)
    lane: npt.NDArray[np.int64]  # index into geometry.lanes, -1 off every lane
    vehicle: npt.NDArray[np.bool_]
    person: npt.NDArray[np.bool_]
    box_h: F64
    #: the ground point is fine enough to measure (geometry.max_m_per_px); speed is NaN where not
    metric: npt.NDArray[np.bool_]
    #: metres on the ground that one pixel of box bottom spans there (NaN when uncalibrated)
    m_per_px: F64

    @property
    def pts(self) -> float:
        return self.frame.pts


_view_cache: list[tuple[FrameTracks, CameraGeometry, FrameView]] = []


def frame_view(frame: FrameTracks, geo: CameraGeometry) -> FrameView:
    """The view of a frame (cached for the last frame, so the rules of one RuleSet share it)."""
    if _view_cache and _view_cache[0][0] is frame and _view_cache[0][1] is geo:
        return _view_cache[0][2]
    n = len(frame)
    xyxy = np.asarray(frame.xyxy, np.float64).reshape(n, 4)
    px = np.column_stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]])
    ground = np.asarray(frame.ground_xy, np.float64).reshape(-1, 2)
    if len(ground) != n:
        ground = np.full((n, 2), np.nan)
    if geo.calibration is not None and n and not np.all(np.isfinite(ground)):
        bad = ~np.all(np.isfinite(ground), axis=1)
        ground = ground.copy()
        ground[bad] = geo.calibration.to_ground(px[bad])
    speed = np.asarray(frame.speed_kmh, np.float64).reshape(-1)
    if len(speed) != n:
        speed = np.full(n, np.nan)
    metric = np.zeros(n, dtype=bool)
    res = np.full(n, np.nan)
    if geo.calibration is not None and n:
        here = geo.calibration.to_ground(px)
        step = geo.calibration.to_ground(px + [0.0, 1.0])
        res = np.hypot(step[:, 0] - here[:, 0], step[:, 1] - here[:, 1])
        metric = np.isfinite(res) & (res <= geo.max_m_per_px)
        speed = np.where(metric, speed, np.nan)
    cls = np.asarray(frame.class_id, np.int32).reshape(n)
    view = FrameView(
        frame=frame,
        ids=np.asarray(frame.track_id, np.int64).reshape(n),
        cls=cls,
        px=px,
        ground=ground,
        speed=speed,
        lane=geo.lane_index(px, ground),
        vehicle=np.isin(cls, list(VEHICLE_CLASSES)),
        person=cls == PERSON,
        box_h=xyxy[:, 3] - xyxy[:, 1],
        metric=metric,
        m_per_px=res,
    )
    _view_cache[:] = [(frame, geo, view)]
    return view


# --------------------------------------------------------------------------- per-track state

T = TypeVar("T")


class TrackStates(Generic[T]):
    """State per track id, forgotten ``forget_s`` after the track was last seen."""

    def __init__(self, factory: Callable[[], T], forget_s: float = 3.0) -> None:
        self.factory = factory
        self.forget_s = forget_s
        self._state: dict[int, T] = {}
        self._seen: dict[int, float] = {}

    def get(self, tid: int, pts: float) -> T:
        self._seen[tid] = pts
        st = self._state.get(tid)
        if st is None:
            st = self._state[tid] = self.factory()
        return st

    def peek(self, tid: int) -> T | None:
        return self._state.get(tid)

    def last_seen(self, tid: int) -> float:
        """The pts the track was last seen at (its last ``get``)."""
        return self._seen[tid]

    def prune(self, pts: float) -> list[tuple[int, T]]:
        """Forgets tracks not seen for forget_s; returns what was forgotten."""
        gone = [t for t, seen in self._seen.items() if pts - seen > self.forget_s]
        out = [(t, self._state.pop(t)) for t in gone]
        for t in gone:
            del self._seen[t]
        return out

    def __len__(self) -> int:
        return len(self._state)

    def items(self) -> Iterator[tuple[int, T]]:
        return iter(list(self._state.items()))


def ground_motion(points: Sequence[tuple[float, float, float]]) -> tuple[F64, F64]:
    """(t, x, y) ground points of a track, oldest first -> its last position and its ground
    velocity (m/s) over up to the last second."""
    t1, x1, y1 = points[-1]
    old = next((p for p in points if t1 - p[0] <= 1.0), points[0])
    dt = t1 - old[0]
    g = np.array((x1, y1), np.float64)
    if dt <= 0:
        return g, np.zeros(2)
    return g, (g - np.array(old[1:3], np.float64)) / dt


def ground_line(pts: F64) -> tuple[F64, F64] | None:
    """A least-squares line per ground axis through (t, x, y) rows: the velocity (m/s per axis)
    and the standard errors of those slopes; None with fewer than 3 points or no time span."""
    if len(pts) < 3:
        return None
    t = pts[:, 0] - pts[:, 0].mean()
    stt = float(t @ t)
    if stt <= 0:
        return None
    xy = pts[:, 1:3] - pts[:, 1:3].mean(axis=0)
    vel = t @ xy / stt
    res = xy - np.outer(t, vel)
    return vel, np.sqrt((res * res).sum(axis=0) / (len(pts) - 2) / stt)


@dataclass
class _Reported:
    direction: tuple[float, float] | None
    pts: float
    ground: F64
    velocity: F64


class ReportedVehicles:
    """The vehicles a rule has reported (by incident key): where each was last seen and how it
    moved, so that the same vehicle under another track id (its track lost and found again, a
    far box doubled) is not reported again. A candidate within ``rejoin_m`` (plus a quarter of
    the distance the vehicle could have driven since, at its speed) of where a reported vehicle
    of the same direction was heading, seen at most ``rejoin_s`` before, is that vehicle."""

    def __init__(self, rejoin_s: float, rejoin_m: float) -> None:
        self.rejoin_s, self.rejoin_m = rejoin_s, rejoin_m
        self._by_key: dict[str, _Reported] = {}

    def seen(self, key: str, points: Sequence[tuple[float, float, float]],
             direction: tuple[float, float] | None = None) -> None:  # fmt: skip
        """The vehicle of incident ``key`` was seen along these (t, x, y) points."""
        g, v = ground_motion(points)
        self._by_key[key] = _Reported(direction, points[-1][0], g, v)

    def match(self, pts: float, ground: F64, direction: tuple[float, float] | None = None) -> str:
        """The key of the reported vehicle at ``ground`` now, or ""."""
        for key, r in self._by_key.items():
            dt = pts - r.pts
            if dt > self.rejoin_s:
                continue
            if direction is not None and r.direction is not None:
                if float(np.dot(direction, r.direction)) < 0.9:
                    continue
            dt = max(dt, 0.0)
            reach = self.rejoin_m + 0.25 * float(np.hypot(*r.velocity)) * dt
            if float(np.hypot(*(ground - r.ground - r.velocity * dt))) <= reach:
                return key
        return ""

    def prune(self, pts: float) -> None:
        for key in [k for k, r in self._by_key.items() if pts - r.pts > self.rejoin_s]:
            del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)


class Rule:
    """Base class: ``name`` is the incident type; ``update`` is the one verb.

    Cool-down: a finding that opens a key opened less than ``cooldown_s`` before is dropped,
    and so is the finding that closes it (the same incident firing again, e.g. congestion
    cleared and back within a minute, is not a new one).
    """

    name: ClassVar[str] = "rule"
    needs_calibration: ClassVar[bool] = False
    s: Settings

    def __init__(self, geometry: CameraGeometry) -> None:
        self.geometry = geometry
        self.cam = geometry.cam
        self._opened: dict[str, float] = {}
        self._muted: set[str] = set()

    def update(self, frame: FrameTracks) -> list[Finding]:
        """The findings this frame brings (opening, updating or closing incidents)."""
        out = []
        for f in self._update(frame):
            if f.closed:
                if f.key in self._muted:
                    self._muted.discard(f.key)
                    continue
            else:
                last = self._opened.get(f.key)
                if last is not None and f.pts - last < self.s.cooldown_s:
                    self._muted.add(f.key)
                    continue
                self._opened[f.key] = f.pts
            out.append(f)
        if len(self._opened) > 4096:  # forget keys whose cool-down is long over
            keep = frame.pts - self.s.cooldown_s
            self._opened = {k: t for k, t in self._opened.items() if t >= keep}
        return out

    def _update(self, frame: FrameTracks) -> list[Finding]:
        raise NotImplementedError

    def finding(
        self, frame: FrameTracks, key: str, track_ids: tuple[int, ...] = (), **kw: Any
    ) -> Finding:
        return Finding(
            rule=self.name, cam=self.cam, key=key, pts=frame.pts, t_ns=frame.t_ns,
            track_ids=tuple(int(t) for t in track_ids), **kw,
        )  # fmt: skip


def require(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise GeometryError(path, message)


def box_iou(a: Sequence[float] | F64, b: Sequence[float] | F64) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
