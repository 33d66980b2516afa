"""Cameras and their geometry. A change is stored, audited, and announced on the bus
(`config.changed` with the camera ids) so that the engine and the incidents service take it
without a restart."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, delete, get, patch, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody

from smartcity import redact_url  # the core's: user:password@ -> ***@
from smartcity.api.domain.cameras import schemas as s
from smartcity.api.domain.common import AnyRequest, audit, principal, store, visible_camera
from smartcity.engine.process import URL_SCHEMES
from smartcity.incidents.geometry import GeometryError, parse_camera_geometry
from smartcity.incidents.lifecycle import SYSTEM_CAMERA
from smartcity.store import CameraRecord
from smartcity.store.errors import ConflictError

#: what the engine accepts (smartcity/engine/process.py URL_SCHEMES) and local files
ALLOWED_SCHEMES = (*URL_SCHEMES, "file")


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ValidationException(f"url: not a URL ({e})") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValidationException(
            f"url: scheme {parts.scheme!r} not allowed; use one of {', '.join(ALLOWED_SCHEMES)}"
        )
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise ValidationException("url: no host")
    if any(c in url for c in "\r\n\x00 "):
        raise ValidationException("url: spaces and control characters are not allowed")


def _check_geometry(cam: str, geometry: dict[str, Any]) -> None:
    try:
        parse_camera_geometry(cam, geometry, path="geometry")
    except GeometryError as e:
        raise ValidationException(str(e), extra=[{"key": e.field, "message": e.message}]) from None


def camera_out(c: CameraRecord) -> s.Camera:
    return s.Camera(
        id=c.id,
        name=c.name,
        url_redacted=redact_url(c.url),
        enabled=c.enabled,
        geometry=c.geometry,
        created_at=c.created_at.isoformat(),
        updated_at=c.updated_at.isoformat(),
    )


def _announce(request: AnyRequest, cams: list[str], reason: str) -> None:
    notifier = request.app.state.get("config_notifier")
    if notifier is not None:
        notifier(cams, reason)


#: The appliance's own camera holds the system incidents (disk, crash loops, camera health).
_SYSTEM_REFUSAL = (
    f"camera '{SYSTEM_CAMERA}' is the appliance's own (it holds the system incidents): it "
    "cannot be {what}"
)


class CamerasController(Controller):
    path = "/api/v1/cameras"
    tags = ["cameras"]

    @get("/", opt={"perm": "cameras.read"}, sync_to_thread=True)
    def list_cameras(
        self, request: AnyRequest, enabled: FromQuery[bool | None] = None
    ) -> list[s.Camera]:
        p = principal(request)
        return [camera_out(c) for c in store(request).cameras.list(enabled=enabled) if p.sees(c.id)]

    @get("/{camera_id:str}", opt={"perm": "cameras.read"}, sync_to_thread=True)
    def get_camera(self, request: AnyRequest, camera_id: FromPath[str]) -> s.Camera:
        visible_camera(request, camera_id)
        return camera_out(store(request).cameras.get(camera_id))

    @post("/", opt={"perm": "cameras.write"}, sync_to_thread=True, status_code=201)
    def create_camera(self, request: AnyRequest, data: JSONBody[s.CameraCreate]) -> s.Camera:
        p = principal(request)
        if p.cameras is not None:
            raise ValidationException("a user restricted to some cameras cannot add cameras")
        _check_url(data.url)
        _check_geometry(data.id, data.geometry)
        c = store(request).cameras.add(
            data.id, data.name, data.url, enabled=data.enabled, geometry=data.geometry
        )
        audit(
            request,
            "camera.create",
            target=f"camera:{c.id}",
            data={"name": c.name, "url": redact_url(c.url), "enabled": c.enabled},
        )
        _announce(request, [c.id], "api: camera added")
        return camera_out(c)

    @patch("/{camera_id:str}", opt={"perm": "cameras.write"}, sync_to_thread=True)
    def update_camera(
        self, request: AnyRequest, camera_id: FromPath[str], data: JSONBody[s.CameraUpdate]
    ) -> s.Camera:
        visible_camera(request, camera_id)
        st = store(request)
        st.cameras.get(camera_id)  # 404 first
        if camera_id == SYSTEM_CAMERA and (data.url is not None or data.enabled is False):
            raise ConflictError(_SYSTEM_REFUSAL.format(what="disabled or given a stream URL"))
        if data.url is not None:
            _check_url(data.url)
        if data.geometry is not None:
            _check_geometry(camera_id, data.geometry)
        c = st.cameras.update(
            camera_id, name=data.name, url=data.url, enabled=data.enabled, geometry=data.geometry
        )
        changed = [
            k for k in ("name", "url", "enabled", "geometry") if getattr(data, k) is not None
        ]
        audit(request, "camera.update", target=f"camera:{camera_id}", data={"changed": changed})
        _announce(request, [camera_id], "api: camera changed")
        return camera_out(c)

    @delete("/{camera_id:str}", opt={"perm": "cameras.write"}, sync_to_thread=True, status_code=204)
    def delete_camera(self, request: AnyRequest, camera_id: FromPath[str]) -> None:
        visible_camera(request, camera_id)
        if camera_id == SYSTEM_CAMERA:
            store(request).cameras.get(camera_id)  # 404 when it is not there
            raise ConflictError(_SYSTEM_REFUSAL.format(what="deleted"))
        store(request).cameras.delete(camera_id)
        audit(request, "camera.delete", target=f"camera:{camera_id}")
        _announce(request, [camera_id], "api: camera deleted")
