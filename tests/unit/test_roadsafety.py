"""smartcity.roadsafety: the crash CSV importer and the hotspot analysis (docs/roadsafety.md).

The expected hotspot rankings, cells and trends are computed here from the documented formulas
(a scalar re-implementation of the grid, the weights, an exact binomial test), never typed in.
"""

from __future__ import annotations

import codecs
import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartcity.roadsafety import (
    CRASH_WEIGHTS,
    INCIDENT_WEIGHTS,
    SEVERITY_SPELLINGS,
    describe_columns,
    grid_cell,
    grid_cell_polygon,
    hotspots,
    import_csv,
    parse_csv,
)
from smartcity.store import InvalidInputError, Store

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2024, 3, 1, tzinfo=UTC)  # 60 days
R_EARTH = 6_371_008.8
M_PER_DEG = math.pi * R_EARTH / 180.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """SQLite is enough here: tests/unit/test_store_crashes.py covers both databases."""
    s = Store.open(f"sqlite:///{tmp_path / 'db' / 'smartcity.db'}")
    try:
        yield s
    finally:
        s.close()


GOOD = """\
id,occurred_at,latitude,longitude,severity,vehicles,casualties,road,segment_id
LP-1,2024-03-05 14:30,-6.2088,106.8456,fatal,2,1,Jl. Sudirman,SUD-01
LP-2,2024-03-05T09:15:00+07:00,-6.2100,106.8200,Luka Berat,1,1,Jl. Thamrin,THA-02
LP-3,05/03/2024 08:00,-6.1754,106.8272,luka ringan,3,2,,
LP-4,2024-03-06T01:00:00Z,-6.2000,106.8300,PDO,2,0,Jl. Sudirman,SUD-01
LP-5,2024-03-07 10:20 WITA,-8.6500,115.2167,kerugian materi,,,Jl. Gatot Subroto,
"""


# ============================================================================ the importer


def test_import_good_file(store: Store):
    rep = import_csv(GOOD.encode(), source="polda.csv", store=store)
    assert (rep.rows_read, rep.inserted, rep.duplicates, rep.errors) == (5, 5, 0, [])
    assert rep.ok and not rep.refused
    got = {c.source_ref: c for c in store.crashes.list()}
    assert got["LP-1"].occurred_at == datetime(2024, 3, 5, 7, 30, tzinfo=UTC)  # WIB = UTC+7
    assert got["LP-1"].severity == "fatal"
    assert (got["LP-1"].vehicles, got["LP-1"].casualties) == (2, 1)
    assert (got["LP-1"].road, got["LP-1"].segment_id) == ("Jl. Sudirman", "SUD-01")
    assert got["LP-2"].occurred_at == datetime(2024, 3, 5, 2, 15, tzinfo=UTC)
    assert got["LP-2"].severity == "serious"
    assert got["LP-3"].occurred_at == datetime(2024, 3, 5, 1, 0, tzinfo=UTC)  # DD/MM/YYYY
    assert (got["LP-3"].severity, got["LP-3"].road, got["LP-3"].segment_id) == ("minor", None, None)
    assert got["LP-4"].occurred_at == datetime(2024, 3, 6, 1, 0, tzinfo=UTC)
    assert got["LP-4"].severity == "damage_only"
    assert got["LP-5"].occurred_at == datetime(2024, 3, 7, 2, 20, tzinfo=UTC)  # WITA = UTC+8
    assert (got["LP-5"].vehicles, got["LP-5"].casualties) == (None, None)
    assert {c.source for c in got.values()} == {"polda.csv"}


def test_reimport_is_idempotent(store: Store):
    first = import_csv(GOOD, source="polda.csv", store=store)
    again = import_csv(GOOD, source="polda.csv", store=store)
    assert (first.inserted, first.duplicates) == (5, 0)
    assert (again.inserted, again.duplicates, again.errors) == (0, 5, [])
    # the same records in another layout and under another name are the same crashes
    other = GOOD.replace(",", ";").replace("-6.2088", "-6,2088")
    third = import_csv(other, source="polda-copy.csv", store=store)
    assert (third.inserted, third.duplicates) == (0, 5)
    assert store.crashes.count() == 5


