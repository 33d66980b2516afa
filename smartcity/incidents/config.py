"""The incidents service's configuration: store, evidence, lifecycle, retention, cameras.

Every field is checked at start; `IncidentsConfigError` names the first bad one (camera and
field for the per-camera parts: `cameras.cam1.rules.speeding.margin_kmh: ...`). The service
never half-starts. appliance/incidents.example.yaml documents every field.

With a `cameras_from_store` block the camera set is the file's cameras plus the store's enabled
ones (those the API manages), each with its stored geometry and the block's `defaults` (rules,
health, snapshot_every_s); `with_store_cameras` reads them, at start and at every reload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from smartcity import checks
from smartcity.incidents.evidence import EvidenceSettings
from smartcity.incidents.geometry import CameraGeometry, GeometryError, parse_camera_geometry
from smartcity.incidents.lifecycle import SYSTEM_CAMERA, LifecycleConfigError, LifecycleSettings
from smartcity.incidents.rules.base import parse_settings
from smartcity.incidents.rules.camera_health import CameraHealthConfigError, CameraHealthSettings
from smartcity.incidents.rules.ruleset import RULES, RuleSet
from smartcity.store import CameraRecord, Store
from smartcity.store.engine import describe_store, store_problem
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
    from_store: bool = False  # a camera of the store (cameras_from_store), not of the file


@dataclass(frozen=True)
class StoreCameras:
    """`cameras_from_store`: the store whose enabled cameras the service watches besides the
    file's (Store.open(url, data_dir=data_dir)), and the settings those cameras get: `rules`
    (a camera's `rules` mapping), `health`, `snapshot_every_s`."""

    data_dir: Path | None = None
    url: str | None = None
    rules: Mapping[str, Any] = field(default_factory=dict)
    health: Mapping[str, Any] = field(default_factory=dict)
    snapshot_every_s: float = 5.0

    def describe(self) -> str:
        """Where the store is, for messages (never the database password)."""
        return describe_store(self.url, self.data_dir)


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
    cameras_from_store: StoreCameras | None = None  # the store's cameras watched too


_TOP = {
    "data_dir",
    "database",
    "evidence",
    "lifecycle",
    "retention",
    "stats",
    "cameras",
    "cameras_from_store",
}
_CAMERA_KEYS = {"id", "name", "geometry", "rules", "health", "snapshot_every_s"}
#: What `cameras_from_store.defaults` may hold: a camera's settings but its id, name, geometry.
_DEFAULT_KEYS = {"rules", "health", "snapshot_every_s"}
#: Store camera URLs that name no stream: the rows this service writes for the cameras of its
#: file ("engine:<id>", left behind when the file drops one) and the system camera's.
PLACEHOLDER_URLS = ("engine:", "internal:")
_DEFAULTS_CAM = "__defaults__"  # the camera name the defaults' health settings are checked as


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
    try:
        return checks.number(v, lo, hi)
    except checks.NumberError as e:
        raise IncidentsConfigError(f"{where}: {e}") from None


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

    store_block = _store_block(data.get("cameras_from_store"), base_dir)
    cams_in = data.get("cameras")
    if store_block is not None and cams_in is None:
        cams_in = []  # every camera may come from the store
    if not isinstance(cams_in, list) or (not cams_in and store_block is None):
        raise IncidentsConfigError("cameras: must be a non-empty list")
    cameras: list[CameraRules] = []
    seen: set[str] = set()
    for i, c in enumerate(cams_in):
        where = f"cameras[{i}]"
        c = _mapping(c, where, _CAMERA_KEYS)
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
        cameras_from_store=store_block,
    )


