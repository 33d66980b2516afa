"""`Store`: one database (SQLite file or PostgreSQL), migrated at open, and its repositories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from smartcity.store import migrate
from smartcity.store.accounts import ApiKeyRepository, SessionRepository, UserRepository
from smartcity.store.audit import AuditRepository
from smartcity.store.crashes import CrashRepository
from smartcity.store.engine import BEGIN_OPTION, URL_ENV, default_url, make_engine, redact
from smartcity.store.errors import InvalidInputError, StoreError
from smartcity.store.repositories import (
    CameraRepository,
    EvidenceRepository,
    IncidentRepository,
    IngestRepository,
    TrafficRepository,
)
from smartcity.store.webhooks import WebhookRepository

#: Evidence files live here inside the data directory unless told otherwise.
EVIDENCE_DIR = "evidence"
#: PostgreSQL advisory lock key held while migrating (two services starting at once).
_MIGRATION_LOCK = 0x5C_0001


class Store:
    """The appliance's database. Repositories own the SQL; services hold the rules.

    Every write method commits before it returns. Reads and writes may come from several threads
    (each call takes its own session from the pool) and from several processes.
    """

    def __init__(self, engine: Engine, *, evidence_root: Path | None = None) -> None:
        self.engine = engine
        self.evidence_root = evidence_root
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.cameras = CameraRepository(self)
        self.incidents = IncidentRepository(self)
        self.evidence = EvidenceRepository(self)
        self.traffic = TrafficRepository(self)
        self.ingest = IngestRepository(self)
        self.users = UserRepository(self)
        self.sessions = SessionRepository(self)
        self.api_keys = ApiKeyRepository(self)
        self.audit = AuditRepository(self)
        self.webhooks = WebhookRepository(self)
        self.crashes = CrashRepository(self)

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        evidence_root: str | os.PathLike[str] | None = None,
        migrate_to_head: bool = True,
        echo: bool = False,
    ) -> Store:
        """Open (and by default migrate to head) the database.

        url: `sqlite:///<file>` or `postgresql+psycopg://user@host/db`; without it
        $SMARTCITY_DB_URL, else `sqlite:///<data_dir>/smartcity.db`. evidence_root defaults to
        `<data_dir>/evidence`. With migrate_to_head=False a database that is not at head is
        refused (StoreError) instead of migrated.
        """
        url = url or os.environ.get(URL_ENV)
        if not url:
            if data_dir is None:
                raise InvalidInputError(f"no database: give a URL, data_dir or ${URL_ENV}")
            url = default_url(data_dir)
        if evidence_root is None and data_dir is not None:
            evidence_root = Path(data_dir) / EVIDENCE_DIR
        engine = make_engine(url, echo=echo)
        try:
            cls._migrate(engine, apply=migrate_to_head)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, evidence_root=Path(evidence_root) if evidence_root else None)

    @staticmethod
    def _migrate(engine: Engine, *, apply: bool) -> None:
        head = migrate.head()
        with engine.connect().execution_options(**{BEGIN_OPTION: "IMMEDIATE"}) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            now = migrate.current(conn)
            if now == head:
                return
            if not apply:
                raise StoreError(
                    f"database {redact(engine.url)} is at revision {now}, this smartcity needs "
                    f"{head}: run `python -m smartcity.store upgrade --url ...`"
                )
            migrate.upgrade(conn)
            conn.commit()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({redact(self.engine.url)!r})"

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    # ---------------------------------------------------------------- sessions
    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session for writing, committed at the end (rolled back if the block raises).

        On SQLite it starts with BEGIN IMMEDIATE: the write lock is taken (waiting up to the busy
        time-out) before the first read, so the transaction cannot fail half-way.
        """
        with self._sessions() as session:
            session.connection(execution_options={BEGIN_OPTION: "IMMEDIATE"})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # ---------------------------------------------------------------- checks
    def schema_version(self) -> str | None:
        with self.engine.connect() as conn:
            return migrate.current(conn)

    def integrity_check(self) -> list[str]:
        """Problems found (empty: healthy).

        SQLite: `PRAGMA integrity_check` and `PRAGMA foreign_key_check`. Both: the connection
        works and the schema is at the package's head revision.
        """
        problems: list[str] = []
        head = migrate.head()
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
                    if rows != ["ok"]:
                        problems += [f"integrity_check: {r}" for r in rows]
                    for table, rowid, parent, _fk in conn.exec_driver_sql(
                        "PRAGMA foreign_key_check"
                    ):
                        problems.append(
                            f"foreign_key_check: {table} row {rowid} refers to a missing {parent}"
                        )
                else:
                    conn.execute(text("SELECT 1"))
                version = migrate.current(conn)
        except Exception as e:  # noqa: BLE001 - reported, not raised: this is a health check
            return [f"database {redact(self.engine.url)} unusable: {type(e).__name__}: {e}"]
        if version != head:
            problems.append(f"schema revision {version}, expected {head}")
        return problems