def test_bad_rows_are_reported_by_line_and_the_rest_imported(store: Store):
    text = (
        "id,occurred_at,latitude,longitude,severity,vehicles,casualties,road\n"  # 1
        'A1,2024-03-05 14:30,-6.2,106.8,fatal,2,1,"Jl. Panjang\nSekali"\n'  # 2-3
        "A2,2024-03-05 14:30,-6.2x,106.8,fatal,2,1,r\n"  # 4 bad number
        "\n"  # 5 blank
        "A3,2024-03-05 14:30,-96.2,106.8,fatal,2,1,r\n"  # 6 latitude out of range
        "A4,2024-03-05 14:30,-6.2,186.8,fatal,2,1,r\n"  # 7 longitude out of range
        "A5,2024-03-05 14:30,-6.2,106.8,parah,2,1,r\n"  # 8 unknown severity
        "A6,,-6.2,106.8,minor,2,1,r\n"  # 9 missing date-time
        "A7,2024-03-05 14:30,-6.2,106.8,minor,2,1,r,extra\n"  # 10 too many columns
        "A8,2024-03-05 14:30,-6.2,106.8,minor,2\n"  # 11 too few
        "A9,2024-03-05 14:30,-6.2,106.8,minor,two,1,r\n"  # 12 bad count
        "A10,2024-13-05 14:30,-6.2,106.8,minor,2,1,r\n"  # 13 bad date
        "A11,2024-03-05,-6.2,106.8,minor,2,1,r\n"  # 14 no time of day
        "A12,2099-03-05 14:30,-6.2,106.8,minor,2,1,r\n"  # 15 in the future
        "A13,2024-03-05 14:30,0,0,minor,2,1,r\n"  # 16 null island
        "A14,2024-03-05 14:30,-6.2,106.8,minor,-1,1,r\n"  # 17 negative count
        "A15,2024-03-05 14:30,-6.2,106.8,serious,1,0,r\n"  # 18 good
        ",,,,,,,\n"  # 19 only separators: skipped
    )
    rep = import_csv(
        text.encode(), source="bad.csv", store=store, now=datetime(2025, 1, 1, tzinfo=UTC)
    )
    lines = [line for line, _ in rep.errors]
    assert lines == [4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    msg = dict(rep.errors)
    assert "'latitude'" in msg[4] and "not a number" in msg[4]
    assert "'latitude'" in msg[6] and "[-90, 90]" in msg[6]
    assert "'longitude'" in msg[7] and "[-180, 180]" in msg[7]
    assert "'severity'" in msg[8] and "'parah'" in msg[8]
    assert "'occurred_at'" in msg[9] and "missing" in msg[9]
    assert "too many fields (9, the header has 8)" in msg[10]
    assert "too few fields" in msg[11]
    assert "'vehicles'" in msg[12]
    assert "'occurred_at'" in msg[13]
    assert "no time of day" in msg[14]
    assert "plausible" in msg[15]
    assert "no position" in msg[16]
    assert "'vehicles'" in msg[17]
    assert rep.error_count == 13 and not rep.refused and not rep.ok
    assert (rep.rows_read, rep.inserted, rep.duplicates) == (15, 2, 0)
    assert sorted(c.source_ref for c in store.crashes.list()) == ["A1", "A15"]
    assert store.crashes.list(source="bad.csv")[0].road == "Jl. Panjang Sekali"


def test_semicolon_file_with_decimal_commas(store: Store):
    text = (
        "tanggal;jam;lintang;bujur;keparahan;kendaraan;korban;jalan\n"
        "05/03/2024;14.30;-6,2088;106,8456;Meninggal Dunia;2;1;Jl. Sudirman, Blok M\n"
        '06/03/2024;07:05;"-6,21";"106,82";LB;1;1;"Jl. Thamrin; Sarinah"\n'
    )
    parsed = parse_csv(text)
    assert parsed.delimiter == ";"
    assert parsed.columns["latitude"] == "lintang" and parsed.columns["date"] == "tanggal"
    rep = import_csv(text, source="sc.csv", store=store)
    assert (rep.inserted, rep.errors) == (2, [])
    a, b = store.crashes.list()
    assert (a.latitude, a.longitude, a.severity) == (-6.2088, 106.8456, "fatal")
    assert a.occurred_at == datetime(2024, 3, 5, 7, 30, tzinfo=UTC)
    assert a.road == "Jl. Sudirman, Blok M"
    assert (b.latitude, b.severity, b.road) == (-6.21, "serious", "Jl. Thamrin; Sarinah")


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("utf-16"),  # with its BOM (Excel "Unicode text")
        lambda t: "\ufeff" + t,
        lambda t: io.BytesIO(codecs.BOM_UTF8 + t.encode("utf-8")),
        lambda t: io.StringIO(t),
    ],
    ids=["utf8-bom", "utf16", "str-bom", "binary-file", "text-file"],
)
def test_bom_and_input_kinds(store: Store, encode):
    text = GOOD.replace("Jl. Thamrin", "Jl. M.H. Thamrin — Bundaran HI")
    rep = import_csv(encode(text), source="bom.csv", store=store)
    assert (rep.inserted, rep.errors) == (5, [])
    assert "Jl. M.H. Thamrin — Bundaran HI" in {c.road for c in store.crashes.list()}


