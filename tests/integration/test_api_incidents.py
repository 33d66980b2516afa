"""Incidents through the API: filters and cursor pages, operator actions and their log,
legal hold, evidence files with their sha256, the investigator's ZIP, per-camera scope (404
everywhere for a camera out of scope), and the audit trail of every evidence read and export."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

from tests.support.api import Api

JPEG = b"\xff\xd8\xff\xe0" + b"snapshot-bytes" * 20 + b"\xff\xd9"
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"clip-bytes" * 50


def _evidence(api: Api, iid: str) -> None:
    api.store.evidence.write(iid, "snapshot", f"{iid}/snapshot.jpg", JPEG)
    api.store.evidence.write(iid, "clip", f"{iid}/clip.mp4", MP4)


def test_list_filters_and_pages(api: Api) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    ids = []
    for i in range(12):
        ids.append(api.incident(camera="cam1" if i % 3 else "cam2",
                                type="wrong_way" if i % 2 else "speeding",
                                severity="high" if i < 6 else "low",
                                at=t0 + timedelta(minutes=i)))  # fmt: skip
    h = api.auth("viewer")
    r = api.client.get("/api/v1/incidents", params={"limit": 5}, headers=h)
    page = r.json()
    assert [i["id"] for i in page["items"]] == ids[::-1][:5]  # newest first
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        page = api.client.get("/api/v1/incidents",
                              params={"limit": 5, "cursor": page["next_cursor"]},
                              headers=h).json()  # fmt: skip
        seen += [i["id"] for i in page["items"]]
    assert seen == ids[::-1]
    q = {"camera": "cam1", "type": "wrong_way", "severity": "high"}
    got = api.client.get("/api/v1/incidents", params=q, headers=h).json()["items"]
    want = [ids[i] for i in range(6) if i % 3 and i % 2]
    assert sorted(i["id"] for i in got) == sorted(want)
    q = {"since": (t0 + timedelta(minutes=3)).isoformat(),
         "until": (t0 + timedelta(minutes=5)).isoformat()}  # fmt: skip
    got = api.client.get("/api/v1/incidents", params=q, headers=h).json()["items"]
    assert [i["id"] for i in got] == [ids[4], ids[3]]
    # bad filters name the problem
    r = api.client.get("/api/v1/incidents", params={"since": "yesterday"}, headers=h)
    assert r.status_code == 400 and "since" in r.text
    r = api.client.get("/api/v1/incidents", params={"state": "sleeping"}, headers=h)
    assert r.status_code == 400 and "sleeping" in r.text
    r = api.client.get("/api/v1/incidents", params={"limit": 5000}, headers=h)
    assert r.status_code == 400


def test_page_json_from_rows_equals_the_store_listing(api: Api) -> None:
    """GET /incidents makes its JSON straight from the rows (pages.py); it must be the bytes
    incident_out over Store.incidents.list would give, for every filter and every page."""
    import itertools
    import random

    from msgspec import json as mjson

    from smartcity.api.domain.incidents import schemas as s
    from smartcity.api.domain.incidents.services import incident_out

    rng = random.Random(5)
    st = api.store
    st.cameras.add("cam3", "Camera cam3", "rtsp://10.0.0.3/live")
    t0 = datetime(2026, 10, 1, 8, tzinfo=UTC)
    types = ("wrong_way", "speeding", "crash")
    for i in range(90):
        # whole seconds (isoformat leaves out a zero fraction) and microseconds; equal times
        at = t0 + timedelta(
            seconds=(i // 3) * 7, microseconds=0 if i % 4 else rng.randrange(1, 10**6)
        )
        rid = api.incident(camera=f"cam{1 + i % 3}", type=types[i % 3],
                           severity=("info", "low", "medium", "high", "critical")[i % 5],
                           at=at, priority=i % 4, score=round(rng.uniform(0.1, 1), 3),
                           track_ids=[i, i + 1000][: 1 + i % 2],
                           details={"speed_kmh": 61.5, "n": i, "zone": {"name": f"z{i}"}, "u": "é"}
                           if i % 2 else None)  # fmt: skip
        if i % 5 == 1:
            st.incidents.acknowledge(rid, actor="op", at=at + timedelta(seconds=1))
        if i % 7 == 2:
            st.incidents.resolve(rid, actor="op", at=at + timedelta(seconds=2, microseconds=5))
        if i % 11 == 3 and i % 7 != 2:
            st.incidents.dismiss(rid, actor="op", at=at + timedelta(seconds=3))
        if i % 6 == 0:
            st.incidents.assign(rid, "op.alice", actor="op", at=at + timedelta(seconds=4))
        if i % 13 == 0:
            st.incidents.set_legal_hold(rid, True, actor="op", at=at + timedelta(seconds=5))
    h = api.auth("viewer")
    filters: list[dict[str, str]] = []
    for cam, typ, state, sev, hold, window in itertools.product(
        (None, "cam2", "cam1,cam3", "cam1,cam2,cam3"),
        (None, "crash", "speeding,wrong_way"),
        (None, "open", "acknowledged,resolved,dismissed"),
        (None, "high,critical"),
        (None, "true", "false"),
        (None, (20, None), (30, 200)),
    ):
        q = {k: v for k, v in (("camera", cam), ("type", typ), ("state", state),
                               ("severity", sev), ("legal_hold", hold)) if v}  # fmt: skip
        if window:
            q["since"] = (t0 + timedelta(seconds=window[0])).isoformat()
            if window[1]:
                q["until"] = (t0 + timedelta(seconds=window[1])).isoformat()
        filters.append(q)
    pages = nonempty = 0
    for q in rng.sample(filters, 120) + [{}]:
        limit = rng.choice((1, 3, 7, 50))
        cursor = None
        for _ in range(100):
            params = {**q, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            r = api.client.get("/api/v1/incidents", params=params, headers=h)
            assert r.status_code == 200, r.text
            split = {k: v.split(",") for k, v in q.items()}.get
            page = st.incidents.list(
                since=datetime.fromisoformat(q["since"]) if "since" in q else None,
                until=datetime.fromisoformat(q["until"]) if "until" in q else None,
                type=split("type"), state=split("state"), severity=split("severity"),
                legal_hold={"true": True, "false": False}.get(q.get("legal_hold", "")),
                limit=limit, cursor=cursor, camera_ids=split("camera"),
            )  # fmt: skip
            want = mjson.encode(s.IncidentPage([incident_out(x) for x in page.items],
                                               page.next_cursor))  # fmt: skip
            assert r.content == want, params
            pages += 1
            nonempty += bool(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert pages > 200 and nonempty > 150
    # the listing's own errors, with its words
    for bad in ({"severity": "huge"}, {"cursor": "not-a-cursor"}, {"state": "open,nope"}):
        r = api.client.get("/api/v1/incidents", params=bad, headers=h)
        assert r.status_code == 400 and next(iter(bad.values())).split(",")[-1] in r.text, r.text


def test_page_on_a_busy_database_is_429(api: Api, monkeypatch) -> None:
    import sqlite3

    class Busy:
        def cursor(self) -> Busy:
            return self

        def execute(self, *_: object) -> None:
            raise sqlite3.OperationalError("database is locked")

        def close(self) -> None:
            pass

    h = api.auth("viewer")
    assert api.client.get("/api/v1/auth/me", headers=h).status_code == 200  # token cached
    monkeypatch.setattr(api.store.engine, "raw_connection", Busy)
    r = api.client.get("/api/v1/incidents", headers=h)
    assert r.status_code == 429 and r.headers["retry-after"] == "2", r.text


def test_area_filter_uses_camera_locations(api: Api) -> None:
    api.store.cameras.update("cam1", geometry={"location": {"latitude": -6.2, "longitude": 106.8}})
    api.store.cameras.update("cam2", geometry={"location": {"latitude": -7.8, "longitude": 110.4}})
    a, b = api.incident(camera="cam1"), api.incident(camera="cam2")
    got = api.client.get("/api/v1/incidents", params={"area": "-6.5,106.5,-6.0,107.0"},
                         headers=api.auth("viewer")).json()["items"]  # fmt: skip
    assert [i["id"] for i in got] == [a]
    assert b not in [i["id"] for i in got]
    r = api.client.get("/api/v1/incidents", params={"area": "1,2,3"}, headers=api.auth("viewer"))
    assert r.status_code == 400 and "area" in r.text


def test_operator_actions_log_and_audit(api: Api) -> None:
    iid = api.incident()
    h = api.auth("operator")
    r = api.client.post(f"/api/v1/incidents/{iid}/acknowledge", json={"text": "on it"}, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    r = api.client.post(f"/api/v1/incidents/{iid}/assign", json={"assignee": "unit-7"}, headers=h)
    assert r.json()["assigned_to"] == "unit-7"
    r = api.client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "tow truck called"},
                        headers=h)  # fmt: skip
    assert r.status_code == 201 and r.json()["kind"] == "note"
    r = api.client.put(f"/api/v1/incidents/{iid}/legal-hold", json={"on": True}, headers=h)
    assert r.json()["legal_hold"] is True
    r = api.client.post(f"/api/v1/incidents/{iid}/resolve", headers=h)
    assert r.json()["state"] == "resolved"
    # a closed incident cannot be dismissed: 409 with the reason
    r = api.client.post(f"/api/v1/incidents/{iid}/dismiss", headers=h)
    assert r.status_code == 409 and "resolved" in r.text
    detail = api.client.get(f"/api/v1/incidents/{iid}", headers=h).json()
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds == ["opened", "acknowledged", "assigned", "note", "legal_hold_on", "resolved"]
    assert {e["actor"] for e in detail["events"][1:]} == {"user:operator"}
    actions = [
        (a.action, a.outcome) for a in api.store.audit.list() if a.target == f"incident:{iid}"
    ]
    assert actions == [
        ("incident.acknowledge", "ok"), ("incident.assign", "ok"), ("incident.note", "ok"),
        ("incident.legal_hold", "ok"), ("incident.resolve", "ok"), ("incident.dismiss", "failed"),
    ]  # fmt: skip
    # a viewer may look but not act
    r = api.client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "x"},
                        headers=api.auth("viewer"))  # fmt: skip
    assert r.status_code == 403


def test_evidence_files_with_sha256_and_audited_reads(api: Api) -> None:
    iid = api.incident()
    _evidence(api, iid)
    h = api.auth("viewer")
    ev = api.client.get(f"/api/v1/incidents/{iid}/evidence", headers=h).json()
    assert [e["kind"] for e in ev] == ["snapshot", "clip"]
    assert ev[0]["sha256"] == hashlib.sha256(JPEG).hexdigest()
    r = api.client.get(ev[0]["url"], headers=h)
    assert r.status_code == 200 and r.content == JPEG
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-content-sha256"] == hashlib.sha256(JPEG).hexdigest()
    r = api.client.get(ev[1]["url"], headers=h)
    assert r.content == MP4 and r.headers["content-type"] == "video/mp4"
    reads = [a for a in api.store.audit.list(action="evidence.read")]
    assert [(a.actor, a.target, a.outcome) for a in reads] == [
        ("user:viewer", f"incident:{iid}/evidence:{ev[0]['id']}", "ok"),
        ("user:viewer", f"incident:{iid}/evidence:{ev[1]['id']}", "ok"),
    ]
    assert api.client.get(f"/api/v1/incidents/{iid}/evidence/99999", headers=h).status_code == 404


def test_export_zip_for_investigators(api: Api) -> None:
    iid = api.incident(details={"speed_kmh": 91.5})
    _evidence(api, iid)
    api.store.incidents.add_note(iid, "handed to traffic police", actor="user:operator")
    r = api.client.get(f"/api/v1/incidents/{iid}/export", headers=api.auth("operator"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.content).hexdigest()
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(z.namelist())
    assert "incident.json" in names and "MANIFEST.sha256" in names
    for line in z.read("MANIFEST.sha256").decode().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(z.read(name)).hexdigest() == digest
    assert len(z.read("MANIFEST.sha256").decode().splitlines()) == len(names) - 1
    rec = json.loads(z.read("incident.json"))
    assert rec["incident"]["id"] == iid and rec["incident"]["details"]["speed_kmh"] == 91.5
    assert rec["problems"] == [] and rec["exported_by"] == "user:operator"
    assert [e["kind"] for e in rec["evidence"]] == ["snapshot", "clip"]
    assert any(e["kind"] == "note" for e in rec["incident"]["events"])
    snap = next(e for e in rec["evidence"] if e["kind"] == "snapshot")
    assert z.read(snap["file"]) == JPEG
    exports = api.store.audit.list(action="incident.export")
    assert len(exports) == 1 and exports[0].data["sha256"] == r.headers["x-content-sha256"]


def test_export_reports_a_changed_evidence_file(api: Api) -> None:
    iid = api.incident()
    _evidence(api, iid)
    path = api.store.evidence.abspath(api.store.evidence.list(iid)[0])
    path.chmod(0o600)
    path.write_bytes(JPEG + b"tampered")
    r = api.client.get(f"/api/v1/incidents/{iid}/export", headers=api.auth("admin"))
    rec = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("incident.json"))
    assert any("sha256 differs" in p for p in rec["problems"])
    assert api.store.audit.list(action="incident.export")[0].outcome == "error"


def test_camera_scope_hides_incidents_and_evidence(api: Api) -> None:
    mine, other = api.incident(camera="cam1"), api.incident(camera="cam2")
    _evidence(api, other)
    h = api.auth("op1")  # operator restricted to cam1
    got = api.client.get("/api/v1/incidents", headers=h).json()["items"]
    assert [i["id"] for i in got] == [mine]
    got = api.client.get("/api/v1/incidents", params={"camera": "cam2"}, headers=h).json()
    assert got["items"] == []
    ev = api.store.evidence.list(other)[0]
    for method, path in (
        ("GET", f"/api/v1/incidents/{other}"),
        ("GET", f"/api/v1/incidents/{other}/evidence"),
        ("GET", f"/api/v1/incidents/{other}/evidence/{ev.id}"),
        ("GET", f"/api/v1/incidents/{other}/export"),
        ("POST", f"/api/v1/incidents/{other}/acknowledge"),
        ("GET", "/api/v1/cameras/cam2"),
        ("GET", "/api/v1/traffic/cam2"),
        ("GET", "/api/v1/live/cameras/cam2/snapshot.jpg"),
    ):
        r = api.client.request(method, path, headers=h)
        assert r.status_code == 404, (path, r.status_code)
    cams = [c["id"] for c in api.client.get("/api/v1/cameras", headers=h).json()]
    assert cams == ["cam1"]
    assert api.store.incidents.get(other).state == "open"
