"""Cameras through the API (geometry checked with the incidents service's own parser, the
stream URL never returned nor audited with its credentials) and road safety (crash CSV import
with line-numbered errors, hotspots as GeoJSON, traffic as JSON and CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from smartcity.store import BucketRecord
from tests.support.api import Api


def test_camera_crud_and_write_only_credentials(api: Api) -> None:
    h = api.auth("maintenance")
    body = {"id": "gate-3", "name": "Gate 3", "url": "rtsp://admin:Sup3rSecret@10.1.1.3:554/s1"}
    r = api.client.post("/api/v1/cameras", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["url_redacted"] == "rtsp://***@10.1.1.3:554/s1"
    for path in ("/api/v1/cameras", "/api/v1/cameras/gate-3"):
        assert "Sup3rSecret" not in api.client.get(path, headers=h).text
    assert api.store.cameras.get("gate-3").url == body["url"]  # kept for the engine
    audit = [a for a in api.store.audit.list() if a.target == "camera:gate-3"]
    assert audit and all("Sup3rSecret" not in str(a.data) for a in audit)
    # duplicates, bad ids, bad schemes
    assert api.client.post("/api/v1/cameras", json=body, headers=h).status_code == 409
    r = api.client.post("/api/v1/cameras", json={**body, "id": "bad id!"}, headers=h)
    assert r.status_code == 400 and "id" in r.text
    r = api.client.post("/api/v1/cameras", json={**body, "id": "x1", "url": "ftp://h/s"},
                        headers=h)  # fmt: skip
    assert r.status_code == 400 and "scheme" in r.text
    # geometry errors name the field
    bad = {"lines": [{"name": "l1", "points": [[0, 0]]}]}
    r = api.client.patch("/api/v1/cameras/gate-3", json={"geometry": bad}, headers=h)
    assert r.status_code == 400 and "geometry.lines" in r.text, r.text
    good = {"location": {"latitude": -6.2, "longitude": 106.8, "road": "Jl. Sudirman"}}
    r = api.client.patch("/api/v1/cameras/gate-3", json={"geometry": good, "enabled": False},
                         headers=h)  # fmt: skip
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["geometry"]["location"]["road"] == "Jl. Sudirman"
    # a camera with incidents is kept (409), one without is deleted
    api.incident(camera="cam1")
    r = api.client.delete("/api/v1/cameras/cam1", headers=h)
    assert r.status_code == 409 and "disable it instead" in r.text
    assert api.client.delete("/api/v1/cameras/gate-3", headers=h).status_code == 204
    assert api.client.get("/api/v1/cameras/gate-3", headers=h).status_code == 404
    # a viewer cannot change cameras
    r = api.client.patch("/api/v1/cameras/cam2", json={"name": "x"}, headers=api.auth("viewer"))
    assert r.status_code == 403


CSV_TEXT = """tanggal;lat;lon;tingkat;kendaraan;korban;ruas
2026-01-05 07:30;-6.2001;106.8001;Luka Berat;2;1;S1
2026-01-06 08:00;-6.2002;106.8002;meninggal dunia;3;2;S1
2026-01-07 09:00;-6.2003;not-a-number;Luka Ringan;1;0;S1
2026-01-08 10:00;-6.3000;106.9000;Luka Ringan;1;1;S2
2026-01-09 11:00;95.0;106.9000;Luka Ringan;1;1;S2
"""


def test_crash_import_reports_bad_rows_and_hotspots(api: Api) -> None:
    h = api.auth("admin")
    cols = api.client.get("/api/v1/roadsafety/columns", headers=h).json()
    assert cols
    mapping = ('{"occurred_at": "tanggal", "latitude": "lat", "longitude": "lon", '
               '"severity": "tingkat", "vehicles": "kendaraan", "casualties": "korban", '
               '"segment_id": "ruas"}')  # fmt: skip
    r = api.client.post(
        "/api/v1/roadsafety/crashes/import",
        params={"source": "polda-2026", "mapping": mapping},
        content=CSV_TEXT.encode(), headers={**h, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["rows_read"] == 5 and rep["inserted"] == 3 and rep["error_count"] == 2
    assert [e["line"] for e in rep["errors"]] == [4, 6]
    assert "lon" in rep["errors"][0]["message"] and "lat" in rep["errors"][1]["message"]
    # again: nothing new
    r = api.client.post(
        "/api/v1/roadsafety/crashes/import",
        params={"source": "polda-2026", "mapping": mapping},
        content=CSV_TEXT.encode(), headers={**h, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert r.json()["inserted"] == 0 and r.json()["duplicates"] == 3
    assert api.store.audit.list(action="crashes.import")[0].data["inserted"] == 3
    r = api.client.get("/api/v1/roadsafety/hotspots",
                       params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
                       headers=api.auth("viewer"))  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    top = fc["features"][0]
    assert top["geometry"]["type"] == "Polygon"
    lon, lat = top["geometry"]["coordinates"][0][0]
    assert 106 < lon < 107 and -7 < lat < -6  # GeoJSON order: lon, lat
    assert top["properties"]["score"] > fc["features"][1]["properties"]["score"]
    seg = api.client.get("/api/v1/roadsafety/hotspots",
                         params={"since": "2026-01-01T00:00:00Z", "cell": "segment"},
                         headers=h).json()  # fmt: skip
    assert {f["properties"]["cell"] for f in seg["features"]} >= {"S1", "S2"} or seg["features"]
    listed = api.client.get("/api/v1/roadsafety/crashes", headers=h).json()
    assert len(listed) == 3
    assert api.client.get("/api/v1/roadsafety/crashes/sources", headers=h).json() == [
        {"source": "polda-2026", "records": 3}
    ]
    assert api.client.delete("/api/v1/roadsafety/crashes/sources/polda-2026",
                             headers=h).status_code == 204  # fmt: skip
    csv_h = {**h, "Content-Type": "text/csv"}
    r = api.client.post("/api/v1/roadsafety/crashes/import", params={"source": "x"},
                        content=b"a,b\n1,2\n", headers=csv_h)  # fmt: skip
    assert r.status_code == 200 and r.json()["refused"] is True


def test_traffic_json_and_csv(api: Api) -> None:
    now = datetime.now(UTC)
    start = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0) - timedelta(hours=1)
    api.store.traffic.upsert([
        BucketRecord(camera_id="cam1", source_kind="line", source_name="main", period="15m",
                     start=start, cls="car", direction="in", count=42, speed_mean=48.5,
                     speed_p85=57.0),
        BucketRecord(camera_id="cam1", source_kind="lane", source_name="n0", period="15m",
                     start=start, cls="all", direction="north", count=10, occupancy=0.31,
                     los="C"),
    ])  # fmt: skip
    h = api.auth("viewer")
    d = api.client.get("/api/v1/traffic/cam1", headers=h).json()
    assert {b["source_name"]: b["count"] for b in d["buckets"]} == {"main": 42, "n0": 10}
    d = api.client.get("/api/v1/traffic/cam1", params={"source_kind": "lane"}, headers=h).json()
    assert [b["los"] for b in d["buckets"]] == ["C"]
    r = api.client.get("/api/v1/traffic/cam1", params={"format": "csv", "cls": "car"}, headers=h)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1 and rows[0]["count"] == "42" and rows[0]["speed_p85"] == "57.0"
    assert api.client.get("/api/v1/traffic/nope", headers=h).status_code == 404
    r = api.client.get("/api/v1/traffic/cam1", params={"period": "5m"}, headers=h)
    assert r.status_code == 400


def test_the_system_camera_is_neither_deleted_nor_disabled(api: Api) -> None:
    from smartcity.incidents.lifecycle import SYSTEM_CAMERA

    h = api.auth("admin")
    assert api.client.delete(f"/api/v1/cameras/{SYSTEM_CAMERA}", headers=h).status_code == 404
    api.store.cameras.add(SYSTEM_CAMERA, "Appliance", "internal:appliance")
    r = api.client.delete(f"/api/v1/cameras/{SYSTEM_CAMERA}", headers=h)
    assert r.status_code == 409 and "appliance's own" in r.text
    r = api.client.patch(f"/api/v1/cameras/{SYSTEM_CAMERA}", json={"enabled": False}, headers=h)
    assert r.status_code == 409 and "disabled" in r.text
    r = api.client.patch(f"/api/v1/cameras/{SYSTEM_CAMERA}", json={"url": "rtsp://h/s"}, headers=h)
    assert r.status_code == 409
    r = api.client.patch(f"/api/v1/cameras/{SYSTEM_CAMERA}", json={"name": "Box"}, headers=h)
    assert r.status_code == 200 and r.json()["name"] == "Box"
    assert api.store.cameras.get(SYSTEM_CAMERA).enabled