def test_mapping_and_severity_spellings(store: Store):
    text = (
        "No;Waktu Kejadian;Y;X;Kategori;Unit;Korban Jiwa\n"
        "1;2024-03-05 14:30;-6.2;106.8;K;2;1\n"
        "2;2024-03-05 15:30;-6.3;106.9;A;1;0\n"
        "3;2024-03-05 16:30;-6.4;107.0;luka ringan;1;0\n"
    )
    mapping = {
        "occurred_at": "waktu kejadian",  # header names compare case-insensitively
        "latitude": "Y",
        "longitude": "X",
        "severity": "Kategori",
        "vehicles": "Unit",
        "casualties": "Korban Jiwa",
        "id": "No",
    }
    sev = {"K": "fatal", "A": "serious"}
    rep = import_csv(text, source="m.csv", store=store, mapping=mapping, severities=sev)
    assert (rep.inserted, rep.errors) == (3, [])
    got = [(c.source_ref, c.severity, c.vehicles, c.casualties) for c in store.crashes.list()]
    assert got == [("1", "fatal", 2, 1), ("2", "serious", 1, 0), ("3", "minor", 1, 0)]
    with pytest.raises(InvalidInputError, match="speed"):
        parse_csv(text, mapping={"speed": "X"})
    with pytest.raises(InvalidInputError, match="'K'"):
        parse_csv(text, mapping=mapping, severities={"K": "deadly"})


def test_missing_required_column_refuses_the_file(store: Store):
    text = GOOD.replace("severity", "keterangan")
    rep = import_csv(text, source="x.csv", store=store)
    assert rep.refused and rep.inserted == 0 and rep.rows_read == 0
    assert len(rep.errors) == 1
    line, msg = rep.errors[0]
    assert line == 1 and "no severity column" in msg
    assert store.crashes.count() == 0
    # a mapping naming a column the header does not have
    rep = import_csv(GOOD, source="x.csv", store=store, mapping={"latitude": "lintang_y"})
    assert rep.refused and "'lintang_y'" in rep.errors[0][1]
    # neither occurred_at nor date and time
    rep = import_csv(GOOD.replace("occurred_at", "kapan"), source="x.csv", store=store)
    assert rep.refused and "occurred_at" in rep.errors[0][1]
    rep = import_csv("tanggal,lat,lon,severity\n", source="x.csv", store=store)
    assert rep.refused and "no time column" in rep.errors[0][1]
    # two columns that both look like latitude
    rep = import_csv(GOOD.replace("segment_id", "lat"), source="x.csv", store=store)
    assert rep.refused and "'latitude' and 'lat'" in rep.errors[0][1]
    assert store.crashes.count() == 0


def test_date_time_column_wins_over_date_and_time(store: Store):
    text = "datetime,date,time,lat,lon,severity\n2024-03-05 14:30,junk,junk,-6.2,106.8,minor\n"
    rep = import_csv(text, source="x.csv", store=store)
    assert (rep.inserted, rep.errors) == (1, [])


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        ("2024-03-05T14:30:00+07:00", "Asia/Jakarta", datetime(2024, 3, 5, 7, 30, tzinfo=UTC)),
        ("2024-03-05T14:30:00Z", "Asia/Jakarta", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("2024-03-05 14:30:15", "Asia/Jakarta", datetime(2024, 3, 5, 7, 30, 15, tzinfo=UTC)),
        ("2024-03-05 14:30", "UTC", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("05/03/2024 14:30", "Asia/Jayapura", datetime(2024, 3, 5, 5, 30, tzinfo=UTC)),
        ("5-3-2024 14.30.05", "Asia/Jakarta", datetime(2024, 3, 5, 7, 30, 5, tzinfo=UTC)),
        ("2024-03-05 14.30 WIT", "UTC", datetime(2024, 3, 5, 5, 30, tzinfo=UTC)),
    ],
)
def test_date_time_formats_and_zones(value, tz, expected):
    parsed = parse_csv(f"occurred_at,lat,lon,severity\n{value},-6.2,106.8,fatal\n", default_tz=tz)
    assert parsed.errors == []
    assert parsed.rows[0][1].occurred_at == expected


