"""What the repositories return: frozen dataclasses, detached from any session or thread.

Datetimes are always timezone-aware UTC. A camera's URL may hold credentials: it is never part
of a repr (`repr=False`), so it does not leak into logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Incident states; `open` and `acknowledged` are *active* (the condition may still be going on,
#: findings with the same key merge into it); `resolved` and `dismissed` are closed and final.
STATES = ("open", "acknowledged", "resolved", "dismissed")
ACTIVE_STATES = ("open", "acknowledged")
CLOSED_STATES = ("resolved", "dismissed")

#: Allowed lifecycle changes: from-state -> to-states.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("acknowledged", "resolved", "dismissed"),
    "acknowledged": ("resolved", "dismissed"),
    "resolved": (),
    "dismissed": (),
}

#: Kinds of rows in an incident's lifecycle log.
EVENT_KINDS = (
    "opened",
    "updated",
    "merged",
    "acknowledged",
    "assigned",
    "resolved",
    "dismissed",
    "note",
    "legal_hold_on",
    "legal_hold_off",
)

EVIDENCE_KINDS = ("snapshot", "clip")

#: Traffic bucket periods, and their length in seconds.
PERIODS: dict[str, int] = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}
#: Which period each roll-up reads from.
ROLLUP_SOURCE = {"15m": "1m", "1h": "15m", "1d": "1h"}
SOURCE_KINDS = ("line", "lane")
LEVELS_OF_SERVICE = ("A", "B", "C", "D", "E", "F")


@dataclass(frozen=True, slots=True)
class CameraRecord:
    id: str
    name: str
    url: str = field(repr=False)
    enabled: bool
    geometry: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    id: str
    type: str
    camera_id: str
    key: str
    state: str
    severity: str
    priority: int
    score: float
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    first_pts: float | None
    last_pts: float | None
    track_ids: tuple[int, ...]
    details: dict[str, Any]
    legal_hold: bool
    assigned_to: str | None
    count: int  # firings merged into this incident, the first included

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    incident_id: str
    at: datetime
    kind: str
    actor: str | None
    text: str | None
    data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    id: int
    incident_id: str
    kind: str
    path: str  # relative to the evidence root, POSIX separators
    size: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BucketRecord:
    camera_id: str
    source_kind: str  # line | lane
    source_name: str
    period: str  # 1m | 15m | 1h | 1d
    start: datetime
    cls: str  # appliance class name, or what the service uses for all classes ("all")
    direction: str  # lines: "in" | "out"; lanes: the lane's direction name
    count: int
    # None = no value (upsert also takes NaN for the numbers and "" for los).
    speed_mean: float | None = None  # km/h
    speed_p85: float | None = None  # km/h
    occupancy: float | None = None  # 0..1, mean share of the lane covered
    los: str | None = None  # level of service A..F


@dataclass(frozen=True, slots=True)
class IngestCounters:
    camera_id: str
    received: int
    missed: int
    decode_errors: int
    updated_at: datetime
    last_seq: int | None = None  # the last tracks sequence number the service handled


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; `next_cursor` is None on the last page."""

    items: tuple[IncidentRecord, ...]
    next_cursor: str | None
