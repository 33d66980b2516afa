"""Fixtures for the store tests: a migrated Store on SQLite (tmp_path) and on PostgreSQL.

PostgreSQL: $SMARTCITY_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test.
Each test session works in a schema of its own (search_path), created here and dropped at the
end, so that parallel runs never collide. Unreachable server: the PostgreSQL tests fail with a
message saying so, unless SMARTCITY_TEST_NO_POSTGRES=1 (then they are skipped).

Use: `from tests.store_fixtures import db_url, pg_store, pg_url, store  # noqa: F401`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from smartcity.store import Store
from smartcity.store.models import Base

PG_URL_ENV = "SMARTCITY_TEST_PG_URL"
NO_PG_ENV = "SMARTCITY_TEST_NO_POSTGRES"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def pg_base_url() -> str:
    return os.environ.get(PG_URL_ENV, PG_DEFAULT)


def with_schema(url: str, schema: str) -> str:
    """The URL with search_path set to `schema` on every connection."""
    u = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return u.render_as_string(hide_password=False)


def new_pg_schema(prefix: str = "sc_test") -> tuple[str, str]:
    """Create a uniquely named schema; returns (schema, URL using it). Fails/skips if no server."""
    base = pg_base_url()
    schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base)
    problem = None
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            conn.commit()
    except Exception as e:  # noqa: BLE001
        orig = getattr(e, "orig", None) or e
        problem = f"{type(orig).__name__}: {' '.join(str(orig).split())[:300]}"
    finally:
        engine.dispose()
    if problem is not None:
        where = make_url(base).render_as_string(hide_password=True)
        if os.environ.get(NO_PG_ENV) == "1":
            pytest.skip(f"PostgreSQL at {where} not reachable and {NO_PG_ENV}=1: {problem}")
        pytest.fail(
            f"PostgreSQL at {where} is not reachable ({problem}). Start it, point {PG_URL_ENV} "
            f"at one, or set {NO_PG_ENV}=1 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    return schema, with_schema(base, schema)


def drop_pg_schema(schema: str) -> None:
    engine = create_engine(pg_base_url())
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_store() -> Iterator[Store]:
    """A Store in this session's own, migrated, PostgreSQL schema (used to empty it)."""
    schema, url = new_pg_schema()
    try:
        s = Store.open(url)
        try:
            yield s
        finally:
            s.close()
    finally:
        drop_pg_schema(schema)


@pytest.fixture(scope="session")
def pg_url(pg_store: Store) -> str:
    """A URL into this session's own, migrated, PostgreSQL schema."""
    return pg_store.engine.url.render_as_string(hide_password=False)


def empty_tables(store: Store) -> None:
    with store.write() as s:
        for t in reversed(Base.metadata.sorted_tables):
            s.execute(t.delete())


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL per backend: a fresh SQLite file, or this session's PostgreSQL schema
    (emptied after the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'smartcity.db'}"
        return
    pg: Store = request.getfixturevalue("pg_store")
    yield request.getfixturevalue("pg_url")
    empty_tables(pg)


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Store]:
    """An open, migrated, empty Store; evidence under tmp_path/evidence."""
    s = Store.open(db_url, evidence_root=tmp_path / "evidence")
    try:
        yield s
    finally:
        s.close()