def test_unknown_time_zone_is_refused():
    with pytest.raises(InvalidInputError, match="Mars/Base"):
        parse_csv(GOOD, default_tz="Mars/Base")


@pytest.mark.parametrize(("spelling", "severity"), sorted(SEVERITY_SPELLINGS.items()))
def test_severity_spellings(spelling, severity):
    for variant in (
        spelling,
        spelling.upper(),
        f"  {spelling.title()} ",
        spelling.replace(" ", "_"),
    ):
        text = f"occurred_at,lat,lon,severity\n2024-03-05 14:30,-6.2,106.8,{variant}\n"
        parsed = parse_csv(text)
        assert parsed.errors == [], variant
        assert parsed.rows[0][1].severity == severity


def test_limits(store: Store):
    head, *rows = GOOD.splitlines(keepends=True)
    # too many rows: refused as a whole
    rep = import_csv(GOOD, source="x.csv", store=store, max_rows=4)
    assert rep.refused and rep.errors == [(6, "more than 4 rows: split the file")]
    assert store.crashes.count() == 0
    # too many bytes
    rep = import_csv(GOOD, source="x.csv", store=store, max_bytes=100)
    assert rep.refused and "larger than 100 bytes" in rep.errors[0][1]
    rep = import_csv(io.BytesIO(GOOD.encode()), source="x.csv", store=store, max_bytes=100)
    assert rep.refused
    # long values: the row is reported
    long_road = rows[0].replace("Jl. Sudirman", "J" * 201)
    long_sev = rows[1].replace("Luka Berat", "x" * 65)
    rep = import_csv(head + long_road + long_sev, source="x.csv", store=store)
    assert [line for line, _ in rep.errors] == [2, 3]
    assert "'road'" in rep.errors[0][1] and "200" in rep.errors[0][1]
    assert "'severity'" in rep.errors[1][1]
    # a field beyond the csv module's own limit: the file is refused
    huge = rows[0].replace("Jl. Sudirman", '"' + "a" * 200_000 + '"')
    rep = import_csv(head + huge, source="x.csv", store=store)
    assert rep.refused and "unreadable CSV" in rep.errors[0][1]
    # errors kept in the report are capped, the count is not
    bad = head + "".join(f"X{i},2024-03-05 14:30,-6.2,106.8,???,1,1,r,s\n" for i in range(1200))
    rep = import_csv(bad, source="x.csv", store=store)
    assert (rep.error_count, len(rep.errors), rep.errors[-1][0]) == (1200, 1000, 1001)
    # a header with too many columns
    rep = import_csv(",".join(f"c{i}" for i in range(201)) + "\n", source="x.csv", store=store)
    assert rep.refused and "200 columns" in rep.errors[0][1]
    assert store.crashes.count() == 0
    assert describe_columns()["limits"]["rows"] == 200_000


def test_unreadable_files_are_refused(store: Store):
    rep = import_csv(GOOD.encode() + b"LP-9,\xff\xfe\n", source="x.csv", store=store)
    assert rep.refused and rep.errors[0][0] == 7 and "UTF-8" in rep.errors[0][1]
    rep = import_csv(GOOD + "a\x00b\n", source="x.csv", store=store)
    assert rep.refused and rep.errors[0][0] == 7
    rep = import_csv(b"\n\n  \n", source="x.csv", store=store)
    assert rep.refused and "empty" in rep.errors[0][1]
    with pytest.raises(InvalidInputError, match="source"):
        import_csv(GOOD, source="", store=store)
    assert store.crashes.count() == 0


# ============================================================================ the grid


def ref_cell(lat: float, lon: float, cell_m: float) -> str:
    """The documented grid, scalar: rows of dlat = cell_m / M_PER_DEG; row i has
    floor(360 * M_PER_DEG * cos(middle latitude) / cell_m) columns from -180."""
    dlat = cell_m / M_PER_DEG
    i = math.floor(lat / dlat)
    n = max(1, math.floor(360.0 * M_PER_DEG * math.cos(math.radians((i + 0.5) * dlat)) / cell_m))
    j = math.floor((lon + 180.0) * n / 360.0) % n
    return f"g{cell_m:g}:{i}:{j}"


