"""Typed bus events, one per topic family (docs/events.md is the contract).

Events are frozen msgspec Structs; per-object data of a tracks message are numpy arrays, never a
list of per-track Python objects. `seq` is the publisher's sequence number on the event's topic.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import numpy as np
import numpy.typing as npt

from smartcity.bus.defaults import SCHEMA_VERSION

#: Topic families: topic = "<family>.<key>" except config.changed.
TRACKS = "tracks"
HEALTH = "health"
INCIDENT = "incident"
STATS = "stats"
CONFIG_CHANGED = "config.changed"

#: Columns of one row of a tracks message, in order. gx, gy (ground position, metres) and kmh
#: (ground speed) were appended later in schema 1 and are NaN where unknown.
TRACK_COLUMNS = ("id", "cls", "score", "x1", "y1", "x2", "y2", "gx", "gy", "kmh")
#: Rows of the first writers of schema 1 stop after y2; readers fill the rest with NaN.
TRACK_COLUMNS_MIN = 7


def _empty(dtype: Any, shape: tuple[int, ...] = (0,)) -> Any:
    return msgspec.field(default_factory=lambda: np.zeros(shape, dtype=dtype))


def _unknown(track_id: Any, shape: tuple[int, ...]) -> Any:
    return np.full((len(track_id), *shape), np.nan, np.float32)


class TracksEvent(msgspec.Struct, frozen=True, kw_only=True):
    """tracks.<cam>: the tracks of one analyzed frame."""

    family: ClassVar[str] = TRACKS
    cam: str
    seq: int
    frame: int  # frame number in the stream
    pts: float  # presentation time, seconds
    t_ns: int  # capture wall-clock time, ns since the Unix epoch
    w: int  # frame width, pixels (boxes are in these pixels)
    h: int  # frame height, pixels
    track_id: npt.NDArray[np.int64] = _empty(np.int64)
    class_id: npt.NDArray[np.int32] = _empty(np.int32)
    score: npt.NDArray[np.float32] = _empty(np.float32)
    xyxy: npt.NDArray[np.float32] = _empty(np.float32, (0, 4))
    #: Ground position (metres) of each box's bottom centre; NaN without a calibration. None
    #: (the default) means unknown for every track: NaN arrays of the right length.
    ground_xy: npt.NDArray[np.float32] = None  # type: ignore[assignment]
    #: Ground speed, km/h; NaN when unknown (no calibration, track too young).
    speed_kmh: npt.NDArray[np.float32] = None  # type: ignore[assignment]
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.ground_xy is None:
            msgspec.structs.force_setattr(self, "ground_xy", _unknown(self.track_id, (2,)))
        if self.speed_kmh is None:
            msgspec.structs.force_setattr(self, "speed_kmh", _unknown(self.track_id, ()))

    @property
    def topic(self) -> str:
        return f"{TRACKS}.{self.cam}"

    def __len__(self) -> int:
        return int(self.track_id.shape[0])


class HealthEvent(msgspec.Struct, frozen=True, kw_only=True):
    """health.<cam>: stream stats (docs/engine.md), inference, tracking and bus counters."""

    family: ClassVar[str] = HEALTH
    cam: str
    seq: int
    t_ns: int
    state: str
    last_error: str = ""
    packets: int = 0
    bytes: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_skipped: int = 0
    frames_dropped: int = 0
    corrupt_packets: int = 0
    reconnects: int = 0
    loops: int = 0
    last_frame_age_s: float | None = None
    decode_p50_ms: float = 0.0
    decode_p99_ms: float = 0.0
    convert_p50_ms: float = 0.0
    source_fps: float = 0.0
    width: int = 0
    height: int = 0
    codec: str = ""
    decoder: str = ""
    hwaccel_note: str = ""
    uptime_s: float = 0.0
    infer_ms: float = 0.0
    track_ms: float = 0.0
    bus_sent: int = 0
    bus_dropped: int = 0
    v: int = SCHEMA_VERSION

    @property
    def topic(self) -> str:
        return f"{HEALTH}.{self.cam}"


class IncidentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """incident.<type>: an incident opened, updated or closed (written to the store first)."""

    family: ClassVar[str] = INCIDENT
    type: str  # wrong_way, stopped_vehicle, speeding, congestion, crowding, crash, ...
    seq: int
    id: str  # incident id in the store
    cam: str
    state: str  # "open", "update" or "closed"
    t_ns: int  # wall-clock time of this state change, ns
    track_ids: tuple[int, ...] = ()
    score: float = 0.0
    details: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)
    v: int = SCHEMA_VERSION

    @property
    def topic(self) -> str:
        return f"{INCIDENT}.{self.type}"


class StatsEvent(msgspec.Struct, frozen=True, kw_only=True):
    """stats.<cam>: traffic counts of one camera over one period."""

    family: ClassVar[str] = STATS
    cam: str
    seq: int
    t0_ns: int  # period start, ns since the Unix epoch
    t1_ns: int  # period end
    counts: dict[str, int] = msgspec.field(default_factory=dict)  # class name -> objects counted
    v: int = SCHEMA_VERSION

    @property
    def topic(self) -> str:
        return f"{STATS}.{self.cam}"


class ConfigChangedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """config.changed: the camera set changed; `cams` names the cameras concerned."""

    family: ClassVar[str] = CONFIG_CHANGED
    seq: int
    t_ns: int
    cams: tuple[str, ...] = ()
    reason: str = ""
    v: int = SCHEMA_VERSION

    @property
    def topic(self) -> str:
        return CONFIG_CHANGED


Event = TracksEvent | HealthEvent | IncidentEvent | StatsEvent | ConfigChangedEvent
