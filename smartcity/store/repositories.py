"""Repositories: the only code that writes SQL. Each method is one transaction; writes commit
before returning (an incident is on disk before the service publishes it on the bus).

Times are aware datetimes (UTC is stored); `at=None` means now.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from smartcity.incidents.types import SEVERITIES
from smartcity.store import models as m
from smartcity.store.errors import (
    ConflictError,
    DuplicateError,
    EvidenceExistsError,
    InvalidInputError,
    InvalidTransitionError,
    StoreError,
    UnknownCameraError,
    UnknownIncidentError,
)
from smartcity.store.records import (
    ACTIVE_STATES,
    CLOSED_STATES,
    EVIDENCE_KINDS,
    LEVELS_OF_SERVICE,
    PERIODS,
    ROLLUP_SOURCE,
    SOURCE_KINDS,
    STATES,
    TRANSITIONS,
    BucketRecord,
    CameraRecord,
    EventRecord,
    EvidenceRecord,
    IncidentRecord,
    IngestCounters,
    Page,
)

if TYPE_CHECKING:
    from smartcity.store.store import Store

CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_PAGE = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc_from_ns(t_ns: int) -> datetime:
    """A bus/Finding wall-clock time (ns since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(t_ns / 1e9, UTC)


def _aware(value: datetime | None, what: str) -> datetime:
    if value is None:
        return utcnow()
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{what}: naive datetime {value.isoformat()}; give a timezone")
    return value.astimezone(UTC)


def _json_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object (dict), got {type(value).__name__}")
    try:
        # Round trip: what is stored is exactly what will be read back.
        out: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what} is not JSON-serialisable: {e}") from None
    return out


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise InvalidInputError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _choices(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [_choice(v, allowed, what) for v in values]


# ============================================================================== cameras


def _camera(row: m.Camera) -> CameraRecord:
    return CameraRecord(
        id=row.id,
        name=row.name,
        url=row.url,
        enabled=row.enabled,
        geometry=dict(row.geometry or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def validate_geometry(camera_id: str, geometry: Any) -> dict[str, Any]:
    """JSON-serialisable dict; a `location`, if any, with latitude/longitude in range.

    The rules' own checks of zones, lines, lanes and calibration belong to smartcity.incidents.
    """
    geo = _json_dict(geometry, f"camera {camera_id!r}: geometry")
    loc = geo.get("location")
    if loc is not None:
        if not isinstance(loc, dict):
            raise InvalidInputError(f"camera {camera_id!r}: geometry.location must be an object")
        for name, lim in (("latitude", 90.0), ("longitude", 180.0)):
            v = loc.get(name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not -lim <= v <= lim:
                raise InvalidInputError(
                    f"camera {camera_id!r}: geometry.location.{name} {v!r} is not a number "
                    f"in [-{lim:g}, {lim:g}]"
                )
    return geo


class CameraRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        id: str,
        name: str,
        url: str,
        *,
        enabled: bool = True,
        geometry: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> CameraRecord:
        if not isinstance(id, str) or not CAMERA_ID.match(id):
            raise InvalidInputError(
                f"bad camera id {id!r}: 1-64 characters of letters, digits, '_', '.', '-'"
            )
        if not isinstance(url, str) or not url:
            raise InvalidInputError(f"camera {id!r}: url must be a non-empty string")
        geo = validate_geometry(id, geometry)
        now = _aware(at, "at")
        with self._store.write() as s:
            if s.get(m.Camera, id) is not None:
                raise DuplicateError(f"camera {id!r} exists already")
            row = m.Camera(
                id=id,
                name=name,
                url=url,
                enabled=bool(enabled),
                geometry=geo,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            return _camera(row)

    def get(self, id: str) -> CameraRecord:
        with self._store.read() as s:
            row = s.get(m.Camera, id)
            if row is None:
                raise UnknownCameraError(f"unknown camera {id!r}")
            return _camera(row)

    def exists(self, id: str) -> bool:
        with self._store.read() as s:
            return s.get(m.Camera, id) is not None

    def list(self, *, enabled: bool | None = None) -> builtins.list[CameraRecord]:
        q = select(m.Camera).order_by(m.Camera.id)
        if enabled is not None:
            q = q.where(m.Camera.enabled == enabled)
        with self._store.read() as s:
            return [_camera(r) for r in s.scalars(q)]

    def update(
        self,
        id: str,
        *,
        name: str | None = None,
        url: str | None = None,
        enabled: bool | None = None,
        geometry: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> CameraRecord:
        """Change the fields given (None leaves a field as it is)."""
        geo = validate_geometry(id, geometry) if geometry is not None else None
        if url is not None and (not isinstance(url, str) or not url):
            raise InvalidInputError(f"camera {id!r}: url must be a non-empty string")
        now = _aware(at, "at")
        with self._store.write() as s:
            row = s.get(m.Camera, id)
            if row is None:
                raise UnknownCameraError(f"unknown camera {id!r}")
            if name is not None:
                row.name = name
            if url is not None:
                row.url = url
            if enabled is not None:
                row.enabled = bool(enabled)
            if geo is not None:
                row.geometry = geo
            row.updated_at = now
            s.flush()
            return _camera(row)

    def delete(self, id: str) -> None:
        """Delete a camera, its traffic figures and counters; refused while it has incidents
        (they are records: disable the camera instead)."""
        with self._store.write() as s:
            row = s.get(m.Camera, id)
            if row is None:
                raise UnknownCameraError(f"unknown camera {id!r}")
            n = s.scalar(select(func.count()).where(m.Incident.camera_id == id)) or 0
            if n:
                raise ConflictError(f"camera {id!r} has {n} incidents: disable it instead")
            s.delete(row)


# ============================================================================== incidents


_INCIDENT_COLS = tuple(m.Incident.__table__.columns)


def _incident(row: Any) -> IncidentRecord:
    """An IncidentRecord from an ORM object or a Core row of every incidents column."""
    return IncidentRecord(
        id=row.id,
        type=row.type,
        camera_id=row.camera_id,
        key=row.key,
        state=row.state,
        severity=row.severity,
        priority=row.priority,
        score=row.score,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        first_pts=row.first_pts,
        last_pts=row.last_pts,
        track_ids=tuple(row.track_ids or ()),
        details=dict(row.details or {}),
        legal_hold=row.legal_hold,
        assigned_to=row.assigned_to,
        count=row.count,
    )


def _event(row: m.IncidentEvent) -> EventRecord:
    return EventRecord(
        id=row.id,
        incident_id=row.incident_id,
        at=row.at,
        kind=row.kind,
        actor=row.actor,
        text=row.text,
        data=row.data,
    )


def encode_cursor(opened_at: datetime, id: str) -> str:
    raw = json.dumps([opened_at.astimezone(UTC).isoformat(), id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id = json.loads(raw)
        t = datetime.fromisoformat(at)
        if not isinstance(id, str) or t.tzinfo is None:
            raise ValueError
        return t, id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(f"bad cursor {cursor[:40]!r}") from None


def _ids(track_ids: Iterable[int]) -> builtins.list[int]:
    try:
        return [int(t) for t in track_ids]
    except (TypeError, ValueError):
        raise InvalidInputError(f"track ids must be integers, got {track_ids!r}") from None


def _finite(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise InvalidInputError(f"{what} must be finite, got {value!r}")
    return v


class IncidentRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _row(s: Session, id: str, *, lock: bool = False) -> m.Incident:
        q = select(m.Incident).where(m.Incident.id == id)
        if lock:
            q = q.with_for_update()
        row = s.scalars(q).one_or_none()
        if row is None:
            raise UnknownIncidentError(f"unknown incident {id!r}")
        return row

    @staticmethod
    def _log(
        s: Session,
        row: m.Incident,
        kind: str,
        at: datetime,
        actor: str | None,
        text: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> m.IncidentEvent:
        ev = m.IncidentEvent(
            incident_id=row.id, at=at, kind=kind, actor=actor, text=text, data=data
        )
        s.add(ev)
        return ev

    # ---------------------------------------------------------------- create / read
    def create(
        self,
        *,
        type: str,
        camera_id: str,
        key: str,
        at: datetime | None = None,
        pts: float | None = None,
        severity: str = "medium",
        priority: int = 0,
        score: float = 1.0,
        track_ids: Iterable[int] = (),
        details: dict[str, Any] | None = None,
        actor: str | None = "system",
        id: str | None = None,
    ) -> IncidentRecord:
        """Open an incident (state open, count 1) and log `opened`; committed on return.

        DuplicateError if (camera, type, key) has an active (open or acknowledged) incident:
        `find_active` it and `merge` instead.
        """
        _choice(severity, SEVERITIES, "severity")
        if not type or not isinstance(type, str):
            raise InvalidInputError(f"incident type must be a non-empty string, got {type!r}")
        if not isinstance(key, str):
            raise InvalidInputError(f"incident key must be a string, got {key!r}")
        det = _json_dict(details, "incident details")
        tids = _ids(track_ids)
        now = _aware(at, "at")
        pts = _finite(pts, "pts")
        incident_id = id or str(uuid.uuid4())
        try:
            with self._store.write() as s:
                if s.get(m.Camera, camera_id) is None:
                    raise UnknownCameraError(f"unknown camera {camera_id!r}")
                active = self._active(s, camera_id, type, key)
                if active is not None:
                    raise DuplicateError(
                        f"camera {camera_id!r} has an active {type} incident for key {key!r}: "
                        f"{active.id} ({active.state})"
                    )
                row = m.Incident(
                    id=incident_id,
                    type=type,
                    camera_id=camera_id,
                    key=key,
                    state="open",
                    severity=severity,
                    priority=int(priority),
                    score=_finite(score, "score"),
                    opened_at=now,
                    updated_at=now,
                    closed_at=None,
                    first_pts=pts,
                    last_pts=pts,
                    track_ids=tids,
                    details=det,
                    legal_hold=False,
                    assigned_to=None,
                    count=1,
                )
                s.add(row)
                self._log(s, row, "opened", now, actor, data={"severity": severity})
                s.flush()
                return _incident(row)
        except IntegrityError as e:  # a race with another writer (PostgreSQL)
            raise DuplicateError(
                f"incident {incident_id} for camera {camera_id!r}, {type}, key {key!r} "
                f"conflicts with a stored one: {e.orig}"
            ) from None

    @staticmethod
    def _active(s: Session, camera_id: str, type: str, key: str) -> m.Incident | None:
        return s.scalars(
            select(m.Incident).where(
                m.Incident.camera_id == camera_id,
                m.Incident.type == type,
                m.Incident.key == key,
                m.Incident.closed_at.is_(None),
            )
        ).one_or_none()

    def get(self, id: str) -> IncidentRecord:
        with self._store.read() as s:
            return _incident(self._row(s, id))

    def find_active(self, camera_id: str, type: str, key: str) -> IncidentRecord | None:
        """The open or acknowledged incident of (camera, type, key), if there is one."""
        with self._store.read() as s:
            row = self._active(s, camera_id, type, key)
            return _incident(row) if row is not None else None

    def list(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        camera_id: str | None = None,
        type: str | Sequence[str] | None = None,
        state: str | Sequence[str] | None = None,
        severity: str | Sequence[str] | None = None,
        legal_hold: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
        camera_ids: Sequence[str] | None = None,
    ) -> Page:
        """Newest first by (opened_at, id); since <= opened_at < until. Pass the returned
        `next_cursor` to get the next page (stable while incidents are added). `camera_ids`
        restricts to those cameras (an empty list: nothing)."""
        states = _choices(state, STATES, "state")
        sevs = _choices(severity, SEVERITIES, "severity")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit {limit} out of range 1..{MAX_PAGE}")
        q = select(m.Incident)
        if since is not None:
            q = q.where(m.Incident.opened_at >= _aware(since, "since"))
        if until is not None:
            q = q.where(m.Incident.opened_at < _aware(until, "until"))
        if camera_id is not None:
            q = q.where(m.Incident.camera_id == camera_id)
        if isinstance(type, str):
            q = q.where(m.Incident.type == type)
        elif type is not None:
            q = q.where(m.Incident.type.in_(list(type)))
        if camera_ids is not None:
            q = q.where(m.Incident.camera_id.in_(list(camera_ids)))
        if states:
            q = q.where(m.Incident.state.in_(states))
        if sevs:
            q = q.where(m.Incident.severity.in_(sevs))
        if legal_hold is not None:
            q = q.where(m.Incident.legal_hold == legal_hold)
        if cursor is not None:
            c_at, c_id = decode_cursor(cursor)
            # the first term lets the planner range-scan the (opened_at, ...) indexes; the OR
            # alone gave a multi-index plan that sorted every older row (bench/api.py)
            q = q.where(
                m.Incident.opened_at <= c_at,
                or_(
                    m.Incident.opened_at < c_at,
                    and_(m.Incident.opened_at == c_at, m.Incident.id < c_id),
                ),
            )
        q = q.order_by(m.Incident.opened_at.desc(), m.Incident.id.desc()).limit(limit + 1)
        with self._store.read() as s:
            # plain rows, not ORM objects: a page is read-only (2.4 -> ~1 ms a page)
            conn = s.connection()  # Core execution: no ORM statement machinery
            rows = [_incident(r) for r in conn.execute(q.with_only_columns(*_INCIDENT_COLS))]
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1].opened_at, rows[-1].id) if more else None
        return Page(items=tuple(rows), next_cursor=nxt)

    def events(self, id: str) -> builtins.list[EventRecord]:
        """The incident's lifecycle log, oldest first."""
        with self._store.read() as s:
            self._row(s, id)
            q = (
                select(m.IncidentEvent)
                .where(m.IncidentEvent.incident_id == id)
                .order_by(m.IncidentEvent.id)
            )
            return [_event(r) for r in s.scalars(q)]

    # ---------------------------------------------------------------- changes
    def merge(
        self,
        id: str,
        *,
        at: datetime | None = None,
        pts: float | None = None,
        track_ids: Iterable[int] = (),
        severity: str | None = None,
        score: float | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = "system",
    ) -> IncidentRecord:
        """Another firing of the rule joined this incident: count + 1, updated_at, last seen
        pts, track ids added; severity, score and details replaced where given. Logs `merged`."""
        return self._touch(id, "merged", at, pts, track_ids, severity, score, details, actor)

    def update(
        self,
        id: str,
        *,
        at: datetime | None = None,
        pts: float | None = None,
        track_ids: Iterable[int] = (),
        severity: str | None = None,
        score: float | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = "system",
    ) -> IncidentRecord:
        """The same firing goes on (same key): like merge, without counting. Logs `updated`."""
        return self._touch(id, "updated", at, pts, track_ids, severity, score, details, actor)

    def _touch(
        self,
        id: str,
        kind: str,
        at: datetime | None,
        pts: float | None,
        track_ids: Iterable[int],
        severity: str | None,
        score: float | None,
        details: dict[str, Any] | None,
        actor: str | None,
    ) -> IncidentRecord:
        if severity is not None:
            _choice(severity, SEVERITIES, "severity")
        det = _json_dict(details, "incident details") if details is not None else None
        tids = _ids(track_ids)
        now = _aware(at, "at")
        pts = _finite(pts, "pts")
        score = _finite(score, "score")
        with self._store.write() as s:
            row = self._row(s, id, lock=True)
            if row.state not in ACTIVE_STATES:
                raise InvalidTransitionError(
                    f"incident {id} is {row.state}: a closed incident cannot be {kind}"
                )
            data: dict[str, Any] = {}
            if kind == "merged":
                row.count += 1
                data["count"] = row.count
            row.updated_at = now
            if pts is not None:
                row.last_pts = pts if row.last_pts is None else max(row.last_pts, pts)
                if row.first_pts is None:
                    row.first_pts = pts
                data["pts"] = pts
            if tids:
                row.track_ids = list(dict.fromkeys([*row.track_ids, *tids]))
            if severity is not None and severity != row.severity:
                data["severity"] = severity
                row.severity = severity
            if score is not None:
                row.score = score
            if det is not None:
                row.details = det
            self._log(s, row, kind, now, actor, data=data or None)
            s.flush()
            return _incident(row)

    def transition(
        self,
        id: str,
        to: str,
        *,
        actor: str | None,
        at: datetime | None = None,
        text: str | None = None,
    ) -> IncidentRecord:
        """open -> acknowledged | resolved | dismissed; acknowledged -> resolved | dismissed.
        Resolved and dismissed are final (closed_at set; the dedup key is free again)."""
        _choice(to, STATES, "state")
        now = _aware(at, "at")
        with self._store.write() as s:
            row = self._row(s, id, lock=True)
            if to not in TRANSITIONS[row.state]:
                allowed = ", ".join(TRANSITIONS[row.state]) or "nothing (final)"
                raise InvalidTransitionError(
                    f"incident {id} is {row.state}: cannot become {to} (allowed: {allowed})"
                )
            row.state = to
            row.updated_at = now
            if to in CLOSED_STATES:
                row.closed_at = now
            self._log(s, row, to, now, actor, text=text)
            s.flush()
            return _incident(row)

    def acknowledge(
        self, id: str, *, actor: str | None, at: datetime | None = None, text: str | None = None
    ) -> IncidentRecord:
        return self.transition(id, "acknowledged", actor=actor, at=at, text=text)

    def resolve(
        self, id: str, *, actor: str | None, at: datetime | None = None, text: str | None = None
    ) -> IncidentRecord:
        return self.transition(id, "resolved", actor=actor, at=at, text=text)

    def dismiss(
        self, id: str, *, actor: str | None, at: datetime | None = None, text: str | None = None
    ) -> IncidentRecord:
        return self.transition(id, "dismissed", actor=actor, at=at, text=text)

    def assign(
        self, id: str, assignee: str | None, *, actor: str | None, at: datetime | None = None
    ) -> IncidentRecord:
        """Assign to a user (None: unassign). Allowed in every state."""
        now = _aware(at, "at")
        with self._store.write() as s:
            row = self._row(s, id, lock=True)
            row.assigned_to = assignee
            row.updated_at = now
            self._log(s, row, "assigned", now, actor, data={"assigned_to": assignee})
            s.flush()
            return _incident(row)

    def add_note(
        self, id: str, text: str, *, actor: str | None, at: datetime | None = None
    ) -> EventRecord:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("a note needs some text")
        now = _aware(at, "at")
        with self._store.write() as s:
            row = self._row(s, id, lock=True)
            ev = self._log(s, row, "note", now, actor, text=text)
            s.flush()
            return _event(ev)

    def set_legal_hold(
        self,
        id: str,
        on: bool,
        *,
        actor: str | None,
        at: datetime | None = None,
        text: str | None = None,
    ) -> IncidentRecord:
        """Under legal hold an incident is never deleted and keeps its evidence."""
        now = _aware(at, "at")
        with self._store.write() as s:
            row = self._row(s, id, lock=True)
            if row.legal_hold != bool(on):
                row.legal_hold = bool(on)
                row.updated_at = now
                kind = "legal_hold_on" if on else "legal_hold_off"
                self._log(s, row, kind, now, actor, text=text)
            s.flush()
            return _incident(row)


# ============================================================================== evidence


def _evidence(row: m.Evidence) -> EvidenceRecord:
    return EvidenceRecord(
        id=row.id,
        incident_id=row.incident_id,
        kind=row.kind,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        created_at=row.created_at,
    )


def clean_relpath(path: str | os.PathLike[str]) -> str:
    """A relative POSIX path without '..', '.' or empty parts (what the path column holds)."""
    raw = os.fspath(path)
    if not isinstance(raw, str) or not raw or "\\" in raw or "\x00" in raw:
        raise InvalidInputError(f"bad evidence path {raw!r}")
    p = PurePosixPath(raw)
    if p.is_absolute() or any(part in ("..", ".", "") for part in raw.split("/")):
        raise InvalidInputError(
            f"evidence path {raw!r} must be relative to the evidence root, without '..' or '.'"
        )
    return str(p)


class EvidenceRepository:
    """Evidence rows (and, with `write`, files). Never overwrites: a path is stored once."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def root(self) -> Path:
        root = self._store.evidence_root
        if root is None:
            raise StoreError("this store was opened without an evidence root")
        return root

    def abspath(self, path: str | EvidenceRecord) -> Path:
        rel = path.path if isinstance(path, EvidenceRecord) else clean_relpath(path)
        return self.root / rel

    def add(
        self,
        incident_id: str,
        kind: str,
        path: str,
        *,
        size: int,
        sha256: str,
        at: datetime | None = None,
    ) -> EvidenceRecord:
        """Record a file already written under the evidence root. EvidenceExistsError if the
        path has a row already."""
        _choice(kind, EVIDENCE_KINDS, "evidence kind")
        rel = clean_relpath(path)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInputError(f"evidence {rel!r}: bad size {size!r}")
        if not isinstance(sha256, str) or not SHA256.match(sha256):
            raise InvalidInputError(f"evidence {rel!r}: sha256 must be 64 lowercase hex digits")
        now = _aware(at, "at")
        try:
            with self._store.write() as s:
                if s.get(m.Incident, incident_id) is None:
                    raise UnknownIncidentError(f"unknown incident {incident_id!r}")
                if s.scalar(select(m.Evidence.id).where(m.Evidence.path == rel)) is not None:
                    raise EvidenceExistsError(f"evidence {rel!r} is recorded already")
                row = m.Evidence(
                    incident_id=incident_id,
                    kind=kind,
                    path=rel,
                    size=size,
                    sha256=sha256,
                    created_at=now,
                )
                s.add(row)
                s.flush()
                return _evidence(row)
        except IntegrityError:  # a race with another writer
            raise EvidenceExistsError(f"evidence {rel!r} is recorded already") from None

    def write(
        self,
        incident_id: str,
        kind: str,
        path: str,
        data: bytes,
        *,
        at: datetime | None = None,
    ) -> EvidenceRecord:
        """Write `data` to <root>/<path> (never replacing a file: EvidenceExistsError if it
        exists), fsync it, and record it with its size and sha256."""
        _choice(kind, EVIDENCE_KINDS, "evidence kind")
        rel = clean_relpath(path)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial file behind
            raise
        try:
            os.link(tmp, target)  # atomic, and fails if the target exists: no overwrite
        except FileExistsError:
            raise EvidenceExistsError(f"evidence file {rel!r} exists already") from None
        finally:
            tmp.unlink()
        _fsync_dir(target.parent)
        try:
            return self.add(
                incident_id,
                kind,
                rel,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                at=at,
            )
        except BaseException:
            target.unlink(missing_ok=True)  # ours: it did not exist before
            raise

    def get(self, id: int) -> EvidenceRecord:
        with self._store.read() as s:
            row = s.get(m.Evidence, id)
            if row is None:
                raise StoreError(f"unknown evidence {id!r}")
            return _evidence(row)

    def list(self, incident_id: str) -> builtins.list[EvidenceRecord]:
        q = select(m.Evidence).where(m.Evidence.incident_id == incident_id).order_by(m.Evidence.id)
        with self._store.read() as s:
            return [_evidence(r) for r in s.scalars(q)]

    def total_bytes(self) -> int:
        with self._store.read() as s:
            return int(s.scalar(select(func.coalesce(func.sum(m.Evidence.size), 0))) or 0)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ============================================================================== traffic


def _bucket(row: m.TrafficBucket) -> BucketRecord:
    return BucketRecord(
        camera_id=row.camera_id,
        source_kind=row.source_kind,
        source_name=row.source_name,
        period=row.period,
        start=row.start,
        cls=row.cls,
        direction=row.direction,
        count=row.count,
        speed_mean=row.speed_mean,
        speed_p85=row.speed_p85,
        occupancy=row.occupancy,
        los=row.los,
    )


def floor_period(t: datetime, period: str) -> datetime:
    """Start of the UTC bucket of `period` holding t (days are UTC days)."""
    secs = PERIODS[period]
    t = t.astimezone(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = int((t - epoch).total_seconds() // secs)
    return epoch + timedelta(seconds=n * secs)


_BUCKET_KEY = ("camera_id", "source_kind", "source_name", "period", "start", "cls", "direction")
_BUCKET_VALUES = ("count", "speed_mean", "speed_p85", "occupancy", "los")


def _check_bucket(b: BucketRecord) -> dict[str, Any]:
    where = f"traffic bucket {b.camera_id}/{b.source_kind}:{b.source_name}/{b.period}"
    _choice(b.period, tuple(PERIODS), f"{where}: period")
    _choice(b.source_kind, SOURCE_KINDS, f"{where}: source kind")
    start = _aware(b.start, f"{where}: start")
    if floor_period(start, b.period) != start:
        raise InvalidInputError(f"{where}: start {start.isoformat()} is not a {b.period} boundary")
    if isinstance(b.count, bool) or not isinstance(b.count, int) or b.count < 0:
        raise InvalidInputError(f"{where}: count must be an integer >= 0, got {b.count!r}")
    row = {k: getattr(b, k) for k in (*_BUCKET_KEY, *_BUCKET_VALUES)}
    row["start"] = start
    # "No value" may come as None, NaN (numbers) or "" (level of service): stored as NULL.
    for k in ("speed_mean", "speed_p85", "occupancy"):
        v = row[k]
        if v is not None and isinstance(v, float) and math.isnan(v):
            v = None
        row[k] = _finite(v, f"{where}: {k}")
    row["los"] = row["los"] or None
    if row["los"] is not None:
        _choice(row["los"], LEVELS_OF_SERVICE, f"{where}: level of service")
    if row["occupancy"] is not None and not 0.0 <= row["occupancy"] <= 1.0:
        raise InvalidInputError(f"{where}: occupancy {b.occupancy!r} not in [0, 1]")
    return row


class TrafficRepository:
    """Traffic buckets. Upserts replace a bucket's figures (the service sends whole minutes,
    again after a restart if it must: idempotent)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def upsert(self, buckets: Iterable[BucketRecord]) -> int:
        rows = [_check_bucket(b) for b in buckets]
        if not rows:
            return 0
        with self._store.write() as s:
            cams = {r["camera_id"] for r in rows}
            known = set(s.scalars(select(m.Camera.id).where(m.Camera.id.in_(cams))))
            if cams - known:
                raise UnknownCameraError(f"unknown camera {sorted(cams - known)[0]!r}")
            self._upsert(s, rows)
        return len(rows)

    def _upsert(self, s: Session, rows: list[dict[str, Any]]) -> None:
        table = m.Base.metadata.tables["traffic_buckets"]
        ins = pg_insert(table) if self._store.dialect == "postgresql" else sqlite_insert(table)
        stmt = ins.on_conflict_do_update(
            index_elements=list(_BUCKET_KEY),
            set_={k: ins.excluded[k] for k in _BUCKET_VALUES},
        )
        for i in range(0, len(rows), 500):
            s.execute(stmt, rows[i : i + 500])

    def query(
        self,
        camera_id: str,
        period: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source_kind: str | None = None,
        source_name: str | None = None,
    ) -> list[BucketRecord]:
        _choice(period, tuple(PERIODS), "period")
        q = select(m.TrafficBucket).where(
            m.TrafficBucket.camera_id == camera_id, m.TrafficBucket.period == period
        )
        if since is not None:
            q = q.where(m.TrafficBucket.start >= _aware(since, "since"))
        if until is not None:
            q = q.where(m.TrafficBucket.start < _aware(until, "until"))
        if source_kind is not None:
            q = q.where(m.TrafficBucket.source_kind == source_kind)
        if source_name is not None:
            q = q.where(m.TrafficBucket.source_name == source_name)
        q = q.order_by(
            m.TrafficBucket.start,
            m.TrafficBucket.source_kind,
            m.TrafficBucket.source_name,
            m.TrafficBucket.cls,
            m.TrafficBucket.direction,
        )
        with self._store.read() as s:
            return [_bucket(r) for r in s.scalars(q)]

    def rollup(
        self,
        period: str,
        *,
        since: datetime,
        until: datetime,
        camera_id: str | None = None,
    ) -> int:
        """Build `period` buckets (15m from 1m, 1h from 15m, 1d from 1h) for every `period`
        bucket overlapping [since, until); returns how many were written (upserted: run it again
        as late data come in). See `combine` for how the figures are combined."""
        _choice(period, tuple(ROLLUP_SOURCE), "roll-up period")
        src = ROLLUP_SOURCE[period]
        t0 = floor_period(_aware(since, "since"), period)
        t1 = _aware(until, "until")
        q = select(m.TrafficBucket).where(
            m.TrafficBucket.period == src,
            m.TrafficBucket.start >= t0,
            m.TrafficBucket.start < t1,
        )
        if camera_id is not None:
            q = q.where(m.TrafficBucket.camera_id == camera_id)
        with self._store.write() as s:
            groups: dict[tuple[Any, ...], list[BucketRecord]] = {}
            for row in s.scalars(q):
                b = _bucket(row)
                parent = replace(b, period=period, start=floor_period(b.start, period))
                key = tuple(getattr(parent, k) for k in _BUCKET_KEY)
                groups.setdefault(key, []).append(b)
            out = [
                {k: getattr(combine(children, period), k) for k in (*_BUCKET_KEY, *_BUCKET_VALUES)}
                for children in groups.values()
            ]
            if out:
                self._upsert(s, out)
        return len(out)

    def delete_older(self, period: str, before: datetime) -> int:
        _choice(period, tuple(PERIODS), "period")
        with self._store.write() as s:
            res = s.execute(
                delete(m.TrafficBucket).where(
                    m.TrafficBucket.period == period,
                    m.TrafficBucket.start < _aware(before, "before"),
                )
            )
            return int(getattr(res, "rowcount", 0) or 0)


def combine(children: Sequence[BucketRecord], period: str) -> BucketRecord:
    """One bucket of `period` from its child buckets (same camera, source, class, direction).

    - count: sum.
    - speed_mean: mean of the children's means weighted by their counts (exact: the mean of
      all the vehicles), over children that have a speed.
    - speed_p85: the count-weighted mean of the children's p85s. This is an APPROXIMATION: a
      percentile of a union cannot be computed from the parts' percentiles. It always lies
      between the smallest and the largest child p85 (the true p85 lies in that interval too)
      and is exact when the children's speed distributions are alike; a roll-up over hours of
      very different traffic (night and rush hour) can be off by several km/h.
    - occupancy: mean over the children present (a missing minute is no data, not zero).
    - los: the worst (highest letter) level of service of any child.
    """
    first = children[0]
    count = sum(c.count for c in children)
    sp = [(c.speed_mean, c.count) for c in children if c.speed_mean is not None and c.count > 0]
    p85 = [(c.speed_p85, c.count) for c in children if c.speed_p85 is not None and c.count > 0]
    occ = [c.occupancy for c in children if c.occupancy is not None]
    los = [c.los for c in children if c.los is not None]

    def wmean(pairs: list[tuple[float, int]]) -> float | None:
        w = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / w if w else None

    return replace(
        first,
        period=period,
        start=floor_period(first.start, period),
        count=count,
        speed_mean=wmean(sp),  # type: ignore[arg-type]
        speed_p85=wmean(p85),  # type: ignore[arg-type]
        occupancy=sum(occ) / len(occ) if occ else None,
        los=max(los) if los else None,
    )


# ============================================================================== ingest


class IngestRepository:
    """Per-camera counters of the tracks messages the service received, missed (bus gaps,
    including while it was down) and could not decode."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        camera_id: str,
        *,
        received: int = 0,
        missed: int = 0,
        decode_errors: int = 0,
        last_seq: int | None = None,
        at: datetime | None = None,
    ) -> IngestCounters:
        """Adds to the counters; `last_seq` (when given) replaces the stored one."""
        if last_seq is not None and (
            isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0
        ):
            raise InvalidInputError(f"ingest last_seq must be an integer >= 0, got {last_seq!r}")
        for name, v in (
            ("received", received),
            ("missed", missed),
            ("decode_errors", decode_errors),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidInputError(f"ingest counter {name} must be an integer >= 0, got {v!r}")
        now = _aware(at, "at")
        table = m.Base.metadata.tables["ingest_counters"]
        ins = pg_insert(table) if self._store.dialect == "postgresql" else sqlite_insert(table)
        stmt = ins.values(
            camera_id=camera_id,
            received=received,
            missed=missed,
            decode_errors=decode_errors,
            last_seq=last_seq,
            updated_at=now,
        ).on_conflict_do_update(
            index_elements=["camera_id"],
            set_={
                "received": table.c.received + ins.excluded.received,
                "missed": table.c.missed + ins.excluded.missed,
                "decode_errors": table.c.decode_errors + ins.excluded.decode_errors,
                "last_seq": func.coalesce(ins.excluded.last_seq, table.c.last_seq),
                "updated_at": ins.excluded.updated_at,
            },
        )
        with self._store.write() as s:
            if s.get(m.Camera, camera_id) is None:
                raise UnknownCameraError(f"unknown camera {camera_id!r}")
            s.execute(stmt)
            row = s.get(m.IngestCounter, camera_id, populate_existing=True)
            assert row is not None
            return _counters(row)

    def get(self, camera_id: str) -> IngestCounters | None:
        with self._store.read() as s:
            row = s.get(m.IngestCounter, camera_id)
            return _counters(row) if row is not None else None

    def list(self) -> builtins.list[IngestCounters]:
        with self._store.read() as s:
            q = select(m.IngestCounter).order_by(m.IngestCounter.camera_id)
            return [_counters(r) for r in s.scalars(q)]


def _counters(row: m.IngestCounter) -> IngestCounters:
    return IngestCounters(
        camera_id=row.camera_id,
        received=row.received,
        missed=row.missed,
        decode_errors=row.decode_errors,
        updated_at=row.updated_at,
        last_seq=row.last_seq,
    )
