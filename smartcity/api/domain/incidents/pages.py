"""The filtered incident page as JSON, straight from the database's rows (GET /api/v1/incidents).

The page is read-only and the busiest request of a command center (every console polls it), so
on SQLite it skips what Store.incidents.list does per row: no SQLAlchemy statement built and no
result type processing per call, no IncidentRecord, no datetime objects. The SELECT is
SQLAlchemy Core over the model's table, compiled once per filter shape (which filters are given
and how many values each IN list has, rounded up to a power of two) and run on a pooled DBAPI
connection; each row becomes the response's `Incident` struct directly (times re-spelled from
the stored text, the JSON columns decoded by msgspec) and the page is encoded once.

The result is the same as `incident_out` over `Store.incidents.list` with the same arguments,
byte for byte (tests/integration/test_api_incidents.py compares them over many filter sets);
other databases (PostgreSQL) take that path itself. bench/api.py measures both.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Select, and_, bindparam, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError

from smartcity.api.domain.incidents import schemas as s
from smartcity.api.domain.incidents.services import incident_out
from smartcity.incidents.types import SEVERITIES
from smartcity.store import STATES, InvalidInputError, Store
from smartcity.store import models as m
from smartcity.store.repositories import MAX_PAGE, decode_cursor, encode_cursor

_T = m.Incident.__table__.c
#: The columns of the answer's Incident, in its field order.
_COLUMNS = (
    _T.id,
    _T.type,
    _T.camera_id,
    _T.state,
    _T.severity,
    _T.priority,
    _T.score,
    _T.opened_at,
    _T.updated_at,
    _T.closed_at,
    _T.track_ids,
    _T.details,
    _T.legal_hold,
    _T.assigned_to,
    _T["count"],
)
#: Compiled statements kept (filter shapes; IN lists are padded to powers of two).
_CACHE_SIZE = 512
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


def _padded(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else n


def _choices(values: Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    """The store's check, with its words (unknown value: 400 naming it)."""
    out = list(values or ())
    for v in out:
        if v not in allowed:
            raise InvalidInputError(f"unknown {what} {v!r}; expected one of {', '.join(allowed)}")
    return out


