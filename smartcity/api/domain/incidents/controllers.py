"""Incidents: list with filters and cursor pages, detail, operator actions, legal hold,
evidence files and the investigator's ZIP export. Every evidence read and export is audited;
a camera outside the caller's scope answers 404 for its incidents and their evidence."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Response, get, post, put
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import File

from smartcity.api.domain.common import (
    AnyRequest,
    audit,
    parse_time,
    principal,
    settings,
    split_list,
    store,
)
from smartcity.api.domain.incidents import schemas as s
from smartcity.api.domain.incidents.pages import IncidentPages
from smartcity.api.domain.incidents.services import detail, export_zip, incident_out
from smartcity.api.hub import LiveEvent
from smartcity.store import IncidentRecord, UnknownIncidentError

MEDIA = {"snapshot": "image/jpeg", "clip": "video/mp4"}


def _area_cameras(request: AnyRequest, area: str) -> list[str]:
    try:
        lat1, lon1, lat2, lon2 = (float(v) for v in area.split(","))
    except ValueError:
        raise ValidationException(
            "area: expected min_lat,min_lon,max_lat,max_lon (decimal degrees)"
        ) from None
    if not (-90 <= lat1 <= lat2 <= 90 and -180 <= lon1 <= lon2 <= 180):
        raise ValidationException("area: need -90 <= min_lat <= max_lat <= 90, same for lon")
    out = []
    for c in store(request).cameras.list():
        loc = c.geometry.get("location") or {}
        lat, lon = loc.get("latitude"), loc.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            if lat1 <= lat <= lat2 and lon1 <= lon <= lon2:
                out.append(c.id)
    return out


def pages(request: AnyRequest) -> IncidentPages:
    """The app's incident page maker (its statements are cached)."""
    made: IncidentPages = request.app.state.incident_pages
    return made


def load_visible(request: AnyRequest, incident_id: str) -> IncidentRecord:
    """The incident, or 404 when it does not exist or its camera is out of the caller's scope."""
    try:
        r = store(request).incidents.get(incident_id)
    except UnknownIncidentError:
        raise NotFoundException(f"no incident {incident_id!r}") from None
    if not principal(request).sees(r.camera_id):
        raise NotFoundException(f"no incident {incident_id!r}")
    return r


def _changed(request: AnyRequest, r: IncidentRecord, action: str, extra: dict[str, Any]) -> None:
    from msgspec import to_builtins

    hub = request.app.state.hub
    payload = {
        "action": action,
        "by": principal(request).actor,
        **extra,
        "incident": to_builtins(incident_out(r)),
    }
    hub.publish(
        LiveEvent(f"incident.changed.{r.type}", payload, camera=r.camera_id, severity=r.severity)
    )