def _store_block(v: Any, base_dir: Path | None) -> StoreCameras | None:
    """`cameras_from_store` (None when absent), checked: where the store is, and the defaults
    (checked as a camera's settings are, naming `cameras_from_store.defaults.<field>`)."""
    if v is None:
        return None
    where = "cameras_from_store"
    d = _mapping(v, where, {"data_dir", "url", "defaults"})
    url, folder = d.get("url"), d.get("data_dir")
    if url is not None and (not isinstance(url, str) or "://" not in url):
        raise IncidentsConfigError(
            f"{where}.url: must be a database URL (sqlite:///..., postgresql+psycopg://...)"
        )
    if folder is not None and (not isinstance(folder, str) or not folder):
        raise IncidentsConfigError(f"{where}.data_dir: must be a folder path")
    if url is None and folder is None:
        raise IncidentsConfigError(f"{where}: give data_dir or url (the store's database)")
    data_dir = None if folder is None else Path(folder)
    if data_dir is not None and base_dir is not None and not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    defaults = _mapping(d.get("defaults"), f"{where}.defaults", _DEFAULT_KEYS)
    rules = defaults.get("rules") or {}
    base = f"{where}.defaults.rules"
    if not isinstance(rules, Mapping):
        raise IncidentsConfigError(f"{base}: must be a mapping")
    try:
        for name, setting in rules.items():
            if name not in RULES:
                raise GeometryError(f"{base}.{name}", f"unknown rule (one of {', '.join(RULES)})")
            parse_settings(RULES[name][1], setting, f"{base}.{name}")
    except GeometryError as e:
        raise IncidentsConfigError(str(e)) from None
    health = defaults.get("health") or {}
    try:
        CameraHealthSettings.from_mapping(_DEFAULTS_CAM, health)
    except CameraHealthConfigError as e:
        field_ = e.field.replace(f"cameras.{_DEFAULTS_CAM}.", f"{where}.defaults.", 1)
        raise IncidentsConfigError(f"{field_}: {e.message}") from None
    snap = _num(
        defaults.get("snapshot_every_s", 5.0), f"{where}.defaults.snapshot_every_s", 0, 3600
    )
    return StoreCameras(
        data_dir=data_dir,
        url=url,
        rules=dict(rules),
        health=dict(health),
        snapshot_every_s=snap,
    )


def open_store(block: StoreCameras) -> Store:
    """The store of a `cameras_from_store` block; IncidentsConfigError (no password in it) when
    it cannot be opened."""
    try:
        return Store.open(block.url, data_dir=block.data_dir)
    except Exception as e:  # noqa: BLE001 - any failure of the database is reported as such
        raise IncidentsConfigError(
            f"cameras_from_store: cannot open the store ({block.describe()}): "
            f"{store_problem(e, block.url)}"
        ) from None


def _store_camera(block: StoreCameras, rec: CameraRecord) -> CameraRules:
    """A store camera's rules: its stored geometry, the block's defaults. A rule the defaults
    name that this camera cannot run (no lanes, no calibration ...) is left out for it rather
    than refused: the defaults serve cameras of every kind. GeometryError or
    CameraHealthConfigError when its geometry does not validate."""
    raw = rec.geometry if isinstance(rec.geometry, Mapping) else {}
    geo = parse_camera_geometry(rec.id, raw)
    rules = dict(block.rules)
    base = f"cameras.{rec.id}.rules."
    while True:
        try:
            RuleSet(geo, rules)
            break
        except GeometryError as e:
            name = e.field[len(base) :] if e.field.startswith(base) else ""
            if name not in rules:
                raise
            del rules[name]  # the settings were checked at load: "needs ..." is all it can be
    return CameraRules(
        cam=rec.id,
        name=rec.name,
        geometry=geo,
        rules=rules,
        health=CameraHealthSettings.from_mapping(rec.id, block.health),
        snapshot_every_s=block.snapshot_every_s,
        raw_geometry=raw,
        from_store=True,
    )


def with_store_cameras(
    settings: IncidentsSettings, store: Store | None = None
) -> tuple[IncidentsSettings, list[str]]:
    """`settings` (the file's cameras) with the enabled cameras of the store after them; a
    store camera with the id of one of the file's is left out (the file wins), and so is a row
    with a placeholder URL (PLACEHOLDER_URLS: one this service wrote for a camera of its
    file, possibly one the file has dropped since). The second value
    names the store cameras left out because they do not validate (`store camera 'x':
    cameras.x.lines[0].a: ...`). `store`: an open one to read (else one is opened and closed).
    IncidentsConfigError when the store cannot be opened or read."""
    own = tuple(c for c in settings.cameras if not c.from_store)
    block = settings.cameras_from_store
    if block is None:
        return replace(settings, cameras=own), []
    mine = {c.cam for c in own}
    try:
        if store is not None:
            records = store.cameras.list(enabled=True)
        else:
            with open_store(block) as opened:
                records = opened.cameras.list(enabled=True)
    except IncidentsConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the database is reported as such
        raise IncidentsConfigError(
            f"cameras_from_store: cannot read the cameras of the store ({block.describe()}): "
            f"{store_problem(e, block.url)}"
        ) from None
    cameras, problems = [], []
    for rec in records:
        if rec.id in mine or rec.id == SYSTEM_CAMERA or rec.url.startswith(PLACEHOLDER_URLS):
            continue  # the file's camera wins; a placeholder row is a file's camera, not ours
        try:
            cameras.append(_store_camera(block, rec))
        except (GeometryError, CameraHealthConfigError) as e:
            problems.append(f"store camera '{rec.id}': {e}")
    return replace(settings, cameras=own + tuple(cameras)), problems


def load_incidents_config(path: str | Path) -> IncidentsSettings:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise IncidentsConfigError(f"{path}: cannot read the configuration: {e}") from e
    return parse_incidents_config(data, base_dir=path.parent)
