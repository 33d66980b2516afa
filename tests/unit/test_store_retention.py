"""smartcity.store.retention: age, disk reserve (injected disk usage), legal hold, alarms."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_fixtures, used as arguments)

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smartcity.store import BucketRecord, Store
from smartcity.store.retention import RetentionPolicy, apply_retention
from tests.store_fixtures import db_url, pg_store, pg_url, store  # noqa: F401

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NO_AGE = {"evidence_max_age": None, "traffic_max_age": {}}


class FakeDisk:
    """A filesystem of `total` bytes whose only content is the evidence files present."""

    def __init__(self, root: Path, total: int, other: int = 0) -> None:
        self.root, self.total, self.other = root, total, other

    def __call__(self, path: Path) -> tuple[int, int]:
        used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return self.total, self.total - used - self.other


def _setup(store: Store, n: int, size: int = 100, held: set[int] = frozenset()) -> list[str]:
    """n incidents, each with one snapshot of `size` bytes, created a day apart (oldest first)."""
    store.cameras.add("cam1", "c", "rtsp://x")
    ids = []
    for i in range(n):
        at = NOW - timedelta(days=n - i)
        iid = store.incidents.create(type="crash", camera_id="cam1", key=f"k{i}", at=at).id
        store.evidence.write(iid, "snapshot", f"s/{i}.jpg", bytes(size), at=at)
        if i in held:
            store.incidents.set_legal_hold(iid, True, actor="court", at=at)
        ids.append(iid)
    return ids


def _paths(store: Store, ids: list[str]) -> list[str]:
    return [e.path for iid in ids for e in store.evidence.list(iid)]


def test_evidence_by_age_spares_legal_hold(store):
    ids = _setup(store, 6, held={0})
    policy = RetentionPolicy(
        evidence_max_age=timedelta(days=3, hours=1),
        reserve_bytes=0,
        reserve_percent=0,
        traffic_max_age={},
    )
    rep = apply_retention(store, policy, now=NOW, usage=FakeDisk(store.evidence.root, 10**6))
    # 6,5,4 days old go except the held one (6 days); 3,2,1 days old stay.
    assert rep.evidence_deleted == 2 and rep.bytes_freed == 200 and rep.alarm is None
    assert _paths(store, ids) == ["s/0.jpg", "s/3.jpg", "s/4.jpg", "s/5.jpg"]
    assert (store.evidence.root / "s/0.jpg").exists()
    assert not (store.evidence.root / "s/1.jpg").exists()
    assert len(store.incidents.list().items) == 6  # incidents themselves are kept


def test_reserve_deletes_oldest_first_until_kept(store):
    ids = _setup(store, 5, size=100)
    disk = FakeDisk(store.evidence.root, total=1000, other=600)  # free 1000-600-500 = -100
    policy = RetentionPolicy(**NO_AGE, reserve_bytes=150, reserve_percent=0)
    rep = apply_retention(store, policy, now=NOW, usage=disk)
    # needs 150 free: delete 3 oldest (free -100 -> 0 -> 100 -> 200)
    assert rep.evidence_deleted == 3 and rep.alarm is None and rep.free_bytes == 200
    assert _paths(store, ids) == ["s/3.jpg", "s/4.jpg"]


def test_reserve_percent(store):
    _setup(store, 4, size=100)
    disk = FakeDisk(store.evidence.root, total=1000, other=500)  # free 100
    rep = apply_retention(
        store, RetentionPolicy(**NO_AGE, reserve_bytes=0, reserve_percent=25), now=NOW, usage=disk
    )
    assert rep.reserve_needed == 250 and rep.evidence_deleted == 2 and rep.free_bytes == 300


def test_alarm_when_only_held_evidence_remains(store):
    ids = _setup(store, 3, size=100, held={1, 2})
    disk = FakeDisk(store.evidence.root, total=1000, other=800)  # free -100
    rep = apply_retention(
        store, RetentionPolicy(**NO_AGE, reserve_bytes=300, reserve_percent=0), now=NOW, usage=disk
    )
    assert rep.evidence_deleted == 1
    assert rep.alarm is not None and "legal hold" in rep.alarm and "2 files" in rep.alarm
    assert _paths(store, ids) == ["s/1.jpg", "s/2.jpg"]
    assert all(store.incidents.get(i).legal_hold for i in ids[1:])


def test_missing_file_is_reported_not_a_crash(store):
    ids = _setup(store, 2)
    (store.evidence.root / "s/0.jpg").unlink()
    policy = RetentionPolicy(
        evidence_max_age=timedelta(hours=1), reserve_bytes=0, reserve_percent=0, traffic_max_age={}
    )
    rep = apply_retention(store, policy, now=NOW, usage=FakeDisk(store.evidence.root, 10**6))
    assert rep.missing == ["s/0.jpg"] and rep.evidence_deleted == 2
    assert _paths(store, ids) == []


def test_closed_incidents_by_age_unless_held(store):
    ids = _setup(store, 4, held={0})
    for i in ids[:3]:
        store.incidents.resolve(i, actor="op", at=NOW - timedelta(days=2))
    policy = RetentionPolicy(
        evidence_max_age=None,
        incident_max_age=timedelta(days=1),
        reserve_bytes=0,
        reserve_percent=0,
        traffic_max_age={},
    )
    rep = apply_retention(store, policy, now=NOW, usage=FakeDisk(store.evidence.root, 10**6))
    assert rep.incidents_deleted == 2 and rep.evidence_deleted == 2
    left = {i.id for i in store.incidents.list().items}
    assert left == {ids[0], ids[3]}  # the held one and the open one
    assert store.incidents.events(ids[0])  # its log is kept too
    assert store.integrity_check() == []


def test_traffic_by_age_per_period(store):
    store.cameras.add("cam1", "c", "rtsp://x")
    day = datetime(2026, 5, 1, tzinfo=UTC)
    rows = [BucketRecord("cam1", "line", "l1", p, day, "car", "in", 1) for p in ("1m", "1h", "1d")]
    store.traffic.upsert(rows)
    policy = RetentionPolicy(
        evidence_max_age=None,
        reserve_bytes=0,
        reserve_percent=0,
        traffic_max_age={
            "1m": timedelta(days=7),
            "1h": timedelta(days=400),
            "1d": timedelta(days=4000),
        },
    )
    rep = apply_retention(store, policy, now=NOW, usage=FakeDisk(store.evidence.root, 10**6))
    assert rep.traffic_deleted == {"1m": 1, "1h": 0, "1d": 0}
    assert store.traffic.query("cam1", "1m") == [] and len(store.traffic.query("cam1", "1d")) == 1


def test_leftover_temp_files_are_removed(store):
    _setup(store, 1)
    tmp = store.evidence.root / "s" / ".1.jpg.0123abcd.tmp"
    tmp.write_bytes(b"partial")
    fresh = store.evidence.root / "s" / ".2.jpg.0123abcd.tmp"
    fresh.write_bytes(b"being written")
    os.utime(tmp, (1, 1))  # long ago
    policy = RetentionPolicy(**NO_AGE, reserve_bytes=0, reserve_percent=0)
    rep = apply_retention(store, policy, now=NOW, usage=FakeDisk(store.evidence.root, 10**6))
    assert rep.temp_removed == 1 and not tmp.exists() and fresh.exists()
    assert (store.evidence.root / "s/0.jpg").exists()
