"""smartcity.store: repositories on SQLite and PostgreSQL (tests/store_fixtures.py)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_fixtures, used as arguments)

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from smartcity.store import (
    BucketRecord,
    DuplicateError,
    EvidenceExistsError,
    InvalidInputError,
    InvalidTransitionError,
    Store,
    StoreError,
    UnknownCameraError,
    UnknownIncidentError,
    combine,
    floor_period,
    utc_from_ns,
)
from tests.store_fixtures import db_url, pg_store, pg_url, store  # noqa: F401

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SECRET_URL = "rtsp://admin:s3cret@10.0.0.7/stream1"


def _cam(store: Store, id: str = "cam1", **kw: object) -> None:
    store.cameras.add(id, f"Camera {id}", SECRET_URL, **kw)  # type: ignore[arg-type]


def _inc(store: Store, key: str = "track:1", at: datetime = T0, **kw: object) -> str:
    kw.setdefault("camera_id", "cam1")
    kw.setdefault("type", "wrong_way")
    return store.incidents.create(key=key, at=at, **kw).id  # type: ignore[arg-type]


# ---------------------------------------------------------------- opening, settings


def test_open_default_url_under_data_dir(tmp_path):
    with Store.open(data_dir=tmp_path) as s:
        assert (tmp_path / "smartcity.db").exists()
        assert s.evidence_root == tmp_path / "evidence"
        assert s.integrity_check() == []
        with s.engine.connect() as conn:
            pragma = {
                p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 10_000,
    }


def test_open_twice_is_idempotent_and_refuses_unknown_urls(tmp_path):
    Store.open(data_dir=tmp_path).close()
    with Store.open(data_dir=tmp_path, migrate_to_head=False) as s:
        assert s.schema_version() is not None
    with pytest.raises(InvalidInputError, match="unsupported database URL"):
        Store.open("mysql://x@y/z")
    with pytest.raises(InvalidInputError, match="in-memory"):
        Store.open("sqlite://")


def test_repr_hides_passwords(tmp_path):
    with Store.open(data_dir=tmp_path) as s:
        _cam(s)
        cam = s.cameras.get("cam1")
        assert cam.url == SECRET_URL  # stored ...
        assert "s3cret" not in repr(cam)  # ... never shown
        assert "rtsp" not in repr(cam)
        from smartcity.store import models

        with s.read() as session:
            assert "s3cret" not in repr(session.get(models.Camera, "cam1"))
    from smartcity.store.engine import make_engine, redact

    assert "pw" not in redact("postgresql+psycopg://u:pw@h/db")
    assert "pw" not in repr(Store(make_engine("postgresql+psycopg://u:pw@h/db")))


# ---------------------------------------------------------------- cameras


def test_camera_crud(store):
    geo = {
        "zones": [{"name": "square", "polygon": [[0, 0], [10, 0], [10, 10]]}],
        "location": {"latitude": 52.1, "longitude": 4.3, "road": "A4", "segment_id": "A4-12"},
    }
    c = store.cameras.add("cam1", "North gate", SECRET_URL, geometry=geo, at=T0)
    assert c.geometry == geo and c.enabled and c.created_at == T0
    assert store.cameras.get("cam1") == c
    with pytest.raises(DuplicateError, match="cam1"):
        store.cameras.add("cam1", "again", "rtsp://x")
    u = store.cameras.update("cam1", enabled=False, at=T0 + timedelta(hours=1))
    assert not u.enabled and u.name == "North gate" and u.updated_at > u.created_at
    _cam(store, "cam2")
    assert [c.id for c in store.cameras.list()] == ["cam1", "cam2"]
    assert [c.id for c in store.cameras.list(enabled=True)] == ["cam2"]
    store.cameras.delete("cam2")
    assert not store.cameras.exists("cam2")
    with pytest.raises(UnknownCameraError, match="'cam2'"):
        store.cameras.get("cam2")


def test_camera_bad_input_names_the_problem(store):
    with pytest.raises(InvalidInputError, match="not JSON-serialisable"):
        store.cameras.add("cam1", "x", "rtsp://x", geometry={"zones": {1, 2}})
    with pytest.raises(InvalidInputError, match="not JSON-serialisable"):
        store.cameras.add("cam1", "x", "rtsp://x", geometry={"k": math.nan})
    with pytest.raises(InvalidInputError, match="latitude"):
        store.cameras.add("cam1", "x", "rtsp://x", geometry={"location": {"latitude": 91}})
    with pytest.raises(InvalidInputError, match="bad camera id"):
        store.cameras.add("a b", "x", "rtsp://x")
    assert store.cameras.list() == []  # nothing half-stored
    _cam(store, geometry={"lines": []})
    with pytest.raises(InvalidInputError, match="cam1.*geometry"):
        store.cameras.update("cam1", geometry={"lines": [object()]})
    assert store.cameras.get("cam1").geometry == {"lines": []}  # nothing stored is lost
    with pytest.raises(UnknownCameraError):
        store.cameras.update("nope", name="x")


def test_camera_with_incidents_cannot_be_deleted(store):
    _cam(store)
    _inc(store)
    with pytest.raises(StoreError, match="disable it instead"):
        store.cameras.delete("cam1")
    assert store.cameras.exists("cam1")


# ---------------------------------------------------------------- incidents


def test_incident_create_get_and_dedup(store):
    _cam(store)
    inc = store.incidents.create(
        type="wrong_way",
        camera_id="cam1",
        key="track:17",
        at=T0,
        pts=12.5,
        severity="high",
        priority=2,
        score=0.9,
        track_ids=[17],
        details={"lane": "main.n0", "distance_m": 31.5},
    )
    assert inc.state == "open" and inc.count == 1 and inc.closed_at is None
    assert inc.first_pts == inc.last_pts == 12.5 and inc.track_ids == (17,)
    assert store.incidents.get(inc.id) == inc
    assert store.incidents.find_active("cam1", "wrong_way", "track:17") == inc
    assert store.incidents.find_active("cam1", "speeding", "track:17") is None
    with pytest.raises(DuplicateError, match="active wrong_way incident"):
        _inc(store, key="track:17")
    # After it is closed the key is free again.
    store.incidents.resolve(inc.id, actor="op1")
    assert store.incidents.find_active("cam1", "wrong_way", "track:17") is None
    again = _inc(store, key="track:17")
    assert again != inc.id


def test_incident_times_are_utc(store):
    _cam(store)
    cet = timezone(timedelta(hours=1))
    iid = _inc(store, at=datetime(2026, 3, 1, 9, 0, tzinfo=cet))
    got = store.incidents.get(iid)
    assert got.opened_at == T0 and got.opened_at.tzinfo == UTC
    with pytest.raises(InvalidInputError, match="naive"):
        _inc(store, key="k2", at=datetime(2026, 3, 1, 9, 0))
    assert utc_from_ns(1_700_000_000_000_000_000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_incident_bad_input(store):
    _cam(store)
    with pytest.raises(UnknownCameraError, match="'ghost'"):
        _inc(store, camera_id="ghost")
    with pytest.raises(InvalidInputError, match="unknown severity 'urgent'"):
        _inc(store, severity="urgent")
    with pytest.raises(InvalidInputError, match="details is not JSON-serialisable"):
        _inc(store, details={"x": b"bytes"})
    with pytest.raises(InvalidInputError, match="unknown state 'closed'"):
        store.incidents.list(state="closed")
    with pytest.raises(InvalidInputError, match="bad cursor"):
        store.incidents.list(cursor="not-a-cursor")
    with pytest.raises(UnknownIncidentError, match="'nope'"):
        store.incidents.get("nope")
    assert store.incidents.list().items == ()


def test_lifecycle_transitions_and_events(store):
    _cam(store)
    iid = _inc(store)
    t = T0
    store.incidents.merge(iid, at=t + timedelta(seconds=5), pts=20.0, track_ids=[1, 2])
    store.incidents.update(iid, at=t + timedelta(seconds=6), pts=21.0, severity="high")
    store.incidents.acknowledge(iid, actor="op1", at=t + timedelta(seconds=10))
    store.incidents.assign(iid, "op2", actor="op1", at=t + timedelta(seconds=11))
    store.incidents.add_note(iid, "patrol sent", actor="op2", at=t + timedelta(seconds=12))
    inc = store.incidents.resolve(iid, actor="op2", at=t + timedelta(seconds=60), text="cleared")
    assert inc.state == "resolved" and inc.closed_at == t + timedelta(seconds=60)
    assert inc.count == 2 and inc.severity == "high" and inc.last_pts == 21.0
    assert inc.track_ids == (1, 2)
    assert inc.assigned_to == "op2"
    kinds = [(e.kind, e.actor) for e in store.incidents.events(iid)]
    assert kinds == [
        ("opened", "system"),
        ("merged", "system"),
        ("updated", "system"),
        ("acknowledged", "op1"),
        ("assigned", "op1"),
        ("note", "op2"),
        ("resolved", "op2"),
    ]
    # Closed is final.
    with pytest.raises(InvalidTransitionError, match="is resolved: cannot become dismissed"):
        store.incidents.dismiss(iid, actor="op1")
    with pytest.raises(InvalidTransitionError, match="closed incident cannot be merged"):
        store.incidents.merge(iid)
    iid2 = _inc(store, key="k2")
    store.incidents.dismiss(iid2, actor="op1")
    with pytest.raises(InvalidTransitionError, match="dismissed: cannot become resolved"):
        store.incidents.resolve(iid2, actor="op1")
    with pytest.raises(InvalidTransitionError):
        store.incidents.acknowledge(iid2, actor="op1")
    with pytest.raises(InvalidInputError, match="unknown state 'done'"):
        store.incidents.transition(iid2, "done", actor="op1")
    assert store.incidents.get(iid2).state == "dismissed"  # unchanged by the refusals


def test_legal_hold_is_logged(store):
    _cam(store)
    iid = _inc(store)
    assert store.incidents.set_legal_hold(iid, True, actor="lawyer").legal_hold
    store.incidents.set_legal_hold(iid, True, actor="lawyer")  # no change, no event
    assert not store.incidents.set_legal_hold(iid, False, actor="lawyer").legal_hold
    kinds = [e.kind for e in store.incidents.events(iid)]
    assert kinds == ["opened", "legal_hold_on", "legal_hold_off"]


def test_list_filters_and_cursor_pagination(store):
    _cam(store)
    _cam(store, "cam2")
    ids = []
    for i in range(25):
        ids.append(
            _inc(
                store,
                key=f"k{i}",
                at=T0 + timedelta(minutes=i // 2),  # pairs share opened_at: ties broken by id
                camera_id="cam1" if i % 3 else "cam2",
                type="speeding" if i % 2 else "wrong_way",
                severity="high" if i % 5 == 0 else "medium",
            )
        )
    got, cursor, pages = [], None, 0
    while True:
        page = store.incidents.list(limit=7, cursor=cursor)
        got += [i.id for i in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 4 and sorted(got) == sorted(ids) and len(set(got)) == 25
    expected = [
        i.id
        for i in sorted(
            (store.incidents.get(x) for x in ids), key=lambda r: (r.opened_at, r.id), reverse=True
        )
    ]
    assert got == expected
    cam2 = store.incidents.list(camera_id="cam2", limit=100).items
    assert {i.camera_id for i in cam2} == {"cam2"} and len(cam2) == 9
    assert len(store.incidents.list(type="speeding", limit=100).items) == 12
    assert len(store.incidents.list(severity=["high"], limit=100).items) == 5
    window = store.incidents.list(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert len(window.items) == 4
    store.incidents.dismiss(ids[0], actor="op")
    assert [i.id for i in store.incidents.list(state="dismissed").items] == [ids[0]]
    assert len(store.incidents.list(state=["open", "acknowledged"], limit=100).items) == 24


# ---------------------------------------------------------------- evidence


def test_evidence_write_and_never_overwrite(store):
    _cam(store)
    iid = _inc(store)
    data = b"\xff\xd8jpeg..."
    ev = store.evidence.write(iid, "snapshot", f"2026/03/01/{iid}.jpg", data, at=T0)
    assert ev.size == len(data) and ev.sha256 == hashlib.sha256(data).hexdigest()
    assert store.evidence.abspath(ev).read_bytes() == data
    with pytest.raises(EvidenceExistsError, match="exists already"):
        store.evidence.write(iid, "snapshot", f"2026/03/01/{iid}.jpg", b"other")
    assert store.evidence.abspath(ev).read_bytes() == data  # untouched
    with pytest.raises(EvidenceExistsError, match="recorded already"):
        store.evidence.add(iid, "snapshot", ev.path, size=1, sha256="0" * 64)
    # A file someone else put there is not replaced either, and no row appears for it.
    other = store.evidence.root / "clips" / "x.mp4"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"keep me")
    with pytest.raises(EvidenceExistsError):
        store.evidence.write(iid, "clip", "clips/x.mp4", b"new")
    assert other.read_bytes() == b"keep me"
    clip = store.evidence.add(iid, "clip", "clips/y.mp4", size=10, sha256="a" * 64)
    assert [e.path for e in store.evidence.list(iid)] == [ev.path, clip.path]
    assert store.evidence.total_bytes() == len(data) + 10


def test_evidence_bad_input(store):
    _cam(store)
    iid = _inc(store)
    for bad in ("/etc/passwd", "../x.jpg", "a/../b.jpg", "", "a//b"):
        with pytest.raises(InvalidInputError):
            store.evidence.write(iid, "snapshot", bad, b"x")
    with pytest.raises(InvalidInputError, match="unknown evidence kind 'video'"):
        store.evidence.add(iid, "video", "a.mp4", size=1, sha256="a" * 64)
    with pytest.raises(InvalidInputError, match="sha256"):
        store.evidence.add(iid, "clip", "a.mp4", size=1, sha256="xyz")
    with pytest.raises(UnknownIncidentError):
        store.evidence.write("nope", "clip", "b.mp4", b"x")
    assert not (store.evidence.root / "b.mp4").exists()  # the file of a refused row goes
    assert store.evidence.list(iid) == []


# ---------------------------------------------------------------- traffic


def _b(start: datetime, count: int, mean: float | None, p85: float | None, **kw) -> BucketRecord:
    base = dict(
        camera_id="cam1",
        source_kind="line",
        source_name="l1",
        period="1m",
        cls="car",
        direction="in",
        occupancy=None,
        los=None,
    )
    base.update(kw)
    return BucketRecord(start=start, count=count, speed_mean=mean, speed_p85=p85, **base)


def test_traffic_upsert_is_idempotent(store):
    _cam(store)
    assert store.traffic.upsert([_b(T0, 3, 50.0, 60.0), _b(T0, 2, 40.0, 45.0, direction="out")])
    store.traffic.upsert([_b(T0, 4, 52.0, 61.0)])  # the same minute again: replaced
    # NaN and "" mean "no value" (as smartcity.incidents.traffic writes them).
    store.traffic.upsert([_b(T0, 0, math.nan, math.nan, cls="all", occupancy=math.nan, los="")])
    nan_row = store.traffic.query("cam1", "1m")[0]
    assert nan_row.cls == "all" and nan_row.speed_mean is None and nan_row.los is None
    assert nan_row.occupancy is None
    rows = store.traffic.query("cam1", "1m")[1:]
    assert [(r.direction, r.count, r.speed_mean) for r in rows] == [
        ("in", 4, 52.0),
        ("out", 2, 40.0),
    ]
    assert rows[0].start == T0


def test_traffic_bad_input(store):
    _cam(store)
    with pytest.raises(InvalidInputError, match="not a 1m boundary"):
        store.traffic.upsert([_b(T0 + timedelta(seconds=5), 1, None, None)])
    with pytest.raises(InvalidInputError, match="unknown .*period '5m'"):
        store.traffic.upsert([_b(T0, 1, None, None, period="5m")])
    with pytest.raises(InvalidInputError, match="level of service 'G'"):
        store.traffic.upsert([_b(T0, 1, None, None, los="G")])
    with pytest.raises(UnknownCameraError, match="'ghost'"):
        store.traffic.upsert([_b(T0, 1, None, None), _b(T0, 1, None, None, camera_id="ghost")])
    assert store.traffic.query("cam1", "1m") == []  # all or nothing


def test_traffic_rollup(store):
    _cam(store)
    minutes = []
    for i in range(30):  # two quarter hours; speeds 40..69
        minutes.append(_b(T0 + timedelta(minutes=i), 2 if i < 15 else 1, 40.0 + i, 50.0 + i))
        minutes.append(
            _b(
                T0 + timedelta(minutes=i),
                0,
                None,
                None,
                source_kind="lane",
                source_name="n0",
                cls="",
                direction="",
                occupancy=0.1 * (i % 10),
                los="ABCDEF"[i % 6],
            )
        )
    store.traffic.upsert(minutes)
    assert store.traffic.rollup("15m", since=T0, until=T0 + timedelta(hours=1)) == 4
    q = store.traffic.query("cam1", "15m", source_kind="line")
    assert [(r.start, r.count) for r in q] == [(T0, 30), (T0 + timedelta(minutes=15), 15)]
    first = [m for m in minutes[:30:2]]
    assert q[0].speed_mean == pytest.approx(sum(m.speed_mean * m.count for m in first) / 30)
    assert q[0].speed_p85 == pytest.approx(sum(m.speed_p85 for m in first) / 15)
    lane = store.traffic.query("cam1", "15m", source_kind="lane")
    assert lane[0].los == "F" and lane[0].speed_mean is None
    assert lane[0].occupancy == pytest.approx(sum(0.1 * (i % 10) for i in range(15)) / 15)
    assert store.traffic.rollup("1h", since=T0, until=T0 + timedelta(hours=1)) == 2
    hour = store.traffic.query("cam1", "1h", source_kind="line")[0]
    assert hour.count == 45 and hour.start == T0
    all_minutes = [m for m in minutes if m.source_kind == "line"]
    exact_mean = sum(m.speed_mean * m.count for m in all_minutes) / 45
    assert hour.speed_mean == pytest.approx(exact_mean)  # the weighted mean is exact
    # p85: count-weighted mean of the children, between the smallest and largest child p85.
    assert 50.0 <= hour.speed_p85 <= 79.0
    # Rolling up again (late data) replaces, never adds.
    store.traffic.rollup("15m", since=T0, until=T0 + timedelta(hours=1))
    assert store.traffic.query("cam1", "15m", source_kind="line")[0].count == 30


def test_combine_and_floor():
    t = datetime(2026, 3, 1, 8, 44, 59, tzinfo=UTC)
    assert floor_period(t, "15m") == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert floor_period(t, "1d") == datetime(2026, 3, 1, tzinfo=UTC)
    c = combine([_b(T0, 1, 30.0, 30.0), _b(T0, 3, 50.0, 70.0), _b(T0, 0, None, None)], "15m")
    assert c.count == 4 and c.speed_mean == pytest.approx(45.0)
    assert c.speed_p85 == pytest.approx(60.0)


# ---------------------------------------------------------------- ingest counters


def test_ingest_counters_add_up(store):
    _cam(store)
    assert store.ingest.get("cam1") is None
    store.ingest.add("cam1", received=10, at=T0)
    c = store.ingest.add("cam1", received=5, missed=3, decode_errors=1, at=T0 + timedelta(1))
    assert (c.received, c.missed, c.decode_errors) == (15, 3, 1)
    assert c.updated_at == T0 + timedelta(1)
    assert store.ingest.list() == [c]
    with pytest.raises(UnknownCameraError):
        store.ingest.add("ghost", received=1)
    with pytest.raises(InvalidInputError, match="missed"):
        store.ingest.add("cam1", missed=-1)


# ---------------------------------------------------------------- integrity


def test_integrity_check_clean(store):
    _cam(store)
    _inc(store)
    assert store.integrity_check() == []


def test_integrity_check_reports_a_broken_sqlite_file(tmp_path):
    with Store.open(data_dir=tmp_path) as s:
        _cam(s)
        # A row pointing nowhere, written behind the store's back (sqlite3: foreign keys off).
        raw = sqlite3.connect(tmp_path / "smartcity.db")
        raw.execute(
            "INSERT INTO ingest_counters (camera_id, received, missed, decode_errors, updated_at)"
            " VALUES ('ghost', 0, 0, 0, '2026-01-01 00:00:00')"
        )
        raw.commit()
        raw.close()
        problems = s.integrity_check()
    assert problems and "ingest_counters" in problems[0] and "cameras" in problems[0]


def test_concurrent_writers(store):
    """Writers on several connections at once (the service and the API): none fails with
    "database is locked" (SQLite: BEGIN IMMEDIATE + busy timeout), nothing is lost."""
    _cam(store)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(8):
                iid = _inc(store, key=f"w{n}-{i}")
                store.incidents.merge(iid)
                store.ingest.add("cam1", received=1)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.incidents.list(limit=100).items) == 32
    assert store.ingest.get("cam1").received == 32


def test_ingest_last_seq_is_kept_and_replaced(tmp_path):
    from smartcity.store import Store

    with Store.open(data_dir=tmp_path) as store:
        store.cameras.add("cam1", "c", "file:///x.mp4")
        store.ingest.add("cam1", received=5, last_seq=4)
        c = store.ingest.add("cam1", received=2)  # no seq given: the stored one stays
        assert (c.received, c.last_seq) == (7, 4)
        assert store.ingest.add("cam1", last_seq=9).last_seq == 9
        with pytest.raises(ValueError, match="last_seq"):
            store.ingest.add("cam1", last_seq=-1)