def ref_borders(lat: float, lon: float, cell_m: float) -> tuple[float, float, float, float]:
    dlat = cell_m / M_PER_DEG
    i = math.floor(lat / dlat)
    n = max(1, math.floor(360.0 * M_PER_DEG * math.cos(math.radians((i + 0.5) * dlat)) / cell_m))
    j = math.floor((lon + 180.0) * n / 360.0) % n
    return -180 + j * 360 / n, i * dlat, -180 + (j + 1) * 360 / n, (i + 1) * dlat


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * R_EARTH * math.asin(math.sqrt(a))


@pytest.mark.parametrize("cell_m", [100.0, 250.0, 1000.0])
@pytest.mark.parametrize(
    ("lat", "lon"), [(-6.2088, 106.8456), (-8.65, 115.2167), (3.5952, 98.6722), (0.0001, -0.0001)]
)
def test_grid_cell_borders(cell_m, lat, lon):
    w, s, e, n = ref_borders(lat, lon, cell_m)
    eps = 1e-7  # about 1 cm
    here = ref_cell(lat, lon, cell_m)
    assert grid_cell(lat, lon, cell_m) == here
    _, i, j = here.split(":")
    # just inside each border: this cell; just outside: the neighbour
    mid_lat, mid_lon = (s + n) / 2, (w + e) / 2
    assert grid_cell(s + eps, mid_lon, cell_m) == here
    assert grid_cell(n - eps, mid_lon, cell_m) == here
    assert grid_cell(mid_lat, w + eps, cell_m) == here
    assert grid_cell(mid_lat, e - eps, cell_m) == here
    assert grid_cell(mid_lat, e + eps, cell_m) == f"g{cell_m:g}:{i}:{int(j) + 1}"
    assert grid_cell(mid_lat, w - eps, cell_m) == f"g{cell_m:g}:{i}:{int(j) - 1}"
    assert grid_cell(n + eps, mid_lon, cell_m).split(":")[1] == str(int(i) + 1)
    assert grid_cell(s - eps, mid_lon, cell_m).split(":")[1] == str(int(i) - 1)
    # the polygon is the cell, about cell_m on each side
    ring = grid_cell_polygon(here)["coordinates"][0]
    assert ring[0] == pytest.approx([w, s], abs=1e-7) and ring[2] == pytest.approx([e, n], abs=1e-7)
    assert _haversine(s, mid_lon, n, mid_lon) == pytest.approx(cell_m, rel=1e-6)
    assert _haversine(mid_lat, w, mid_lat, e) == pytest.approx(cell_m, rel=0.01)


def test_random_points_fall_in_their_cells_polygon():
    import random

    rnd = random.Random(7)
    for _ in range(2000):
        lat, lon = rnd.uniform(-11.0, 6.0), rnd.uniform(95.0, 141.0)
        cid = grid_cell(lat, lon, 250.0)
        assert cid == ref_cell(lat, lon, 250.0)
        (w, s), _, (e, n), *_ = grid_cell_polygon(cid)["coordinates"][0]
        assert w - 1e-7 <= lon <= e + 1e-7 and s - 1e-7 <= lat <= n + 1e-7


# ============================================================================ hotspots


CAMS = {
    "camA": {"latitude": -6.2000, "longitude": 106.8200, "road": "Jl. A", "segment_id": "S1"},
    "camB": {"latitude": -6.2150, "longitude": 106.8350, "road": "Jl. B", "segment_id": "S2"},
    "camC": None,  # no location
    "camD": {"road": "Jl. D", "segment_id": "S3"},  # a segment but no position
}

# (occurred_at offset days, lat, lon, severity, segment_id, casualties)
CRASHES = [
    (5, -6.20001, 106.82001, "fatal", "S1", 2),
    (40, -6.20002, 106.82003, "serious", "S1", 1),
    (45, -6.2151, 106.8351, "minor", "S2", 1),
    (50, -6.2149, 106.8349, "damage_only", "S2", 0),
    (10, -6.3000, 106.9000, "minor", None, 1),
    (12, -6.3001, 106.9001, "minor", None, 1),
    (13, -6.3002, 106.9002, "minor", None, 0),
    (20, -6.4000, 107.0000, "damage_only", "S4", 0),
    (-3, -6.2000, 106.8200, "fatal", "S1", 1),  # before the period
    (60, -6.2000, 106.8200, "fatal", "S1", 1),  # at `until`: outside
]

