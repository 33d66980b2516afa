"""The audit log: who did what, when, from where, with what outcome; hash-chained.

Each row's `hash` is sha256 over the previous row's hash and the row's canonical JSON (actor,
action, target, at to the microsecond, ip, outcome, data with sorted keys). A row changed, deleted
or inserted afterwards breaks the chain from that row on, which `verify` (and
`smartcity audit verify`) reports with the row id. Appends are serialised by the write lock
(SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction advisory lock), so two processes never chain
onto the same predecessor.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text

from smartcity.store import models as m
from smartcity.store.errors import InvalidInputError
from smartcity.store.repositories import _aware, _json_dict

if TYPE_CHECKING:
    from smartcity.store.store import Store

#: The hash the first row chains onto.
GENESIS = "0" * 64
OUTCOMES = ("ok", "denied", "failed", "error")
_LOCK = 0x5C_0A0D


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    ip: str | None
    outcome: str
    data: dict[str, Any] | None
    prev_hash: str | None
    hash: str | None


def record_hash(prev: str, row: Any) -> str:
    """sha256 over `prev` and the canonical JSON of an audit row's fields (a model row or an
    AuditRecord: anything with actor, action, target, at, ip, outcome, data)."""
    body = json.dumps(
        {
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "at": row.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "ip": row.ip,
            "outcome": row.outcome,
            "data": row.data,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _rec(row: m.AuditLog) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        ip=row.ip,
        outcome=row.outcome,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class AuditRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def append(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        ip: str | None = None,
        outcome: str = "ok",
        data: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        if outcome not in OUTCOMES:
            raise InvalidInputError(f"audit outcome {outcome!r}: expected {', '.join(OUTCOMES)}")
        when = _aware(at, "at")
        payload = _json_dict(data, "audit data") if data is not None else None
        actor, action = actor[:128], action[:64]
        target = target[:256] if target is not None else None
        ip = ip[:64] if ip is not None else None
        with self._store.write() as s:
            if self._store.dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
            prev = s.scalars(
                select(m.AuditLog.hash).order_by(m.AuditLog.id.desc()).limit(1)
            ).first()
            prev = prev or GENESIS
            row = m.AuditLog(
                actor=actor,
                action=action,
                target=target,
                at=when,
                ip=ip,
                outcome=outcome,
                data=payload,
                prev_hash=prev,
            )
            row.hash = record_hash(prev, row)
            s.add(row)
            s.flush()
            return _rec(row)

    def list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[AuditRecord]:
        q = select(m.AuditLog).order_by(m.AuditLog.id).limit(max(1, min(limit, 1000)))
        if actor is not None:
            q = q.where(m.AuditLog.actor == actor)
        if action is not None:
            q = q.where(m.AuditLog.action == action)
        if since is not None:
            q = q.where(m.AuditLog.at >= _aware(since, "since"))
        if until is not None:
            q = q.where(m.AuditLog.at < _aware(until, "until"))
        if after_id is not None:
            q = q.where(m.AuditLog.id > after_id)
        with self._store.read() as s:
            return [_rec(r) for r in s.scalars(q)]

    def count(self) -> int:
        with self._store.read() as s:
            return int(s.scalar(select(func.count()).select_from(m.AuditLog)) or 0)

    def verify(self, *, batch: int = 5000) -> builtins.list[str]:
        """Problems found walking the chain from the first row (empty: intact)."""
        problems: builtins.list[str] = []
        prev = GENESIS
        last_id = 0
        with self._store.read() as s:
            while True:
                rows = s.scalars(
                    select(m.AuditLog)
                    .where(m.AuditLog.id > last_id)
                    .order_by(m.AuditLog.id)
                    .limit(batch)
                ).all()
                if not rows:
                    break
                for r in rows:
                    if r.prev_hash != prev:
                        problems.append(
                            f"audit row {r.id}: chains onto {r.prev_hash!r}, the row before it "
                            f"ends in {prev!r} (a row was deleted or inserted before it)"
                        )
                    want = record_hash(r.prev_hash or GENESIS, r)
                    if r.hash != want:
                        problems.append(f"audit row {r.id}: contents changed (hash mismatch)")
                    prev = r.hash or ""
                    last_id = r.id
                s.expunge_all()
        return problems