class IncidentsController(Controller):
    path = "/api/v1/incidents"
    tags = ["incidents"]

    @get(
        "/",
        opt={"perm": "incidents.read"},
        sync_to_thread=True,
        summary="Incidents, newest first; pass next_cursor back as cursor for the next page",
    )
    def list_incidents(
        self,
        request: AnyRequest,
        since: Annotated[str | None, QueryParameter(description="ISO 8601, inclusive")] = None,
        until: Annotated[str | None, QueryParameter(description="ISO 8601, exclusive")] = None,
        camera: Annotated[
            str | None, QueryParameter(description="camera ids, comma-separated")
        ] = None,
        type: Annotated[str | None, QueryParameter(description="types, comma-separated")] = None,
        states: Annotated[
            str | None, QueryParameter(name="state", description="states, comma-separated")
        ] = None,
        severity: Annotated[str | None, QueryParameter(description="comma-separated")] = None,
        area: Annotated[
            str | None, QueryParameter(description="min_lat,min_lon,max_lat,max_lon")
        ] = None,
        legal_hold: FromQuery[bool | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Response[s.IncidentPage]:
        if limit > settings(request).max_page:
            raise ValidationException(f"limit: at most {settings(request).max_page}")
        p = principal(request)
        cams = split_list(camera)
        scope: set[str] | None = None
        if p.cameras is not None:
            scope = set(p.cameras)
        if cams is not None:
            scope = set(cams) if scope is None else scope & set(cams)
        if area is not None:
            in_area = set(_area_cameras(request, area))
            scope = in_area if scope is None else scope & in_area
        body = pages(request).page(
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            types=split_list(type),
            states=split_list(states),
            severities=split_list(severity),
            legal_hold=legal_hold,
            limit=limit,
            cursor=cursor,
            camera_ids=sorted(scope) if scope is not None else None,
        )
        # the JSON is made from the rows (pages.py); the annotation gives the OpenAPI schema
        answer: Response[Any] = Response(body, media_type=MediaType.JSON)
        return answer

    @get("/{incident_id:str}", opt={"perm": "incidents.read"}, sync_to_thread=True)
    def get_incident(self, request: AnyRequest, incident_id: FromPath[str]) -> s.IncidentDetail:
        return detail(store(request), load_visible(request, incident_id))

    def _act(
        self, request: AnyRequest, incident_id: str, action: str, text: str | None
    ) -> s.Incident:
        load_visible(request, incident_id)
        st = store(request)
        actor = principal(request).actor
        fn = {
            "acknowledge": st.incidents.acknowledge,
            "resolve": st.incidents.resolve,
            "dismiss": st.incidents.dismiss,
        }[action]
        try:
            r = fn(incident_id, actor=actor, text=text)
        except Exception:
            audit(request, f"incident.{action}", target=f"incident:{incident_id}", outcome="failed")
            raise
        audit(
            request,
            f"incident.{action}",
            target=f"incident:{incident_id}",
            data={"text": text} if text else None,
        )
        _changed(request, r, action, {"text": text})
        return incident_out(r)

    @post(
        "/{incident_id:str}/acknowledge",
        opt={"perm": "incidents.act"},
        sync_to_thread=True,
        status_code=200,
    )
    def acknowledge(
        self,
        request: AnyRequest,
        incident_id: FromPath[str],
        data: JSONBody[s.ActionText | None] = None,
    ) -> s.Incident:
        return self._act(request, incident_id, "acknowledge", data.text if data else None)

    @post(
        "/{incident_id:str}/resolve",
        opt={"perm": "incidents.act"},
        sync_to_thread=True,
        status_code=200,
    )
    def resolve(
        self,
        request: AnyRequest,
        incident_id: FromPath[str],
        data: JSONBody[s.ActionText | None] = None,
    ) -> s.Incident:
        return self._act(request, incident_id, "resolve", data.text if data else None)

    @post(
        "/{incident_id:str}/dismiss",
        opt={"perm": "incidents.act"},
        sync_to_thread=True,
        status_code=200,
        summary="Dismiss as a false alarm",
    )
    def dismiss(
        self,
        request: AnyRequest,
        incident_id: FromPath[str],
        data: JSONBody[s.ActionText | None] = None,
    ) -> s.Incident:
        return self._act(request, incident_id, "dismiss", data.text if data else None)

    @post(
        "/{incident_id:str}/assign",
        opt={"perm": "incidents.act"},
        sync_to_thread=True,
        status_code=200,
    )
    def assign(
        self, request: AnyRequest, incident_id: FromPath[str], data: JSONBody[s.Assign]
    ) -> s.Incident:
        load_visible(request, incident_id)
        r = store(request).incidents.assign(
            incident_id, data.assignee, actor=principal(request).actor
        )
        audit(
            request,
            "incident.assign",
            target=f"incident:{incident_id}",
            data={"assignee": data.assignee},
        )
        _changed(request, r, "assign", {"assignee": data.assignee})
        return incident_out(r)

    @post(
        "/{incident_id:str}/notes",
        opt={"perm": "incidents.act"},
        sync_to_thread=True,
        status_code=201,
    )
    def add_note(
        self, request: AnyRequest, incident_id: FromPath[str], data: JSONBody[s.Note]
    ) -> s.IncidentEvent:
        from smartcity.api.domain.incidents.services import event_out

        r = load_visible(request, incident_id)
        ev = store(request).incidents.add_note(
            incident_id, data.text, actor=principal(request).actor
        )
        audit(request, "incident.note", target=f"incident:{incident_id}")
        _changed(request, r, "note", {"text": data.text})
        return event_out(ev)

    @put("/{incident_id:str}/legal-hold", opt={"perm": "incidents.act"}, sync_to_thread=True)
    def legal_hold(
        self, request: AnyRequest, incident_id: FromPath[str], data: JSONBody[s.LegalHold]
    ) -> s.Incident:
        load_visible(request, incident_id)
        r = store(request).incidents.set_legal_hold(
            incident_id, data.on, actor=principal(request).actor, text=data.text
        )
        audit(
            request, "incident.legal_hold", target=f"incident:{incident_id}", data={"on": data.on}
        )
        _changed(request, r, "legal_hold", {"on": data.on})
        return incident_out(r)

    @get("/{incident_id:str}/evidence", opt={"perm": "evidence.read"}, sync_to_thread=True)
    def list_evidence(self, request: AnyRequest, incident_id: FromPath[str]) -> list[s.Evidence]:
        return detail(store(request), load_visible(request, incident_id)).evidence

    @get(
        "/{incident_id:str}/evidence/{evidence_id:int}",
        opt={"perm": "evidence.read"},
        sync_to_thread=True,
        media_type="application/octet-stream",
        summary="One evidence file (JPEG snapshot or MP4 clip); its sha256 is in X-Content-SHA256",
    )
    def get_evidence(
        self, request: AnyRequest, incident_id: FromPath[str], evidence_id: FromPath[int]
    ) -> File:
        load_visible(request, incident_id)
        st = store(request)
        ev = next((e for e in st.evidence.list(incident_id) if e.id == evidence_id), None)
        target = f"incident:{incident_id}/evidence:{evidence_id}"
        if ev is None:
            audit(
                request,
                "evidence.read",
                target=target,
                outcome="failed",
                data={"reason": "no such evidence"},
            )
            raise NotFoundException(f"no evidence {evidence_id} for incident {incident_id!r}")
        path = st.evidence.abspath(ev)
        if not path.is_file():
            audit(
                request,
                "evidence.read",
                target=target,
                outcome="failed",
                data={"reason": "file missing"},
            )
            raise NotFoundException(f"evidence {evidence_id}: the file is missing on disk")
        audit(request, "evidence.read", target=target, data={"kind": ev.kind, "sha256": ev.sha256})
        return File(
            path=path,
            filename=path.name,
            media_type=MEDIA.get(ev.kind),
            headers={"X-Content-SHA256": ev.sha256},
        )

    @get(
        "/{incident_id:str}/export",
        opt={"perm": "incidents.export"},
        sync_to_thread=True,
        media_type="application/zip",
        summary="ZIP for investigators: incident.json, evidence files, MANIFEST.sha256",
    )
    def export(self, request: AnyRequest, incident_id: FromPath[str]) -> Response[bytes]:
        r = load_visible(request, incident_id)
        data, problems = export_zip(store(request), r, exported_by=principal(request).actor)
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        audit(
            request,
            "incident.export",
            target=f"incident:{incident_id}",
            outcome="ok" if not problems else "error",
            data={"sha256": digest, "bytes": len(data), "problems": problems},
        )
        return Response(
            data,
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="incident-{r.id}.zip"',
                "X-Content-SHA256": digest,
            },
        )
