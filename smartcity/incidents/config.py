"""The incidents service's configuration: store, evidence, lifecycle, retention, cameras.

Every field is checked at start; `IncidentsConfigError` names the first bad one (camera and
field for the per-camera parts: `cameras.cam1.rules.speeding.margin_kmh: ...`). The service
never half-starts. appliance/incidents.example.yaml documents every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from smartcity.incidents.evidence import EvidenceSettings
from smartcity.incidents.geometry import CameraGeometry, GeometryError, parse_camera_geometry
from smartcity.incidents.lifecycle import LifecycleConfigError, LifecycleSettings
from smartcity.incidents.rules.camera_health import CameraHealthConfigError, CameraHealthSettings
from smartcity.incidents.rules.ruleset import RuleSet
from smartcity.store.retention import RetentionPolicy


class IncidentsConfigError(ValueError):
    """A bad incidents configuration; the message names the field."""


@dataclass(frozen=True)
class CameraRules:
    cam: str
    name: str
    geometry: CameraGeometry
    rules: Mapping[str, Any]  # checked by building a RuleSet once at load
    health: CameraHealthSettings
    snapshot_every_s: float  # frames for the camera-health checks (0: none)
    raw_geometry: Mapping[str, Any]


@dataclass(frozen=True)
class IncidentsSettings:
    data_dir: Path
    database: str | None  # None: sqlite:///<data_dir>/smartcity.db
    cameras: tuple[CameraRules, ...]
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_every_s: float = 600.0
    stats_lateness_s: float = 5.0
    ingest_every_s: float = 5.0


_TOP = {
    "data_dir",
    "database",
    "evidence",
    "lifecycle",
    "retention",
    "stats",
    "cameras",
}


def _mapping(v: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise IncidentsConfigError(f"{where}: must be a mapping")
    unknown = set(v) - allowed
    if unknown:
        raise IncidentsConfigError(f"{where}.{sorted(map(str, unknown))[0]}: unknown field")
    return v


def _num(v: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise IncidentsConfigError(f"{where}: must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise IncidentsConfigError(f"{where}: must be true or false")
    return v


def parse_incidents_config(data: Any, base_dir: Path | None = None) -> IncidentsSettings:
    if not isinstance(data, Mapping):
        raise IncidentsConfigError("the incidents configuration must be a mapping")
    _mapping(data, "", _TOP)
    data_dir = Path(str(data.get("data_dir", "data")))
    if base_dir is not None and not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    db = data.get("database")
    if db is not None and (not isinstance(db, str) or "://" not in db):
        raise IncidentsConfigError(
            "database: must be a URL (sqlite:///..., postgresql+psycopg://...)"
        )

    ev = _mapping(
        data.get("evidence"),
        "evidence",
        {"snapshot", "clip", "pre_s", "post_s", "timeout_s", "workers"},
    )
    evidence = EvidenceSettings(
        snapshot=_bool(ev.get("snapshot", True), "evidence.snapshot"),
        clip=_bool(ev.get("clip", True), "evidence.clip"),
        pre_s=_num(ev.get("pre_s", 5.0), "evidence.pre_s", 0, 60),
        post_s=_num(ev.get("post_s", 5.0), "evidence.post_s", 0, 20),
        timeout_s=_num(ev.get("timeout_s", 10.0), "evidence.timeout_s", 0.1, 120),
        workers=int(_num(ev.get("workers", 2), "evidence.workers", 1, 32)),
    )
    try:
        lifecycle = LifecycleSettings.from_mapping(data.get("lifecycle"))
    except LifecycleConfigError as e:
        raise IncidentsConfigError(str(e)) from None

    rt = _mapping(
        data.get("retention"),
        "retention",
        {"evidence_days", "incident_days", "reserve_gb", "reserve_percent", "every_s"},
    )
    ev_days = rt.get("evidence_days", 30)
    inc_days = rt.get("incident_days")
    retention = RetentionPolicy(
        evidence_max_age=None
        if ev_days is None
        else timedelta(days=_num(ev_days, "retention.evidence_days", 0, 36500)),
        incident_max_age=None
        if inc_days is None
        else timedelta(days=_num(inc_days, "retention.incident_days", 0, 36500)),
        reserve_bytes=int(_num(rt.get("reserve_gb", 2), "retention.reserve_gb", 0, 1e6) * 1024**3),
        reserve_percent=_num(rt.get("reserve_percent", 5), "retention.reserve_percent", 0, 90),
    )
    st = _mapping(data.get("stats"), "stats", {"lateness_s", "ingest_every_s"})

    cams_in = data.get("cameras")
    if not isinstance(cams_in, list) or not cams_in:
        raise IncidentsConfigError("cameras: must be a non-empty list")
    cameras: list[CameraRules] = []
    seen: set[str] = set()
    for i, c in enumerate(cams_in):
        where = f"cameras[{i}]"
        c = _mapping(c, where, {"id", "name", "geometry", "rules", "health", "snapshot_every_s"})
        cid = c.get("id")
        if not isinstance(cid, str) or not cid:
            raise IncidentsConfigError(f"{where}.id: must be a non-empty string")
        if cid in seen:
            raise IncidentsConfigError(f"{where}.id: '{cid}' appears twice")
        seen.add(cid)
        geo_raw = c.get("geometry") or {}
        try:
            geo = parse_camera_geometry(cid, geo_raw)
            rules = c.get("rules") or {}
            RuleSet(geo, rules)  # refuses a rule that cannot run, naming camera and field
            health = CameraHealthSettings.from_mapping(cid, c.get("health"))
        except (GeometryError, CameraHealthConfigError) as e:
            raise IncidentsConfigError(str(e)) from None
        cameras.append(
            CameraRules(
                cam=cid,
                name=str(c.get("name", cid)),
                geometry=geo,
                rules=rules,
                health=health,
                snapshot_every_s=_num(
                    c.get("snapshot_every_s", 5.0), f"cameras.{cid}.snapshot_every_s", 0, 3600
                ),
                raw_geometry=geo_raw,
            )
        )
    return IncidentsSettings(
        data_dir=data_dir,
        database=db,
        cameras=tuple(cameras),
        evidence=evidence,
        lifecycle=lifecycle,
        retention=retention,
        retention_every_s=_num(rt.get("every_s", 600), "retention.every_s", 1, 86400),
        stats_lateness_s=_num(st.get("lateness_s", 5), "stats.lateness_s", 0, 600),
        ingest_every_s=_num(st.get("ingest_every_s", 5), "stats.ingest_every_s", 0.1, 3600),
    )


def load_incidents_config(path: str | Path) -> IncidentsSettings:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise IncidentsConfigError(f"{path}: cannot read the configuration: {e}") from e
    return parse_incidents_config(data, base_dir=path.parent)
