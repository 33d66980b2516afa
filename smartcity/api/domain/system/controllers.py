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


#: a service is "stale" when its last sign of life is older than this
HEALTH_STALE_S = 10.0
INGEST_STALE_S = 300.0


def _fresh(age: float | None, stale_s: float, known: bool) -> str:
    if not known:
        return "not configured"
    if age is None:
        return "unknown"
    return "running" if age <= stale_s else "stale"


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
        # the engine: its newest health message; the incidents service: its newest write of
        # ingest counters (it writes them while tracks arrive)
        seen = [h["_at"] for h in metrics.camera.values() if "_at" in h]
        engine_age = round(now - max(seen), 1) if seen else None
        ingest = [c.updated_at.timestamp() for c in st.ingest.list()]
        incidents_age = round(now - max(ingest), 1) if ingest else None
        services = {
            "api": {"state": "running", "uptime_s": round(now - metrics.started, 1)},
            "engine": {
                "state": _fresh(engine_age, HEALTH_STALE_S, bridge is not None),
                "last_report_s_ago": engine_age,
            },
            "incidents": {
                "state": _fresh(incidents_age, INGEST_STALE_S, True),
                "last_write_s_ago": incidents_age,
            },
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
