"""Migrations: the packaged Alembic history builds exactly the models' schema, both ways."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from smartcity.store import Store, StoreError, migrate
from smartcity.store.__main__ import main as store_cli
from smartcity.store.engine import make_engine
from smartcity.store.models import Base
from tests.store_fixtures import drop_pg_schema, new_pg_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (a schema of its own on PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    schema, url = new_pg_schema("sc_mig")
    try:
        yield url
    finally:
        drop_pg_schema(schema)


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_migrations_match_the_models_and_go_both_ways(empty_url):
    with Store.open(empty_url) as s:
        assert s.schema_version() == migrate.head()
    assert _diff(empty_url) == []
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            command.downgrade(migrate.alembic_config(connection=conn), "base")
            conn.commit()
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    with Store.open(empty_url) as s:
        assert s.integrity_check() == []
    assert _diff(empty_url) == []


def test_refuses_an_old_schema_when_told_not_to_migrate(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    Store.open(url).close()
    engine = make_engine(url)
    with engine.connect() as conn:
        command.downgrade(migrate.alembic_config(connection=conn), "base")
        conn.commit()
    engine.dispose()
    with pytest.raises(StoreError, match="python -m smartcity.store upgrade"):
        Store.open(url, migrate_to_head=False)


def test_cli_upgrade_current_and_autogenerate(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert store_cli(["upgrade", "--url", url]) == 0
    assert store_cli(["current", "--url", url]) == 0
    assert capsys.readouterr().out.strip().endswith(migrate.head())
    # `revision --autogenerate` against a copy of the packaged migrations: with the models
    # unchanged, the new revision is empty, numbered next, and chained to head.
    head0 = migrate.head()
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS", copy)
    assert store_cli(["revision", "-m", "nothing new", "--autogenerate"]) == 0
    number = int(head0) + 1
    new = list((copy / "versions").glob(f"r{number:04d}_*.py"))
    assert len(new) == 1, sorted(p.name for p in (copy / "versions").iterdir())
    text = new[0].read_text()
    assert f"down_revision: str | Sequence[str] | None = {head0!r}" in text
    body = text.split("def upgrade() -> None:")[1].split("def downgrade")[0]
    code = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert code == ["pass"], body


def test_concurrent_first_opens_migrate_once(empty_url):
    """The services start together: several first opens of an empty database all succeed."""
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Store.open(empty_url).close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # (SQLite: switching a new file to WAL answered "database is locked" at once about one time
    # in 20 before the connect hook retried it.)
    assert errors == []
    with Store.open(empty_url, migrate_to_head=False) as s:
        assert s.integrity_check() == []
