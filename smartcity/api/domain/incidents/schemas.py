"""Incidents, their lifecycle log and evidence."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class Evidence(msgspec.Struct):
    id: int
    kind: str
    size: int
    sha256: str
    created_at: str
    url: str


class IncidentEvent(msgspec.Struct):
    id: int
    at: str
    kind: str
    actor: str | None
    text: str | None
    data: dict[str, Any] | None


class Incident(msgspec.Struct):
    id: str
    type: str
    camera_id: str
    state: str
    severity: str
    priority: int
    score: float
    opened_at: str
    updated_at: str
    closed_at: str | None
    track_ids: list[int]
    details: dict[str, Any]
    legal_hold: bool
    assigned_to: str | None
    count: int


class IncidentDetail(Incident):
    events: list[IncidentEvent] = []
    evidence: list[Evidence] = []


class IncidentPage(msgspec.Struct):
    items: list[Incident]
    next_cursor: str | None


class ActionText(msgspec.Struct, forbid_unknown_fields=True):
    text: Text | None = None


class Assign(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None


class Note(msgspec.Struct, forbid_unknown_fields=True):
    text: Text


class LegalHold(msgspec.Struct, forbid_unknown_fields=True):
    on: bool
    text: Text | None = None
