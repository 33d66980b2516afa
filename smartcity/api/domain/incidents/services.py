"""Incident rules of the API: the record as JSON, and the ZIP export for investigators."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

from smartcity.api.domain.incidents import schemas as s
from smartcity.store import EventRecord, EvidenceRecord, IncidentRecord, Store


def incident_out(r: IncidentRecord) -> s.Incident:
    return s.Incident(
        id=r.id,
        type=r.type,
        camera_id=r.camera_id,
        state=r.state,
        severity=r.severity,
        priority=r.priority,
        score=r.score,
        opened_at=r.opened_at.isoformat(),
        updated_at=r.updated_at.isoformat(),
        closed_at=r.closed_at.isoformat() if r.closed_at else None,
        track_ids=list(r.track_ids),
        details=r.details,
        legal_hold=r.legal_hold,
        assigned_to=r.assigned_to,
        count=r.count,
    )


def event_out(e: EventRecord) -> s.IncidentEvent:
    return s.IncidentEvent(
        id=e.id, at=e.at.isoformat(), kind=e.kind, actor=e.actor, text=e.text, data=e.data
    )


def evidence_out(e: EvidenceRecord) -> s.Evidence:
    return s.Evidence(
        id=e.id,
        kind=e.kind,
        size=e.size,
        sha256=e.sha256,
        created_at=e.created_at.isoformat(),
        url=f"/api/v1/incidents/{e.incident_id}/evidence/{e.id}",
    )


def detail(store: Store, r: IncidentRecord) -> s.IncidentDetail:
    base = incident_out(r)
    return s.IncidentDetail(
        **{f: getattr(base, f) for f in base.__struct_fields__},
        events=[event_out(e) for e in store.incidents.events(r.id)],
        evidence=[evidence_out(e) for e in store.evidence.list(r.id)],
    )


def export_zip(store: Store, r: IncidentRecord, *, exported_by: str) -> tuple[bytes, list[str]]:
    """(the ZIP, problems). The ZIP holds incident.json (the record, its lifecycle log and the
    camera), the evidence files under evidence/, and MANIFEST.sha256 (sha256sum format) over
    every other file. Each evidence file is hashed again from disk; a file missing or not
    matching its stored sha256 is listed in problems and in incident.json, never hidden."""
    from msgspec import json as mjson

    problems: list[str] = []
    files: dict[str, bytes] = {}
    evidence_meta: list[dict[str, Any]] = []
    for e in store.evidence.list(r.id):
        path = store.evidence.abspath(e)
        name = f"evidence/{e.id}-{e.kind}{path.suffix}"
        entry = {
            "id": e.id,
            "kind": e.kind,
            "file": name,
            "sha256_stored": e.sha256,
            "size": e.size,
            "created_at": e.created_at.isoformat(),
        }
        try:
            data = path.read_bytes()
        except OSError as err:
            problems.append(f"evidence {e.id} ({e.kind}): file unreadable: {err.strerror}")
            entry["problem"] = "missing"
            evidence_meta.append(entry)
            continue
        actual = hashlib.sha256(data).hexdigest()
        entry["sha256_actual"] = actual
        if actual != e.sha256:
            problems.append(f"evidence {e.id} ({e.kind}): sha256 differs from the stored one")
            entry["problem"] = "sha256 mismatch"
        files[name] = data
        evidence_meta.append(entry)
    try:
        cam = store.cameras.get(r.camera_id)
        camera = {"id": cam.id, "name": cam.name, "location": cam.geometry.get("location")}
    except LookupError:
        camera = {"id": r.camera_id}
    record = {
        "format": "smartcity-incident-export/1",
        "exported_at": datetime.now(UTC).isoformat(),
        "exported_by": exported_by,
        "incident": json.loads(mjson.encode(detail(store, r))),
        "camera": camera,
        "evidence": evidence_meta,
        "problems": problems,
    }
    files["incident.json"] = json.dumps(record, indent=2, sort_keys=True).encode()
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in sorted(files.items()):
            z.writestr(name, data)
        z.writestr("MANIFEST.sha256", manifest)
    return buf.getvalue(), problems
