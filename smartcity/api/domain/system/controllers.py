"""Health (per service and per camera), version and build information, Prometheus metrics."""

from __future__ import annotations

import platform
import shutil
import time
from typing import Any

from litestar import Controller, Response, get

from smartcity.api.domain.common import AnyRequest, principal, settings, store


def _version() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("smartcity")
    except PackageNotFoundError:
        v = "unknown"
    info: dict[str, Any] = {"version": v, "python": platform.python_version(), "api": "v1"}
    try:
        from smartcity import _core

        info["core"] = _core.build_info()
    except Exception as e:  # noqa: BLE001 - the API runs without the core (reports why)
        info["core"] = {"error": f"{type(e).__name__}: {e}"}
    return info


class SystemController(Controller):
    path = "/api/v1/system"
    tags = ["system"]

    @get(
        "/health",
        opt={"perm": "system.read"},
        sync_to_thread=True,
        summary="State of each service and each camera (as the bus last reported it)",
    )
    def health(self, request: AnyRequest) -> dict[str, Any]:
        p = principal(request)
        st = store(request)
        problems = st.integrity_check() if request.query_params.get("deep") == "1" else []
        metrics = request.app.state.metrics
        now = time.time()
        cameras = {}
        for c in st.cameras.list():
            if not p.sees(c.id):
                continue
            h = metrics.camera.get(c.id)
            cameras[c.id] = {
                "enabled": c.enabled,
                "state": h.get("state") if h else ("disabled" if not c.enabled else "unknown"),
                "source_fps": h.get("source_fps") if h else None,
                "last_frame_age_s": h.get("last_frame_age_s") if h else None,
                "reconnects": h.get("reconnects") if h else None,
                "last_error": h.get("last_error") if h else None,
                "reported_s_ago": round(now - h["_at"], 1) if h and "_at" in h else None,
            }
        bridge = request.app.state.get("bus_bridge")
        data_dir = settings(request).data_path
        disk: dict[str, Any]
        try:
            du = shutil.disk_usage(data_dir if data_dir.exists() else ".")
            disk = {"free_bytes": du.free, "total_bytes": du.total}
        except OSError as e:
            disk = {"error": str(e)}
        services = {
            "api": {"state": "running", "uptime_s": round(now - metrics.started, 1)},
            "database": {
                "state": "ok" if not problems else "degraded",
                "problems": problems,
                "dialect": st.dialect,
            },
            "bus": bridge.status() if bridge is not None else {"state": "not configured"},
            "webhooks": request.app.state.webhooks_status(),
        }
        return {"services": services, "cameras": cameras, "disk": disk}

    @get("/version", opt={"perm": "system.read"}, sync_to_thread=True)
    def version(self) -> dict[str, Any]:
        return _version()


@get(
    "/metrics",
    opt={"perm": "metrics.read"},
    sync_to_thread=True,
    tags=["system"],
    media_type="text/plain; version=0.0.4",
    include_in_schema=True,
)
def metrics(request: AnyRequest) -> Response[str]:
    app = request.app
    extra = {
        "smartcity_live_connections": float(app.state.hub.connections),
        "smartcity_hub_events_total": float(app.state.hub.published),
    }
    return Response(app.state.metrics.render(extra), media_type="text/plain; version=0.0.4")