# (type, camera, day offset, state)
INCIDENTS = [
    ("crash", "camA", 30, "open"),
    ("crash", "camA", 31, "resolved"),
    ("crash", "camB", 32, "dismissed"),  # false alarm: not counted
    ("wrong_way", "camB", 33, "open"),
    ("wrong_way", "camB", 34, "acknowledged"),
    ("wrong_way", "camB", 35, "open"),
    ("near_miss", "camB", 36, "open"),
    ("congestion", "camA", 37, "open"),  # not in the weight table
    ("crash", "camC", 38, "open"),  # camera without a location
    ("wrong_way", "camD", 39, "open"),  # no position: only in segment mode
    *[("speeding", "camA", 1 + d, "open") for d in range(50)],
]


def _populate(store: Store) -> None:
    for cam, loc in CAMS.items():
        geo = {} if loc is None else {"location": loc}
        store.cameras.add(cam, cam, "rtsp://x/1", geometry=geo)
    store.crashes.add_many(
        [
            {
                "occurred_at": T0 + timedelta(days=d),
                "latitude": la,
                "longitude": lo,
                "severity": sev,
                "segment_id": seg,
                "casualties": cas,
                "road": "Jl. Raya",
            }
            for d, la, lo, sev, seg, cas in CRASHES
        ],
        "hist.csv",
    )
    for k, (type_, cam, d, state) in enumerate(INCIDENTS):
        at = T0 + timedelta(days=d, hours=1)
        inc = store.incidents.create(type=type_, camera_id=cam, key=f"k{k}", at=at)
        if state != "open":
            store.incidents.transition(inc.id, state, actor="op", at=at + timedelta(minutes=5))


def _expected(
    cell: str,
    cell_m: float = 250.0,
    crash_w: dict[str, float] | None = None,
    inc_w: dict[str, float] | None = None,
    cameras: set[str] | None = None,
) -> list[tuple[str, float, int]]:
    """(cell, score, events), ranked, from the documented formula."""
    cw = dict(CRASH_WEIGHTS) | (crash_w or {})
    iw = dict(INCIDENT_WEIGHTS) | (inc_w or {})
    acc: dict[str, list[float]] = {}

    def add(key: str, w: float) -> None:
        acc.setdefault(key, []).append(w)

    for d, la, lo, sev, seg, _ in CRASHES:
        if not 0 <= d < 60 or cw.get(sev, 0) <= 0:
            continue
        if cell == "segment":
            if seg is not None:
                add(seg, cw[sev])
        else:
            add(ref_cell(la, lo, cell_m), cw[sev])
    for type_, cam, _d, state in INCIDENTS:
        loc = CAMS[cam]
        if state == "dismissed" or iw.get(type_, 0) <= 0 or loc is None:
            continue
        if cameras is not None and cam not in cameras:
            continue
        if cell == "segment":
            add(loc["segment_id"], iw[type_])
        elif "latitude" in loc:
            add(ref_cell(loc["latitude"], loc["longitude"], cell_m), iw[type_])
    ranked = sorted(
        ((k, math.fsum(v), len(v)) for k, v in acc.items()), key=lambda t: (-t[1], -t[2], t[0])
    )
    return ranked


def _got(fc: dict) -> list[tuple[str, float, int]]:
    return [(f["id"], f["properties"]["score"], f["properties"]["events"]) for f in fc["features"]]


def _check_ranking(fc: dict, expected: list[tuple[str, float, int]]) -> None:
    got = _got(fc)
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, gs, gn), (_, es, en) in zip(got, expected, strict=True):
        assert gs == pytest.approx(es, abs=1e-6) and gn == en
    assert [f["properties"]["rank"] for f in fc["features"]] == list(range(1, len(got) + 1))


