"""Health (per service and per camera), version and build information, Prometheus metrics."""

from __future__ import annotations

import os
import platform
import re
import shutil
import sqlite3
import time
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.exceptions import (
    ClientException,
    NotFoundException,
    ServiceUnavailableException,
    ValidationException,
)
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from smartcity.api.domain.common import AnyRequest, audit, principal, settings, store
from smartcity.api.domain.system import schemas as sc
from smartcity.api.logs import MAX_LIMIT, LogQuery, log_file_path, read_tail


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smartcity")
    except PackageNotFoundError:
        return "unknown"


def _version() -> dict[str, Any]:
    info: dict[str, Any] = {
        "version": package_version(),
        "python": platform.python_version(),
        "api": "v1",
    }
    try:
        from smartcity import _core

        info["core"] = _core.build_info()
    except Exception as e:  # noqa: BLE001 - the API runs without the core (reports why)
        info["core"] = {"error": f"{type(e).__name__}: {e}"}
    return info


SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
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
                # where the stream is decoded (cpu, nvdec) and why not on the GPU when asked
                "decoder": (h.get("decoder") or None) if h else None,
                "hwaccel_note": (h.get("hwaccel_note") or None) if h else None,
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
            "api": {
                "state": "running",
                "uptime_s": round(now - metrics.started, 1),
                "pid": os.getpid(),  # the worker process that answered
                "workers": settings(request).workers,
            },
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
        "/logs",
        opt={"perm": "system.logs"},
        sync_to_thread=True,
        summary="The tail of the appliance's log, filtered: service, lowest level, camera, text",
    )
    def logs(
        self,
        request: AnyRequest,
        service: Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z0-9_\-]{1,32}$")] = None,
        level: Annotated[str | None, QueryParameter(pattern="^(info|warning|error)$")] = None,
        camera: Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = None,
        text: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 200,
    ) -> sc.LogTail:
        path = log_file_path(settings(request).data_path)
        q = LogQuery(service=service, level=level, camera=camera, text=text or None, limit=limit)
        try:
            tail = read_tail(path, q)
        except FileNotFoundError:
            raise NotFoundException(
                f"no log file {path}: `smartcity run` writes it (log.file in appliance.yaml)"
            ) from None
        except (IsADirectoryError, PermissionError) as e:
            raise ServiceUnavailableException(f"the log file {path} cannot be read: {e}") from None
        return sc.LogTail(
            file=tail.file,
            records=[sc.LogRecord(**r) for r in tail.records],
            skipped=tail.skipped,
            partial=tail.partial,
            scanned_bytes=tail.scanned_bytes,
            complete=tail.complete,
        )

    @get(
        "/resources",
        opt={"perm": "system.resources"},
        sync_to_thread=True,
        summary="The machine: CPU use and load, memory, the data directory's disk, uptime, and "
        "the GPUs through NVML (utilization, memory, temperature, decoder) where present",
    )
    def resources(self, request: AnyRequest) -> sc.Resources:
        import msgspec

        from smartcity.api.resources import gpu_report, machine_report

        report = machine_report(settings(request).data_path, request.app.state.cpu_use)
        report["gpu"] = gpu_report()
        return msgspec.convert(report, sc.Resources)

    @get(
        "/models",
        opt={"perm": "system.models"},
        sync_to_thread=True,
        summary="The model folders (cards, file size, sha256 check), the engine's model and "
        "backend, the inference backends this machine can run",
    )
    def models(self) -> sc.ModelsReport:
        import msgspec

        from smartcity.api.backup import appliance_config_path
        from smartcity.api.modelinfo import models_report

        return msgspec.convert(models_report(appliance_config_path()), sc.ModelsReport)

    @post(
        "/services/{service:str}/restart",
        opt={"perm": "system.control"},
        sync_to_thread=True,
        status_code=202,
        summary="Restart a service that `smartcity run` supervises (engine, incidents, api)",
    )
    def restart_service(self, request: AnyRequest, service: FromPath[str]) -> dict[str, Any]:
        from smartcity.api.control import ControlUnavailable, control_request

        if not SERVICE_NAME.fullmatch(service):
            raise ValidationException("service: a name of 1-32 letters, digits, _ or -")
        run_dir = settings(request).run_dir
        if not run_dir:
            audit(request, "system.restart", target=service, outcome="failed",
                  data={"reason": "no run_dir"})  # fmt: skip
            raise ClientException(
                "this api was not started by `smartcity run` (no run_dir): restart the "
                "service with systemctl",
                status_code=409,
            )
        try:
            answer = control_request(run_dir, {"op": "restart", "service": service})
        except ControlUnavailable as e:
            audit(request, "system.restart", target=service, outcome="error",
                  data={"reason": str(e)})  # fmt: skip
            raise ServiceUnavailableException(str(e)) from None
        if not answer.get("ok"):
            error = str(answer.get("error", "refused"))[:500]
            audit(request, "system.restart", target=service, outcome="failed",
                  data={"reason": error})  # fmt: skip
            raise NotFoundException(f"the supervisor refused: {error}")
        audit(request, "system.restart", target=service, data={"pid": answer.get("pid")})
        return {"status": "restarting", "service": service, "pid": answer.get("pid")}

    @get(
        "/backup",
        opt={"perm": "system.backup"},
        sync_to_thread=True,
        media_type="application/gzip",
        summary="A .tar.gz of the SQLite database (online backup), the configuration files and "
        "manifest.json; 409 for PostgreSQL (use pg_dump)",
    )
    def backup(self, request: AnyRequest) -> Stream:
        from smartcity.api.backup import (
            BackupUnsupported,
            appliance_config_path,
            make_backup,
            remove_stale,
        )

        data_dir = settings(request).data_path
        remove_stale(data_dir)
        try:
            b = make_backup(
                store(request),
                data_dir,
                config=appliance_config_path(),
                version=package_version(),
            )
        except BackupUnsupported as e:
            audit(request, "system.backup", outcome="failed", data={"reason": str(e)})
            raise ClientException(str(e), status_code=409) from None
        except (OSError, sqlite3.Error) as e:
            audit(request, "system.backup", outcome="error", data={"reason": str(e)})
            raise ServiceUnavailableException(f"the backup could not be made: {e}") from None
        problems = b.manifest["problems"]
        audit(
            request,
            "system.backup",
            target=b.filename,
            outcome="ok" if not problems else "error",
            data={
                "sha256": b.sha256,
                "bytes": b.size,
                "members": [m["name"] for m in b.manifest["members"]],
                "problems": problems,
            },
        )
        return Stream(
            b.chunks(),
            media_type="application/gzip",
            headers={
                "Content-Disposition": f'attachment; filename="{b.filename}"',
                "Content-Length": str(b.size),
                "X-Content-SHA256": b.sha256,
            },
        )


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
