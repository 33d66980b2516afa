"""Imported historical crash records (the police's own records, for the hotspot analysis).

`CrashRow` is one crash as imported (smartcity.roadsafety.importer makes them from a CSV file);
`StoredCrash` is one as stored. A crash's identity is `crash_hash(row)`: the sha256 of its
normalised values (time to the second in UTC, position to 1e-7 degree, severity, counts, road,
segment, the record's own id). The import's name (`source`) is not part of it, so the same crash
in two overlapping exports is kept once, under the source that brought it first. docs/roadsafety.md
has the details.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from smartcity.store import models as m
from smartcity.store.errors import InvalidInputError
from smartcity.store.repositories import _aware

if TYPE_CHECKING:
    from smartcity.store.store import Store

#: Crash severities, worst first (the `crash_records.severity` CHECK constraint).
CRASH_SEVERITIES = ("fatal", "serious", "minor", "damage_only")
#: Longest text a column takes (the model's String lengths).
MAX_ROAD = 200
MAX_SEGMENT_ID = 128
MAX_SOURCE_REF = 128
MAX_SOURCE = 128
#: Vehicles or casualties above this are refused as implausible.
MAX_COUNT = 10_000
#: Rows per executemany call (SQLAlchemy batches them into multi-row INSERTs).
_CHUNK = 500

BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class CrashRow:
    """One crash to import. `occurred_at` is aware (stored as UTC)."""

    occurred_at: datetime
    latitude: float
    longitude: float
    severity: str  # one of CRASH_SEVERITIES
    vehicles: int | None = None
    casualties: int | None = None
    road: str | None = None
    segment_id: str | None = None
    source_ref: str | None = None  # the record's own id in the police's system, if any


@dataclass(frozen=True, slots=True)
class StoredCrash:
    """One stored crash record (what `CrashRepository.list` returns)."""

    id: int
    occurred_at: datetime
    latitude: float
    longitude: float
    severity: str
    vehicles: int | None
    casualties: int | None
    road: str | None
    segment_id: str | None
    source: str
    source_ref: str | None
    row_hash: str
    imported_at: datetime


_ROW_FIELDS = tuple(f.name for f in fields(CrashRow))


def _text(value: Any, limit: int, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what}: expected text, got {type(value).__name__}")
    value = " ".join(value.split())
    if not value:
        return None
    if len(value) > limit:
        raise InvalidInputError(f"{what}: longer than {limit} characters")
    return value


def _count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what}: expected a whole number, got {value!r}")
    if not 0 <= value <= MAX_COUNT:
        raise InvalidInputError(f"{what}: {value} not in 0..{MAX_COUNT}")
    return value


def _coordinate(value: Any, lim: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not -lim <= v <= lim:
        raise InvalidInputError(f"{what}: {value!r} not in [-{lim:g}, {lim:g}]")
    return v


def check_row(row: CrashRow | Mapping[str, Any], where: str = "crash") -> CrashRow:
    """`row` validated and normalised (aware time in UTC, texts with their blanks collapsed, empty
    texts as None); InvalidInputError naming the field otherwise."""
    if isinstance(row, CrashRow):
        values = {k: getattr(row, k) for k in _ROW_FIELDS}
    elif isinstance(row, Mapping):
        unknown = set(row) - set(_ROW_FIELDS)
        if unknown:
            raise InvalidInputError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        missing = [k for k in ("occurred_at", "latitude", "longitude", "severity") if k not in row]
        if missing:
            raise InvalidInputError(f"{where}: missing field {missing[0]!r}")
        values = {k: row.get(k) for k in _ROW_FIELDS}
    else:
        raise InvalidInputError(f"{where}: expected a CrashRow or a dict, got {type(row).__name__}")
    if not isinstance(values["occurred_at"], datetime):
        raise InvalidInputError(f"{where}: occurred_at: expected a datetime")
    sev = values["severity"]
    if sev not in CRASH_SEVERITIES:
        raise InvalidInputError(
            f"{where}: severity: unknown {sev!r}; expected one of {', '.join(CRASH_SEVERITIES)}"
        )
    return CrashRow(
        occurred_at=_aware(values["occurred_at"], f"{where}: occurred_at"),
        latitude=_coordinate(values["latitude"], 90.0, f"{where}: latitude"),
        longitude=_coordinate(values["longitude"], 180.0, f"{where}: longitude"),
        severity=sev,
        vehicles=_count(values["vehicles"], f"{where}: vehicles"),
        casualties=_count(values["casualties"], f"{where}: casualties"),
        road=_text(values["road"], MAX_ROAD, f"{where}: road"),
        segment_id=_text(values["segment_id"], MAX_SEGMENT_ID, f"{where}: segment_id"),
        source_ref=_text(values["source_ref"], MAX_SOURCE_REF, f"{where}: source_ref"),
    )


def crash_hash(row: CrashRow) -> str:
    """sha256 (hex) of a checked row's normalised values: the same crash gives the same hash
    whatever file, separator, time zone notation or number format it came in."""
    canon = [
        row.occurred_at.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{row.latitude:.7f}",
        f"{row.longitude:.7f}",
        row.severity,
        row.vehicles,
        row.casualties,
        row.road.casefold() if row.road else None,
        row.segment_id,
        row.source_ref,
    ]
    data = json.dumps(canon, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("ascii")).hexdigest()


def _check_bbox(bbox: Sequence[float]) -> BBox:
    if len(bbox) != 4:
        raise InvalidInputError("bbox: expected (min_lon, min_lat, max_lon, max_lat)")
    w = _coordinate(bbox[0], 180.0, "bbox min_lon")
    s = _coordinate(bbox[1], 90.0, "bbox min_lat")
    e = _coordinate(bbox[2], 180.0, "bbox max_lon")
    n = _coordinate(bbox[3], 90.0, "bbox max_lat")
    if s > n:
        raise InvalidInputError(f"bbox: min_lat {s:g} above max_lat {n:g}")
    return w, s, e, n


_COLUMNS = (
    m.CrashRecord.id,
    m.CrashRecord.occurred_at,
    m.CrashRecord.latitude,
    m.CrashRecord.longitude,
    m.CrashRecord.severity,
    m.CrashRecord.vehicles,
    m.CrashRecord.casualties,
    m.CrashRecord.road,
    m.CrashRecord.segment_id,
    m.CrashRecord.source,
    m.CrashRecord.source_ref,
    m.CrashRecord.row_hash,
    m.CrashRecord.imported_at,
)


class CrashRepository:
    """Historical crash records. `add_many` is idempotent: a crash stored already (same
    `crash_hash`) is counted as a duplicate and left as it is."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add_many(
        self,
        rows: Iterable[CrashRow | Mapping[str, Any]],
        source: str,
        *,
        at: datetime | None = None,
    ) -> tuple[int, int]:
        """Store crashes in one transaction; returns (inserted, duplicates). Duplicates are rows
        stored already and repeats within `rows`. `source` names the import (a file name, 1-128
        characters). A row that does not check out refuses the whole call (InvalidInputError
        naming its position and field): nothing is stored."""
        src = _text(source, MAX_SOURCE, "source")
        if src is None:
            raise InvalidInputError("source: give the import a name (1-128 characters)")
        now = _aware(at, "at")
        values: dict[str, dict[str, Any]] = {}
        total = 0
        for i, row in enumerate(rows):
            total += 1
            r = check_row(row, f"crash #{i}")
            h = crash_hash(r)
            if h not in values:
                d = {k: getattr(r, k) for k in _ROW_FIELDS}
                d.update(source=src, row_hash=h, imported_at=now)
                values[h] = d
        if not values:
            return 0, total
        table = m.Base.metadata.tables["crash_records"]
        pg = self._store.dialect == "postgresql"
        batch = list(values.values())
        inserted = 0
        # One statement, executed for many rows ("insertmanyvalues": batched multi-row INSERTs
        # on both databases); RETURNING yields the rows actually inserted.
        stmt = (
            (pg_insert(table) if pg else sqlite_insert(table))
            .on_conflict_do_nothing(index_elements=["row_hash"])
            .returning(table.c.id)
        )
        with self._store.write() as s:
            for i in range(0, len(batch), _CHUNK):
                inserted += len(s.execute(stmt, batch[i : i + _CHUNK]).all())
        return inserted, total - inserted

    @staticmethod
    def _where(
        since: datetime | None,
        until: datetime | None,
        bbox: Sequence[float] | None,
        source: str | None,
    ) -> list[ColumnElement[bool]]:
        c = m.CrashRecord
        where: list[ColumnElement[bool]] = []
        if since is not None:
            where.append(c.occurred_at >= _aware(since, "since"))
        if until is not None:
            where.append(c.occurred_at < _aware(until, "until"))
        if bbox is not None:
            w, s, e, n = _check_bbox(bbox)
            where.append(c.latitude.between(s, n))
            if w <= e:
                where.append(c.longitude.between(w, e))
            else:  # across the antimeridian
                where.append(or_(c.longitude >= w, c.longitude <= e))
        if source is not None:
            where.append(c.source == source)
        return where

    def list(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        bbox: Sequence[float] | None = None,
        source: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[StoredCrash]:
        """Crashes with since <= occurred_at < until, inside bbox (min_lon, min_lat, max_lon,
        max_lat; GeoJSON order, edges included; min_lon > max_lon crosses the antimeridian), of
        one source; oldest first by (occurred_at, id). limit None: all of them."""
        if limit is not None and limit < 1:
            raise InvalidInputError(f"limit {limit} must be at least 1")
        if offset < 0:
            raise InvalidInputError(f"offset {offset} must not be negative")
        q = (
            select(*_COLUMNS)
            .where(*self._where(since, until, bbox, source))
            .order_by(m.CrashRecord.occurred_at, m.CrashRecord.id)
        )
        if limit is not None:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self._store.read() as s:
            return [StoredCrash(**r._mapping) for r in s.execute(q)]

    query = list

    def count(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        bbox: Sequence[float] | None = None,
        source: str | None = None,
    ) -> int:
        q = select(func.count()).select_from(m.CrashRecord)
        q = q.where(*self._where(since, until, bbox, source))
        with self._store.read() as s:
            return int(s.scalar(q) or 0)

    def sources(self) -> builtins.list[tuple[str, int]]:
        """(source, number of crashes) of every import, by name."""
        q = (
            select(m.CrashRecord.source, func.count())
            .group_by(m.CrashRecord.source)
            .order_by(m.CrashRecord.source)
        )
        with self._store.read() as s:
            return [(str(a), int(b)) for a, b in s.execute(q)]

    def delete_source(self, source: str) -> int:
        """Delete every crash imported under `source`; returns how many."""
        with self._store.write() as s:
            res = s.execute(delete(m.CrashRecord).where(m.CrashRecord.source == source))
            return int(getattr(res, "rowcount", 0) or 0)
