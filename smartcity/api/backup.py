"""GET /api/v1/system/backup: a .tar.gz of the SQLite database (an online-backup copy, never
the live file), the appliance configuration files the API knows of, and manifest.json.

The archive is built in a temporary folder under the data directory (the one place the
appliance may write, and the same disk as the database), then streamed and removed.
docs/operations.md ("Backup and restore") says how to restore it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartcity.supervisor import APPLIANCE_CONFIG_ENV as CONFIG_ENV

MANIFEST = "manifest.json"
DATABASE_MEMBER = "smartcity.db"
FORMAT = 1
CHUNK = 1 << 20


class BackupUnsupported(Exception):
    """The store cannot be backed up here (PostgreSQL: pg_dump)."""


@dataclass
class Backup:
    """A finished archive on disk; `chunks()` streams it and removes it at the end."""

    path: Path
    filename: str
    size: int
    sha256: str
    manifest: dict[str, Any]
    _dir: Path = field(repr=False, default=Path())

    def chunks(self) -> Iterator[bytes]:
        try:
            with self.path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def remove_stale(data_dir: Path, older_than_s: float = 3600.0) -> None:
    """Work folders left by a download that was never finished (a crash, a client gone)."""
    import time

    try:
        for d in data_dir.glob(".backup-*"):
            if d.is_dir() and time.time() - d.stat().st_mtime > older_than_s:
                shutil.rmtree(d, ignore_errors=True)
    except OSError:
        pass


def appliance_config_path() -> Path | None:
    raw = os.environ.get(CONFIG_ENV)
    return Path(raw) if raw else None


def database_dialect(store: Any) -> str:
    return str(store.dialect)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_database(store: Any, dest: Path) -> None:
    """sqlite3's online backup API from the store's own connection: one read transaction, so
    the copy is consistent while the services write (WAL readers do not block writers). The
    copy is switched to a rollback journal so that it is one self-contained file."""
    with store.engine.connect() as conn:
        src = conn.connection.driver_connection
        if not isinstance(src, sqlite3.Connection):
            raise BackupUnsupported(f"the database driver is {type(src).__name__}, not sqlite3")
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # pages=-1: every page in one step
            dst.execute("PRAGMA journal_mode=DELETE")
            dst.commit()
        finally:
            dst.close()


def _config_files(config: Path | None, problems: list[str]) -> list[tuple[str, Path]]:
    """(archive name, file) of appliance.yaml and the services' files it names."""
    if config is None:
        return []
    if not config.is_file():
        problems.append(f"configuration file {config}: not found (${CONFIG_ENV})")
        return []
    out = [("config/appliance.yaml", config)]
    try:
        from smartcity.supervisor import ApplianceConfigError, load_appliance_config

        cfg = load_appliance_config(config)
    except (ApplianceConfigError, OSError, ValueError) as e:
        problems.append(f"configuration file {config}: the services' files left out: {e}")
        return out
    for name in ("engine", "incidents"):
        s = cfg.services.get(name)
        if s is not None and s.config is not None:
            if s.config.is_file():
                out.append((f"config/{name}.yaml", s.config))
            else:
                problems.append(f"services.{name}.config {s.config}: not found")
    return out


def make_backup(
    store: Any, data_dir: Path, *, config: Path | None, version: str, now: datetime | None = None
) -> Backup:
    """The archive, written under data_dir (removed by Backup.chunks() or discard()).
    BackupUnsupported for a store that is not SQLite."""
    dialect = database_dialect(store)
    if dialect != "sqlite":
        raise BackupUnsupported(
            f"the database is {dialect}: back it up with pg_dump "
            '(docs/operations.md, "Backup and restore")'
        )
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    data_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".backup-", dir=data_dir))
    try:
        problems: list[str] = []
        db = work / DATABASE_MEMBER
        _copy_database(store, db)
        check = sqlite3.connect(db)
        try:
            rows = [r[0] for r in check.execute("PRAGMA quick_check")]
        finally:
            check.close()
        if rows != ["ok"]:
            problems += [f"quick_check of the copy: {r}" for r in rows[:20]]
        members: list[tuple[str, Path]] = [(DATABASE_MEMBER, db)]
        members += _config_files(config, problems)
        entries = []
        for name, path in members:
            entry: dict[str, Any] = {
                "name": name,
                "size": path.stat().st_size,
                "sha256": _sha256(path),
            }
            if name.startswith("config/"):
                entry["source"] = str(path)
            entries.append(entry)
        from smartcity.store import migrate

        with store.engine.connect() as conn:
            revision = migrate.current(conn)
        manifest = {
            "format": FORMAT,
            "kind": "smartcity-backup",
            "version": version,
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "database": {"dialect": "sqlite", "schema_revision": revision},
            "members": entries,
            "problems": problems,
        }
        filename = f"smartcity-backup-{stamp}.tar.gz"
        archive = work / filename
        with tarfile.open(archive, "w:gz") as tar:
            for name, path in members:
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o600
                with path.open("rb") as f:
                    tar.addfile(info, f)
            blob = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(blob)
            info.mtime = int(now.timestamp())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(blob))
        return Backup(
            path=archive,
            filename=filename,
            size=archive.stat().st_size,
            sha256=_sha256(archive),
            manifest=manifest,
            _dir=work,
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
