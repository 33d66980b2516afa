"""Retention: evidence and traffic figures by age, evidence by a disk reserve, oldest first.

Rules (docs/storage.md, "Retention"):
- Evidence of an incident under legal hold is never deleted, nor is the incident.
- Evidence older than `evidence_max_age` goes (file, then row), oldest first.
- Then, while the evidence root's filesystem has less free space than the reserve
  (`reserve_bytes`, or `reserve_percent` of its size, whichever is larger), more evidence goes,
  oldest first. If only held evidence is left (or nothing) and the reserve is still not kept,
  the report carries an `alarm` (the incident service raises a system incident from it).
- Closed incidents (resolved/dismissed) older than `incident_max_age` (None: kept for ever) are
  deleted with their events and evidence, unless held.
- Traffic buckets older than `traffic_max_age[period]` are deleted (minutes go first).
- A missing evidence file is reported (`missing`) and its row deleted; nothing crashes on it.
- Temporary files of evidence writes that a crash interrupted (`.<name>.<hex>.tmp`, older than
  `TEMP_MAX_AGE`) are removed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select

from smartcity.store import models as m
from smartcity.store.records import CLOSED_STATES, PERIODS
from smartcity.store.repositories import _aware
from smartcity.store.store import Store

#: (total bytes, free bytes) of the filesystem holding a path. Injectable for tests.
DiskUsage = Callable[[Path], tuple[int, int]]


def disk_usage(path: Path) -> tuple[int, int]:
    u = shutil.disk_usage(path)
    return u.total, u.free


#: Interrupted evidence writes leave `.<name>.<hex>.tmp` files; removed when older than this.
TEMP_MAX_AGE = timedelta(hours=1)

DEFAULT_TRAFFIC_MAX_AGE: dict[str, timedelta] = {
    "1m": timedelta(days=7),
    "15m": timedelta(days=90),
    "1h": timedelta(days=400),
    "1d": timedelta(days=3660),
}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    evidence_max_age: timedelta | None = timedelta(days=30)
    reserve_bytes: int = 2 * 1024**3
    reserve_percent: float = 5.0
    incident_max_age: timedelta | None = None
    traffic_max_age: dict[str, timedelta] = field(
        default_factory=lambda: dict(DEFAULT_TRAFFIC_MAX_AGE)
    )


@dataclass(slots=True)
class RetentionReport:
    evidence_deleted: int = 0
    bytes_freed: int = 0  # sizes of the deleted evidence files, as recorded
    missing: list[str] = field(default_factory=list)  # evidence rows whose file was not there
    errors: list[str] = field(default_factory=list)  # files that could not be deleted
    incidents_deleted: int = 0
    traffic_deleted: dict[str, int] = field(default_factory=dict)
    temp_removed: int = 0  # leftovers of interrupted evidence writes
    free_bytes: int | None = None  # after the run
    reserve_needed: int | None = None
    alarm: str | None = None  # the reserve could not be kept


def _deletable_evidence(store: Store, *, before: datetime | None, limit: int) -> list[m.Evidence]:
    q = (
        select(m.Evidence)
        .join(m.Incident, m.Incident.id == m.Evidence.incident_id)
        .where(m.Incident.legal_hold.is_(False))
        .order_by(m.Evidence.created_at, m.Evidence.id)
        .limit(limit)
    )
    if before is not None:
        q = q.where(m.Evidence.created_at < before)
    with store.read() as s:
        return list(s.scalars(q))


def _delete_evidence(store: Store, ev: m.Evidence, report: RetentionReport) -> bool:
    """File first, then the row (a crash in between leaves a row whose file is missing: the
    next run reports and removes it). The row is deleted only if its incident is still not
    held (a hold may have been set meanwhile)."""
    root = store.evidence.root
    path = root / ev.path
    try:
        with store.write() as s:
            held = s.scalar(select(m.Incident.legal_hold).where(m.Incident.id == ev.incident_id))
            if held:
                return False
            try:
                path.unlink()
                report.bytes_freed += ev.size
            except FileNotFoundError:
                report.missing.append(ev.path)
            s.execute(delete(m.Evidence).where(m.Evidence.id == ev.id))
    except OSError as e:
        report.errors.append(f"{ev.path}: {e.strerror or e}")
        return False
    report.evidence_deleted += 1
    return True


def apply_retention(
    store: Store,
    policy: RetentionPolicy | None = None,
    *,
    now: datetime | None = None,
    usage: DiskUsage = disk_usage,
    batch: int = 200,
) -> RetentionReport:
    policy = policy or RetentionPolicy()
    now = _aware(now, "now")
    report = RetentionReport()
    has_root = store.evidence_root is not None

    # 1. evidence by age
    if has_root and policy.evidence_max_age is not None:
        cutoff = now - policy.evidence_max_age
        while True:
            rows = _deletable_evidence(store, before=cutoff, limit=batch)
            done = sum(_delete_evidence(store, ev, report) for ev in rows)
            if len(rows) < batch or not done:
                break

    # 2. closed incidents by age (their evidence first)
    if policy.incident_max_age is not None:
        cutoff = now - policy.incident_max_age
        q = select(m.Incident.id).where(
            m.Incident.state.in_(CLOSED_STATES),
            m.Incident.closed_at < cutoff,
            m.Incident.legal_hold.is_(False),
        )
        with store.read() as s:
            ids = list(s.scalars(q))
        for iid in ids:
            with store.read() as s:
                evs = list(s.scalars(select(m.Evidence).where(m.Evidence.incident_id == iid)))
            if has_root and not all(_delete_evidence(store, ev, report) for ev in evs):
                continue
            with store.write() as s:
                n = s.execute(
                    delete(m.Incident).where(m.Incident.id == iid, m.Incident.legal_hold.is_(False))
                )
                report.incidents_deleted += int(getattr(n, "rowcount", 0) or 0)

    # 3. the disk reserve
    if has_root:
        root = store.evidence.root
        root.mkdir(parents=True, exist_ok=True)
        total, free = usage(root)
        needed = max(int(policy.reserve_bytes), int(total * policy.reserve_percent / 100.0))
        report.reserve_needed = needed
        while free < needed:
            rows = _deletable_evidence(store, before=None, limit=batch)
            if not rows:
                break
            progressed = False
            for ev in rows:
                if _delete_evidence(store, ev, report):
                    progressed = True
                total, free = usage(root)
                if free >= needed:
                    break
            if not progressed:
                break
        report.free_bytes = free
        if free < needed:
            with store.read() as s:
                held = s.execute(
                    select(m.Evidence.size)
                    .join(m.Incident, m.Incident.id == m.Evidence.incident_id)
                    .where(m.Incident.legal_hold.is_(True))
                ).all()
            what = (
                f"only evidence under legal hold is left ({len(held)} files, "
                f"{sum(r[0] for r in held)} bytes)"
                if held
                else "no evidence is left to delete"
            )
            report.alarm = (
                f"disk reserve not kept on {root}: {free} bytes free, {needed} needed; {what}"
            )

    # 4. leftovers of interrupted evidence writes (wall clock: file times are wall clock)
    if has_root:
        old = time.time() - TEMP_MAX_AGE.total_seconds()
        for tmp in store.evidence.root.rglob(".*.tmp"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < old:
                    tmp.unlink()
                    report.temp_removed += 1
            except OSError as e:
                report.errors.append(f"{tmp}: {e.strerror or e}")

    # 5. traffic buckets by age
    for period, age in policy.traffic_max_age.items():
        if period in PERIODS:
            report.traffic_deleted[period] = store.traffic.delete_older(period, now - age)
    return report
