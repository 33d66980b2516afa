"""store.crashes: imported crash records on SQLite and PostgreSQL (tests/store_fixtures.py)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_fixtures, used as arguments)

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from smartcity.store import InvalidInputError, Store
from smartcity.store.crashes import CrashRow, StoredCrash, crash_hash
from tests.store_fixtures import db_url, pg_store, pg_url, store  # noqa: F401

T0 = datetime(2024, 3, 5, 7, 30, tzinfo=UTC)
WIB = timezone(timedelta(hours=7))


def _row(i: int = 0, **kw: object) -> CrashRow:
    values: dict[str, object] = {
        "occurred_at": T0 + timedelta(hours=i),
        "latitude": -6.2 + i * 0.001,
        "longitude": 106.8 + i * 0.001,
        "severity": ("fatal", "serious", "minor", "damage_only")[i % 4],
        "vehicles": 2,
        "casualties": i % 3,
        "road": "Jl. Jend. Sudirman",
        "segment_id": f"SUD-{i % 2}",
        "source_ref": f"LP/{i}",
    }
    values.update(kw)
    return CrashRow(**values)  # type: ignore[arg-type]


def test_add_many_and_reimport_is_idempotent(store: Store):
    rows = [_row(i) for i in range(10)]
    assert store.crashes.add_many(rows, "polda-2024.csv") == (10, 0)
    assert store.crashes.count() == 10
    # the same file again: nothing added
    assert store.crashes.add_many(rows, "polda-2024.csv") == (0, 10)
    # overlapping export under another name: only the new crash is added, the old ones keep
    # their first source
    assert store.crashes.add_many([*rows[5:], _row(10)], "polda-2024-full.csv") == (1, 5)
    assert store.crashes.count() == 11
    assert store.crashes.sources() == [("polda-2024-full.csv", 1), ("polda-2024.csv", 10)]


def test_repeats_within_one_call_are_duplicates(store: Store):
    assert store.crashes.add_many([_row(1), _row(1), _row(2)], "a.csv") == (2, 1)
    assert store.crashes.add_many([], "a.csv") == (0, 0)


def test_many_rows_in_chunks(store: Store):
    rows = [_row(i, source_ref=f"n{i}") for i in range(1234)]
    assert store.crashes.add_many(rows, "big.csv") == (1234, 0)
    assert store.crashes.add_many(rows[1000:] + [_row(5000)], "big.csv") == (1, 234)
    assert store.crashes.count() == 1235


def test_stored_values_round_trip(store: Store):
    at = datetime(2024, 3, 5, 14, 30, tzinfo=WIB)
    imported = datetime(2024, 6, 1, tzinfo=UTC)
    store.crashes.add_many(
        [{"occurred_at": at, "latitude": -6.2, "longitude": 106.8, "severity": "minor",
          "road": "  Jl.   Thamrin ", "segment_id": "", "vehicles": None}],
        " jakarta.csv ",
        at=imported,
    )  # fmt: skip
    [c] = store.crashes.list()
    assert isinstance(c, StoredCrash)
    assert c.occurred_at == at and c.occurred_at.tzinfo is not None
    assert c.occurred_at.utcoffset() == timedelta(0)
    assert (c.latitude, c.longitude, c.severity) == (-6.2, 106.8, "minor")
    assert (c.vehicles, c.casualties, c.segment_id, c.source_ref) == (None, None, None, None)
    assert c.road == "Jl. Thamrin"  # blanks collapsed
    assert c.source == "jakarta.csv"
    assert c.imported_at == imported
    assert len(c.row_hash) == 64 and c.row_hash == crash_hash(_checked(store, c))


def _checked(store: Store, c: StoredCrash) -> CrashRow:
    return CrashRow(
        occurred_at=c.occurred_at,
        latitude=c.latitude,
        longitude=c.longitude,
        severity=c.severity,
        vehicles=c.vehicles,
        casualties=c.casualties,
        road=c.road,
        segment_id=c.segment_id,
        source_ref=c.source_ref,
    )


def test_hash_is_the_same_for_the_same_crash_in_other_notation(store: Store):
    a = _row(0, occurred_at=datetime(2024, 3, 5, 14, 30, tzinfo=WIB), road="Jl. Sudirman")
    b = _row(0, occurred_at=datetime(2024, 3, 5, 7, 30, tzinfo=UTC), road="  JL.  SUDIRMAN")
    assert store.crashes.add_many([a], "a.csv") == (1, 0)
    assert store.crashes.add_many([b], "b.csv") == (0, 1)
    # a different value is a different crash
    assert store.crashes.add_many([_row(0, casualties=5)], "b.csv") == (1, 0)
    assert store.crashes.add_many([_row(0, latitude=-6.2000002)], "b.csv") == (1, 0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": "bad"}, "severity"),
        ({"latitude": 91.0}, "latitude"),
        ({"longitude": float("nan")}, "longitude"),
        ({"latitude": "6.2"}, "latitude"),
        ({"vehicles": -1}, "vehicles"),
        ({"casualties": 2.5}, "casualties"),
        ({"road": "x" * 201}, "road"),
        ({"segment_id": "s" * 129}, "segment_id"),
        ({"occurred_at": datetime(2024, 3, 5, 7, 30)}, "occurred_at"),  # naive
    ],
)
def test_a_bad_row_refuses_the_call_and_stores_nothing(store: Store, change, field):
    rows = [_row(0), _row(1, **change), _row(2)]
    with pytest.raises(InvalidInputError, match=rf"crash #1: {field}"):
        store.crashes.add_many(rows, "x.csv")
    assert store.crashes.count() == 0


def test_bad_inputs(store: Store):
    with pytest.raises(InvalidInputError, match="source"):
        store.crashes.add_many([_row(0)], "  ")
    with pytest.raises(InvalidInputError, match="source"):
        store.crashes.add_many([_row(0)], "s" * 129)
    with pytest.raises(InvalidInputError, match="unknown field 'speed'"):
        store.crashes.add_many([{**_dict(_row(0)), "speed": 3}], "x.csv")
    with pytest.raises(InvalidInputError, match="missing field 'severity'"):
        d = _dict(_row(0))
        del d["severity"]
        store.crashes.add_many([d], "x.csv")
    assert store.crashes.count() == 0


def _dict(r: CrashRow) -> dict[str, object]:
    return {k: getattr(r, k) for k in r.__slots__}


def test_list_filters_and_order(store: Store):
    store.crashes.add_many([_row(i) for i in range(6)], "a.csv")
    store.crashes.add_many([_row(i, source_ref=f"b{i}") for i in range(6, 8)], "b.csv")
    all_ = store.crashes.list()
    assert [c.source_ref for c in all_] == [f"LP/{i}" for i in range(6)] + ["b6", "b7"]
    assert store.crashes.query is not None
    # half-open period
    got = store.crashes.list(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=5))
    assert [c.source_ref for c in got] == ["LP/2", "LP/3", "LP/4"]
    assert store.crashes.count(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=5)) == 3
    # bounding box (min_lon, min_lat, max_lon, max_lat), edges included
    box = (106.8005, -6.2 + 0.0005, 106.803, -6.197)
    got = store.crashes.list(bbox=box)
    assert [c.source_ref for c in got] == ["LP/1", "LP/2", "LP/3"]
    assert store.crashes.count(bbox=box) == 3
    # source, limit, offset
    assert [c.source_ref for c in store.crashes.list(source="b.csv")] == ["b6", "b7"]
    assert [c.source_ref for c in store.crashes.list(limit=2, offset=3)] == ["LP/3", "LP/4"]
    with pytest.raises(InvalidInputError):
        store.crashes.list(since=datetime(2024, 1, 1))
    with pytest.raises(InvalidInputError, match="min_lat"):
        store.crashes.list(bbox=(106.0, -6.0, 107.0, -7.0))
    with pytest.raises(InvalidInputError, match="limit"):
        store.crashes.list(limit=0)


def test_bbox_across_the_antimeridian(store: Store):
    rows = [
        _row(0, longitude=179.9, latitude=-17.0),
        _row(1, longitude=-179.9, latitude=-17.0),
        _row(2, longitude=0.0, latitude=-17.0),
    ]
    store.crashes.add_many(rows, "fiji.csv")
    got = store.crashes.list(bbox=(179.0, -18.0, -179.0, -16.0))
    assert sorted(c.longitude for c in got) == [-179.9, 179.9]


def test_delete_source(store: Store):
    store.crashes.add_many([_row(i) for i in range(3)], "a.csv")
    store.crashes.add_many([_row(i) for i in range(3, 5)], "b.csv")
    assert store.crashes.delete_source("a.csv") == 3
    assert store.crashes.delete_source("a.csv") == 0
    assert store.crashes.count() == 2
    assert [s for s, _ in store.crashes.sources()] == ["b.csv"]
    # deleted crashes can be imported again
    assert store.crashes.add_many([_row(0)], "a.csv") == (1, 0)