@pytest.mark.parametrize("cell_m", [250.0, 1000.0])
def test_grid_ranking_follows_the_documented_score(store: Store, cell_m):
    _populate(store)
    fc = hotspots(store, since=T0, until=T1, cell="grid", cell_m=cell_m)
    _check_ranking(fc, _expected("grid", cell_m))
    s = fc["summary"]
    # read: 8 crashes in the period; incidents: 2 crash + 3 wrong_way + 1 near_miss + 50 speeding
    assert s["events"] == {"crashes": 8, "incidents": 56}
    assert s["left_out"] == {"incidents_camera_without_location": 2, "crashes_without_segment": 0}
    assert s["cells"] == len(fc["features"]) and s["cell"] == "grid" and s["cell_m"] == cell_m
    top = fc["features"][0]["properties"]
    a_cell = ref_cell(-6.2, 106.82, cell_m)
    assert fc["features"][0]["id"] == a_cell  # camA's cell: fatal + serious + 2 crashes + speeding
    assert top["counts"]["crashes"] == {"fatal": 1, "serious": 1, "minor": 0, "damage_only": 0}
    assert top["counts"]["incidents"]["crash"] == 2 and top["counts"]["incidents"]["speeding"] == 50
    assert top["counts"]["incidents"]["wrong_way"] == 0
    assert "congestion" not in top["counts"]["incidents"]
    assert top["score_crashes"] == pytest.approx(CRASH_WEIGHTS["fatal"] + CRASH_WEIGHTS["serious"])
    assert top["score_incidents"] == pytest.approx(
        2 * INCIDENT_WEIGHTS["crash"] + 50 * INCIDENT_WEIGHTS["speeding"]
    )
    assert top["casualties"] == 3 and top["cameras"] == ["camA"]
    assert top["first"] == "2024-01-02T01:00:00Z" and top["last"] == "2024-02-20T01:00:00Z"


def test_weights_override_and_limit(store: Store):
    _populate(store)
    inc_w = {"speeding": 0.0, "near_miss": 4.0, "congestion": 0.5}
    crash_w = {"fatal": 1.0}
    fc = hotspots(
        store, since=T0, until=T1, weights={"crashes": crash_w, "incidents": inc_w}, limit=2
    )
    expected = _expected("grid", crash_w=crash_w, inc_w=inc_w)
    assert len(expected) > 2
    _check_ranking(fc, expected[:2])
    assert fc["summary"]["cells"] == len(expected) and fc["summary"]["returned"] == 2
    assert fc["summary"]["weights"]["incidents"]["near_miss"] == 4.0
    with pytest.raises(InvalidInputError, match="horrible"):
        hotspots(store, since=T0, until=T1, weights={"crashes": {"horrible": 1.0}})
    with pytest.raises(InvalidInputError, match="finite"):
        hotspots(store, since=T0, until=T1, weights={"incidents": {"crash": -1.0}})


def test_camera_restriction_keeps_crash_records(store: Store):
    _populate(store)
    fc = hotspots(store, since=T0, until=T1, cameras=["camB"])
    _check_ranking(fc, _expected("grid", cameras={"camB"}))
    assert fc["summary"]["events"] == {"crashes": 8, "incidents": 4}
    assert all(f["properties"]["cameras"] in ([], ["camB"]) for f in fc["features"])
    fc = hotspots(store, since=T0, until=T1, cameras=[])
    _check_ranking(fc, _expected("grid", cameras=set()))
    assert fc["summary"]["events"]["incidents"] == 0


def test_segment_mode(store: Store):
    _populate(store)
    fc = hotspots(store, since=T0, until=T1, cell="segment")
    _check_ranking(fc, _expected("segment"))
    s = fc["summary"]
    assert s["left_out"] == {"incidents_camera_without_location": 1, "crashes_without_segment": 3}
    by_id = {f["id"]: f for f in fc["features"]}
    assert by_id["S3"]["geometry"] is None  # camD has a segment but no position
    assert by_id["S3"]["properties"]["road"] == "Jl. D"
    # S2: the mean of the distinct positions (two crashes and camB)
    pts = [(106.8351, -6.2151), (106.8349, -6.2149), (106.8350, -6.2150)]
    assert by_id["S2"]["geometry"]["type"] == "Point"
    assert by_id["S2"]["geometry"]["coordinates"] == pytest.approx(
        [sum(p[0] for p in pts) / 3, sum(p[1] for p in pts) / 3], abs=1e-7
    )
    assert by_id["S2"]["properties"]["segment_id"] == "S2"


def _binom_tails(k: int, n: int, p: float) -> tuple[float, float]:
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    return sum(pmf[k:]), sum(pmf[: k + 1])


