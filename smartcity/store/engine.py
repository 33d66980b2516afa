"""Engines for the store's two databases, SQLite (default) and PostgreSQL.

SQLite connections get, on every connect:
  journal_mode=WAL     readers (the API) never block the writer (the incident service)
  synchronous=FULL     a commit is on disk (WAL fsynced) before it returns: an incident that was
                       published on the bus survives a power cut or a SIGKILL
  foreign_keys=ON      SQLite does not enforce REFERENCES otherwise
  busy_timeout=<ms>    a writer waits for another process's write lock instead of failing
and the driver's own transaction handling is replaced by explicit BEGIN (deferred for reads,
IMMEDIATE for writes, so that a read-then-write transaction never fails with "database is
locked" half-way when another process wrote meanwhile).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from smartcity.store.errors import InvalidInputError

#: Environment variable that may name the database URL (otherwise the data directory decides).
URL_ENV = "SMARTCITY_DB_URL"
#: File name of the SQLite database inside the data directory.
SQLITE_FILE = "smartcity.db"
#: How long a SQLite writer waits for another's lock before "database is locked", ms.
BUSY_TIMEOUT_MS = 10_000
#: Execution option that picks the BEGIN of a SQLite transaction ("" or "IMMEDIATE").
BEGIN_OPTION = "smartcity_begin"


def default_url(data_dir: str | os.PathLike[str]) -> str:
    """`sqlite:///<data_dir>/smartcity.db`, the appliance's default database."""
    return f"sqlite:///{Path(data_dir).resolve() / SQLITE_FILE}"


def redact(url: str | URL) -> str:
    """The URL without its password, for logs and reprs."""
    return make_url(url).render_as_string(hide_password=True)


def describe_store(url: str | None, data_dir: str | os.PathLike[str] | None) -> str:
    """Where a store is, for messages: its URL without the password, or its data directory."""
    if url:
        try:
            return redact(url)
        except Exception:  # noqa: BLE001 - not even a URL
            return "an unparsable database URL"
    return f"data_dir {data_dir}"


def store_problem(e: BaseException, url: str | None) -> str:
    """An error of the store in words (its first line), without the database password."""
    text = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    if url:
        text = text.replace(url, describe_store(url, None))
        try:
            password = make_url(url).password
        except Exception:  # noqa: BLE001 - not a URL: nothing more to hide
            password = None
        if password:
            text = text.replace(str(password), "***")
    return text


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database in (None, "", ":memory:"):
            raise InvalidInputError(
                "an in-memory SQLite database is not supported (each connection would get its "
                "own); give a file: sqlite:///path/to/smartcity.db"
            )
        if u.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise InvalidInputError(f"unsupported SQLite driver {u.drivername!r}: use sqlite:///")
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, echo=echo)
        _sqlite_events(engine)
        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        if u.drivername != "postgresql+psycopg":
            raise InvalidInputError(
                f"unsupported PostgreSQL driver {u.drivername!r}: use postgresql+psycopg://"
            )
        return create_engine(u, echo=echo, pool_pre_ping=True)
    raise InvalidInputError(
        f"unsupported database URL {redact(u)!r}: use sqlite:///<file> or postgresql+psycopg://"
    )


def _set_wal(cur: Any) -> None:
    """PRAGMA journal_mode=WAL, retried while another connection holds the lock. Switching a new
    database to WAL takes an exclusive lock and SQLite answers "database is locked" at once,
    without its busy handler, when services open the same new file together (seen 3 times in 60
    three-way first opens). The mode is kept in the file: once one connection has set it, the
    others' pragma needs no such lock."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the sqlite3 module.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _set_wal(cur)
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())