def _sqlite_time(value: datetime) -> str:
    """An aware datetime as the store keeps it in SQLite (naive UTC text, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _iso(stored: str) -> str:
    """`datetime.isoformat()` of the aware UTC time SQLite holds as `YYYY-MM-DD HH:MM:SS.ffffff`
    (no fraction when it is zero, as isoformat writes it); other spellings are parsed."""
    if len(stored) == 26 and stored[10] == " " and stored[19] == ".":
        if stored.endswith("000000"):
            return f"{stored[:10]}T{stored[11:19]}+00:00"
        return f"{stored[:10]}T{stored[11:]}+00:00"
    t = datetime.fromisoformat(stored)
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat()


def _json(stored: Any, default: Any) -> Any:
    """A JSON column's value as SQLAlchemy's JSON type would read it (NULL: `default`)."""
    if stored is None:
        return default
    try:
        value = _DECODER.decode(stored)
    except msgspec.DecodeError:  # NaN or Infinity: json's own reader takes them
        value = json.loads(stored)
    return default if value is None else value


class IncidentPages:
    """Pages of `incidents` as JSON bytes; one per Store (statements cached per filter shape).
    Thread-safe."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.fast = store.dialect == "sqlite"
        self._dialect = sqlite.dialect(paramstyle="named")
        self._cache: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def page(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        severities: Sequence[str] | None = None,
        legal_hold: bool | None = None,
        limit: int = 50,
        cursor: str | None = None,
        camera_ids: Sequence[str] | None = None,
    ) -> bytes:
        """The JSON of an IncidentPage: the same filters and order as Store.incidents.list
        (newest first by (opened_at, id); since <= opened_at < until; camera_ids: only those
        cameras, an empty list: none). Bad input raises the store's InvalidInputError."""
        if not self.fast:
            page = self.store.incidents.list(
                since=since,
                until=until,
                type=list(types) if types is not None else None,
                state=list(states) if states is not None else None,
                severity=list(severities) if severities is not None else None,
                legal_hold=legal_hold,
                limit=limit,
                cursor=cursor,
                camera_ids=camera_ids,
            )
            out = s.IncidentPage([incident_out(r) for r in page.items], page.next_cursor)
            return _ENCODER.encode(out)
        if isinstance(types, str):
            types = [types]
        sts = _choices([states] if isinstance(states, str) else states, STATES, "state")
        sevs = _choices(
            [severities] if isinstance(severities, str) else severities, SEVERITIES, "severity"
        )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit {limit} out of range 1..{MAX_PAGE}")
        params: dict[str, Any] = {"limit": limit + 1, "offset": 0}
        for name, t in (("since", since), ("until", until)):
            if t is not None:
                if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
                    raise InvalidInputError(f"{name}: expected an aware datetime, got {t!r}")
                params[name] = _sqlite_time(t)
        if cursor is not None:
            c_at, c_id = decode_cursor(cursor)
            params["c_at"], params["c_id"] = _sqlite_time(c_at), c_id
        if legal_hold is not None:
            params["hold"] = 1 if legal_hold else 0
        if (camera_ids is not None and not camera_ids) or (types is not None and not types):
            return _ENCODER.encode(s.IncidentPage([], None))  # an empty IN list: nothing
        lists: dict[str, list[str]] = {}
        if camera_ids is not None:
            lists["cam"] = list(camera_ids)
        if types is not None:
            lists["type"] = list(types)
        if sts:
            lists["state"] = sts
        if sevs:
            lists["sev"] = sevs
        sizes = {k: _padded(len(v)) for k, v in lists.items()}
        for k, values in lists.items():
            for i in range(sizes[k]):
                params[f"{k}{i}"] = values[min(i, len(values) - 1)]
        shape = (
            tuple(sorted(sizes.items())),
            since is not None,
            until is not None,
            cursor is not None,
            legal_hold is not None,
        )
        sql = self._sql(shape)
        raw = self.store.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                rows = cur.execute(sql, params).fetchall()
            finally:
                cur.close()
        except sqlite3.OperationalError as e:  # busy past its time-out: as SQLAlchemy says it
            raise OperationalError(sql, params, e) from None
        finally:
            raw.close()
        more = len(rows) > limit
        if more:
            rows = rows[:limit]
        items = [
            s.Incident(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                _iso(r[7]),
                _iso(r[8]),
                _iso(r[9]) if r[9] is not None else None,
                list(_json(r[10], [])),
                dict(_json(r[11], {})),
                bool(r[12]),
                r[13],
                r[14],
            )
            for r in rows
        ]
        nxt = None
        if more:
            last = items[-1]
            nxt = encode_cursor(datetime.fromisoformat(last.opened_at), last.id)
        return _ENCODER.encode(s.IncidentPage(items, nxt))

    def _sql(self, shape: tuple[Any, ...]) -> str:
        with self._lock:
            sql = self._cache.get(shape)
            if sql is not None:
                self._cache.move_to_end(shape)
                return sql
        sql = str(self._statement(shape).compile(dialect=self._dialect))
        with self._lock:
            self._cache[shape] = sql
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return sql

    @staticmethod
    def _statement(shape: tuple[Any, ...]) -> Select[Any]:
        sizes, since, until, cursor, hold = shape
        q = select(*_COLUMNS)
        if since:
            q = q.where(_T.opened_at >= bindparam("since"))
        if until:
            q = q.where(_T.opened_at < bindparam("until"))
        columns = {"cam": _T.camera_id, "type": _T.type, "state": _T.state, "sev": _T.severity}
        for key, n in sizes:
            q = q.where(columns[key].in_([bindparam(f"{key}{i}") for i in range(n)]))
        if hold:
            q = q.where(_T.legal_hold == bindparam("hold"))
        if cursor:
            # the first term lets the planner range-scan the (opened_at, ...) indexes (as the
            # store's own listing does)
            q = q.where(
                _T.opened_at <= bindparam("c_at"),
                or_(
                    _T.opened_at < bindparam("c_at"),
                    and_(_T.opened_at == bindparam("c_at"), _T.id < bindparam("c_id")),
                ),
            )
        q = q.order_by(_T.opened_at.desc(), _T.id.desc())
        return q.limit(bindparam("limit")).offset(bindparam("offset"))