@pytest.mark.parametrize("split_day", [None, 20])
def test_trend_labels(store: Store, split_day):
    # three far-apart places; (day offsets) of their crashes
    places = {
        "rising": ((-6.10, 106.70), [3, *range(31, 59, 2)]),
        "falling": ((-6.50, 106.70), [*range(1, 29, 2), 45]),
        "stable": ((-6.90, 106.70), [2, 12, 22, 33, 44, 55]),
    }
    store.crashes.add_many(
        [
            {"occurred_at": T0 + timedelta(days=d, hours=6), "latitude": la, "longitude": lo,
             "severity": "minor", "source_ref": f"{name}{d}"}
            for name, ((la, lo), days) in places.items()
            for d in days
        ],
        "t.csv",
    )  # fmt: skip
    split = None if split_day is None else T0 + timedelta(days=split_day)
    fc = hotspots(store, since=T0, until=T1, trend_split=split)
    at = T0 + timedelta(days=30) if split is None else split
    d1, d2 = (at - T0).total_seconds(), (T1 - at).total_seconds()
    by_cell = {f["id"]: f["properties"] for f in fc["features"]}
    labels = {}
    for name, ((la, lo), days) in places.items():
        tr = by_cell[ref_cell(la, lo, 250.0)]["trend"]
        before = sum(1 for d in days if T0 + timedelta(days=d, hours=6) < at)
        after = len(days) - before
        up, down = _binom_tails(after, len(days), d2 / (d1 + d2))
        label = "rising" if up < 0.05 else "falling" if down < 0.05 else "stable"
        assert (tr["before"], tr["after"], tr["label"]) == (before, after, label)
        assert tr["p_value"] == pytest.approx(min(up, down), abs=1e-6)
        if before:
            assert tr["ratio"] == pytest.approx((after / d2) / (before / d1), rel=1e-3)
        else:
            assert tr["ratio"] is None
        labels[name] = tr["label"]
    if split is None:  # the data were made for the middle split
        assert labels == {"rising": "rising", "falling": "falling", "stable": "stable"}
    assert fc["summary"]["trend_split"] == (at.isoformat().replace("+00:00", "Z"))


def test_geojson_is_valid(store: Store):
    _populate(store)
    fc = hotspots(store, since=T0, until=T1)
    text = json.dumps(fc, allow_nan=False)  # serialisable, no NaN
    assert json.loads(text) == fc
    assert fc["type"] == "FeatureCollection" and isinstance(fc["features"], list)
    assert fc["features"]
    for f in fc["features"]:
        assert f["type"] == "Feature" and f["id"] == f["properties"]["cell"]
        g = f["geometry"]
        assert g["type"] == "Polygon" and len(g["coordinates"]) == 1
        ring = g["coordinates"][0]
        assert len(ring) == 5 and ring[0] == ring[-1]  # closed
        for lon, lat in ring:
            assert -180 <= lon <= 180 and -90 <= lat <= 90
        # [lon, lat] order: Jakarta's cells lie near lon 106.8, lat -6.2
        assert all(100 < p[0] < 110 and -7 < p[1] < -6 for p in ring)
        # counter-clockwise exterior ring (RFC 7946 right-hand rule): positive shoelace area
        area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:], strict=False))
        assert area > 0
    # each crash lies inside the polygon of the cell it was counted in
    for d, la, lo, _sev, _seg, _ in CRASHES:
        if 0 <= d < 60:
            ring = grid_cell_polygon(ref_cell(la, lo, 250.0))["coordinates"][0]
            assert ring[0][0] <= lo <= ring[2][0] and ring[0][1] <= la <= ring[2][1]


def test_empty_and_bad_arguments(store: Store):
    fc = hotspots(store, since=T0, until=T1)
    assert fc["features"] == [] and fc["summary"]["cells"] == 0
    with pytest.raises(InvalidInputError, match="h3"):
        hotspots(store, since=T0, until=T1, cell="h3")
    with pytest.raises(InvalidInputError, match="before"):
        hotspots(store, since=T1, until=T0)
    with pytest.raises(InvalidInputError, match="trend_split"):
        hotspots(store, since=T0, until=T1, trend_split=T1)
    with pytest.raises(InvalidInputError, match="cell_m"):
        hotspots(store, since=T0, until=T1, cell_m=5)
    with pytest.raises(InvalidInputError, match="limit"):
        hotspots(store, since=T0, until=T1, limit=0)
    with pytest.raises(InvalidInputError, match="naive"):
        hotspots(store, since=datetime(2024, 1, 1), until=T1)
