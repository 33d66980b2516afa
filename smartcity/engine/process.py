"""`smartcity engine`: streams -> batches -> detector -> trackers -> tracks on the bus.

One process runs a camera set: the C++ pipeline decodes and batches, the detector runs on each
batch (ONNX Runtime), the C++ post-processing and the per-camera trackers turn its outputs into
tracks, and the C++ publisher puts `tracks.<camera>` on the bus for every analysed frame and
`health.<camera>` every `health_interval_s`. Python does three things per batch, nothing per
object (DESIGN.md §1). The evidence server (smartcity/engine/evidence.py) answers snapshot and
clip requests on `ipc://<run dir>/evidence` from its own thread.

The configuration is validated whole before anything starts (EngineConfigError names the field,
and for a camera its index and id). With a `cameras_from_store` block the engine also runs the
store's enabled cameras (those the API manages), read by `load_engine_config` after the file's.
While the engine runs, a reload (SIGHUP through the CLI, a `config.changed` request on the bus,
such as the API's after a camera change, or `request_reload`) re-reads and re-validates the file
and the store and changes only the cameras that changed (smartcity/engine/reload.py), between
two batches on the loop thread; docs/events.md ("The engine process") has the rules.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from smartcity import _core, checks
from smartcity.bus import defaults as bus_defaults
from smartcity.classes import APPLIANCE_CLASSES
from smartcity.engine.detectors import CHOICES, batch_device_of, create_detector, detect
from smartcity.engine.evidence import EvidenceServer
from smartcity.engine.models import CARD_FILE, CardError, load_card
from smartcity.engine.reload import (
    APPLIED,
    REFUSED,
    ReloadRequests,
    ReloadResult,
    diff_settings,
    restart_fields,
)
from smartcity.tracking import ByteTracker

if TYPE_CHECKING:
    from smartcity.store import Store

log = logging.getLogger("smartcity.engine")


class EngineConfigError(ValueError):
    """A bad engine configuration; the message names the field."""


@dataclass(frozen=True)
class CameraSettings:
    camera_id: str
    url: str
    analyze_fps: float = 5.0
    rtsp_transport: str = "tcp"
    loop: bool = False
    realtime: bool = False
    image_to_ground: tuple[tuple[float, ...], ...] | None = None
    hwaccel: str | None = None  # none | auto | cuda; None: the engine's `hwaccel`
    from_store: bool = False  # a camera of the store (cameras_from_store), not of the YAML


@dataclass(frozen=True)
class StoreCameras:
    """`cameras_from_store`: the store whose enabled cameras the engine runs besides the YAML's
    (Store.open(url, data_dir=data_dir)), and the engine settings those cameras get."""

    data_dir: Path | None = None
    url: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # analyze_fps, rtsp_transport, ...

    def describe(self) -> str:
        """Where the store is, for messages (never the database password)."""
        from smartcity.store.engine import describe_store

        return describe_store(self.url, self.data_dir)


@dataclass(frozen=True)
class EngineSettings:
    model: str
    cameras: tuple[CameraSettings, ...]
    models_root: Path = Path("models")
    max_batch: int = 8
    max_wait_ms: int = 50
    health_interval_s: float = 1.0
    heap_trim_interval_s: float = 10.0  # malloc_trim this often (0: never); bench/README.md
    inference_threads: int = 1
    tracking: dict[str, Any] = field(default_factory=dict)
    backend: str = "auto"  # auto | tensorrt | onnxruntime-cuda | onnxruntime (docs/detection.md)
    engine_cache: Path | None = None  # TensorRT engines (None: ~/.cache/smartcity/engines)
    cameras_from_store: StoreCameras | None = None  # the store's cameras run too (None: none)
    hwaccel: str = "auto"  # none | auto | cuda: NVDEC decoding (docs/engine.md)
    hw_device: int = 0  # CUDA device index for decoding


_TRACKING_KEYS = {
    "track_thresh", "match_thresh", "track_buffer", "speed_window_s",
    "duplicate_iou", "crowd_class", "speed_long_window_s", "speed_curvature_z",
    "speed_filter", "speed_accel", "speed_noise_px", "speed_noise_frac",
    "recover_s", "recover_gate_m", "recover_min_s", "recover_classes",
}  # fmt: skip
_TRACKING_INTS = {"track_buffer", "crowd_class"}
_TRACKING_STRS = {"speed_filter"}
_TRACKING_CLASS_LISTS = {"recover_classes"}  # appliance class names, handed on as class ids
_CAMERA_KEYS = {
    "id",
    "url",
    "analyze_fps",
    "rtsp_transport",
    "loop",
    "realtime",
    "image_to_ground",
    "calibration",
    "hwaccel",
}
#: `hwaccel` values: where the camera's video is decoded (docs/engine.md).
HWACCEL_CHOICES = ("none", "auto", "cuda")
_CAMERA_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Engine settings a store camera takes from `cameras_from_store.defaults` (the rest is the
#: store's: id, url, geometry.calibration).
STORE_DEFAULT_KEYS = {"analyze_fps", "rtsp_transport", "loop", "realtime", "hwaccel"}
#: Store camera URLs that name no stream: rows the incidents service writes for the cameras of
#: its own file ("engine:<id>") and the appliance's system camera ("internal:appliance").
PLACEHOLDER_URLS = ("engine:", "internal:")
#: URL schemes a camera may use; anything else with a scheme is refused (a plain path is a file).
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _number(where: str, v: Any, lo: float, hi: float) -> float:
    try:
        return checks.number(v, lo, hi)
    except checks.NumberError as e:
        raise EngineConfigError(f"{where}: {e}") from None


def _check_url(where: str, url: str, base_dir: Path | None) -> str:
    """The camera's URL, a relative file path resolved against base_dir; EngineConfigError for
    a scheme other than file paths, rtsp://, rtsps://, http(s):// or for a missing file."""
    if any(ch in url for ch in "\r\n\0"):
        raise EngineConfigError(f"{where}: must not contain control characters")
    if len(url) > 4096:
        raise EngineConfigError(f"{where}: longer than 4096 characters")
    m = _SCHEME.match(url)
    if m is not None and len(m.group(1)) > 1:  # "C:" would be a drive letter, not a scheme
        scheme = m.group(1).lower()
        if url[m.end() : m.end() + 2] == "//" and scheme in URL_SCHEMES:
            if len(url) <= m.end() + 2:
                raise EngineConfigError(f"{where}: no host after {scheme}://")
            return url
        if scheme != "file":
            allowed = ", ".join(f"{s}://" for s in URL_SCHEMES)
            raise EngineConfigError(
                f"{where}: scheme '{scheme}' is not supported (a file path, {allowed})"
            )
        url = url[m.end() :]
        if url.startswith("//"):
            url = url[2:]
    path = Path(url)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path  # a file named relative to the configuration file
    if not path.is_file():
        raise EngineConfigError(f"{where}: no such file {path}")
    return str(path)


def _parse_camera(
    c: dict[str, Any], bad: Callable[[str, str], EngineConfigError], base_dir: Path | None
) -> CameraSettings:
    """One camera's settings from its mapping (unknown keys already refused); `bad(field,
    problem)` makes the error, naming the camera its own way (YAML index, store id)."""
    cid, url = c.get("id"), c.get("url")
    if not isinstance(cid, str) or not cid:
        raise bad("id", "must be a non-empty string")
    if not _CAMERA_ID.fullmatch(cid):
        raise bad("id", "must be 1 to 64 letters, digits, '_', '-' or '.'")
    if not isinstance(url, str) or not url:
        raise bad("url", "must be a non-empty string")
    fps = c.get("analyze_fps", 5.0)
    if isinstance(fps, int | float) and not isinstance(fps, bool) and fps < 0:
        raise bad("analyze_fps", f"must not be negative, got {fps!r} (0 analyses every frame)")
    if isinstance(fps, float) and not math.isfinite(fps):
        raise bad("analyze_fps", f"must be a finite number, got {fps!r}")
    try:
        analyze_fps = _number("analyze_fps", fps, 0, 1000)
    except EngineConfigError as e:
        raise bad("analyze_fps", str(e).partition(": ")[2]) from None
    transport = c.get("rtsp_transport", "tcp")
    if transport not in ("tcp", "udp"):
        raise bad("rtsp_transport", f"must be 'tcp' or 'udp', got {transport!r}")
    hwaccel = c.get("hwaccel")
    if hwaccel is not None and hwaccel not in HWACCEL_CHOICES:
        raise bad("hwaccel", f"must be one of {', '.join(HWACCEL_CHOICES)}, got {hwaccel!r}")
    h = c.get("image_to_ground")
    if h is not None:
        arr = np.asarray(h, dtype=object)
        if arr.shape != (3, 3) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in arr.ravel()
        ):
            raise bad("image_to_ground", "must be a 3x3 list of numbers")
        m = np.asarray(h, dtype=np.float64)
        if not np.isfinite(m).all():
            raise bad("image_to_ground", "must hold finite numbers")
        if not abs(float(np.linalg.det(m))) > 1e-12:
            raise bad("image_to_ground", "the homography is singular")
        h = tuple(tuple(float(x) for x in row) for row in h)
    if c.get("calibration") is not None:
        # The incidents service's calibration block (point pairs in metres or
        # latitude/longitude, or a homography): the same YAML works in both files.
        if h is not None:
            raise bad("calibration", "give either calibration or image_to_ground, not both")
        from smartcity.incidents.geometry import GeometryError, parse_calibration

        try:
            cal = parse_calibration(c["calibration"], "calibration")
        except GeometryError as e:
            raise bad(e.field, e.message) from None
        h = tuple(tuple(float(x) for x in row) for row in cal.image_to_ground)
    for flag in ("loop", "realtime"):
        if not isinstance(c.get(flag, False), bool):
            raise bad(flag, "must be true or false")
    try:
        url = _check_url("url", url, base_dir)
    except EngineConfigError as e:
        raise bad("url", str(e).partition(": ")[2]) from None
    return CameraSettings(
        camera_id=cid,
        url=url,
        analyze_fps=analyze_fps,
        rtsp_transport=str(transport),
        loop=c.get("loop", False),
        realtime=c.get("realtime", False),
        image_to_ground=h,
        hwaccel=hwaccel,
    )


def _parse_store_block(v: Any, base_dir: Path | None) -> StoreCameras | None:
    """The `cameras_from_store` block (None when absent), checked: where the store is, and the
    engine settings its cameras get (their defaults checked as a camera's would be)."""
    if v is None:
        return None
    where = "cameras_from_store"
    if not isinstance(v, dict):
        raise EngineConfigError(f"{where}: must be a mapping (data_dir or url, defaults)")
    extra = set(v) - {"data_dir", "url", "defaults"}
    if extra:
        raise EngineConfigError(f"{where}.{sorted(map(str, extra))[0]}: unknown field")
    url, data_dir = v.get("url"), v.get("data_dir")
    if url is not None and (not isinstance(url, str) or "://" not in url):
        raise EngineConfigError(
            f"{where}.url: must be a database URL (sqlite:///..., postgresql+psycopg://...)"
        )
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
        raise EngineConfigError(f"{where}.data_dir: must be a folder path")
    if url is None and data_dir is None:
        raise EngineConfigError(f"{where}: give data_dir or url (the store's database)")
    folder = None if data_dir is None else Path(data_dir)
    if folder is not None and base_dir is not None and not folder.is_absolute():
        folder = base_dir / folder
    defaults = v.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise EngineConfigError(f"{where}.defaults: must be a mapping")
    extra = set(defaults) - STORE_DEFAULT_KEYS
    if extra:
        allowed = ", ".join(sorted(STORE_DEFAULT_KEYS))
        raise EngineConfigError(
            f"{where}.defaults.{sorted(map(str, extra))[0]}: unknown field (allowed: {allowed})"
        )

    def bad(key: str, problem: str) -> EngineConfigError:
        return EngineConfigError(f"{where}.defaults.{key}: {problem}")

    _parse_camera({**defaults, "id": "defaults", "url": "rtsp://defaults/"}, bad, None)
    return StoreCameras(data_dir=folder, url=url, defaults=dict(defaults))


def open_store(block: StoreCameras) -> Store:
    """The store of a `cameras_from_store` block (Store.open: url, else $SMARTCITY_DB_URL, else
    SQLite in data_dir); EngineConfigError, without the database password, when it cannot be."""
    from smartcity.store import Store

    try:
        return Store.open(block.url, data_dir=block.data_dir)
    except Exception as e:  # noqa: BLE001 - any failure of the database is reported as such
        from smartcity.store.engine import store_problem

        raise EngineConfigError(
            f"cameras_from_store: cannot open the store ({block.describe()}): "
            f"{store_problem(e, block.url)}"
        ) from None


def read_store_cameras(
    block: StoreCameras, store: Store, skip: set[str], base_dir: Path | None = None
) -> tuple[list[CameraSettings], list[str]]:
    """The enabled cameras of the store (but those whose id is in `skip`: the file's), as engine
    settings: the block's defaults, the store camera's url and its geometry.calibration. A camera
    that does not validate is left out and named in the second list (`store camera 'x': url:
    ...`). EngineConfigError when the store cannot be read."""
    try:
        records = store.cameras.list(enabled=True)
    except Exception as e:  # noqa: BLE001 - any failure of the database is reported as such
        from smartcity.store.engine import store_problem

        raise EngineConfigError(
            f"cameras_from_store: cannot read the cameras of the store ({block.describe()}): "
            f"{store_problem(e, block.url)}"
        ) from None
    cameras, problems = [], []
    for rec in records:
        if rec.id in skip or rec.url.startswith(PLACEHOLDER_URLS):
            continue  # the file's camera wins; a placeholder row is no stream of this engine

        def bad(key: str, problem: str, cid: str = rec.id) -> EngineConfigError:
            if key.startswith("calibration"):
                key = "geometry." + key  # where the store keeps it
            return EngineConfigError(f"store camera '{cid}': {key}: {problem}")

        c: dict[str, Any] = {**block.defaults, "id": rec.id, "url": rec.url}
        geometry = rec.geometry if isinstance(rec.geometry, dict) else {}
        if geometry.get("calibration") is not None:
            c["calibration"] = geometry["calibration"]
        try:
            cam = _parse_camera(c, bad, base_dir)
        except EngineConfigError as e:
            problems.append(str(e))
            continue
        cameras.append(replace(cam, from_store=True))
    return cameras, problems


def with_store_cameras(
    settings: EngineSettings,
    store: Store,
    base_dir: Path | None = None,
    problems: list[str] | None = None,
) -> EngineSettings:
    """`settings` (the file's) with the store's enabled cameras after the file's; a store camera
    with the id of one of the file's is left out (the file wins), one that does not validate is
    left out, logged and added to `problems`."""
    assert settings.cameras_from_store is not None
    mine = {c.camera_id for c in settings.cameras if not c.from_store}
    extra, skipped = read_store_cameras(settings.cameras_from_store, store, mine, base_dir)
    for problem in skipped:
        log.error("%s (camera left out)", problem)
    if problems is not None:
        problems.extend(skipped)
    own = tuple(c for c in settings.cameras if not c.from_store)
    return replace(settings, cameras=own + tuple(extra))


def parse_engine_config(data: Any, base_dir: Path | None = None) -> EngineSettings:
    """Checks a parsed YAML/JSON document; EngineConfigError names the first bad field, and for a
    camera its index and id: `cameras[1].url (camera 'gate-2'): scheme 'ftp' is not supported`."""
    if not isinstance(data, dict):
        raise EngineConfigError("the engine configuration must be a mapping")
    unknown = set(data) - {
        "model",
        "models_root",
        "cameras",
        "max_batch",
        "max_wait_ms",
        "health_interval_s",
        "heap_trim_interval_s",
        "inference_threads",
        "tracking",
        "backend",
        "engine_cache",
        "cameras_from_store",
        "hwaccel",
        "hw_device",
    }
    if unknown:
        raise EngineConfigError(f"{sorted(unknown)[0]}: unknown field")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise EngineConfigError("model: must name a model folder under models_root")
    root = Path(str(data.get("models_root", "models")))
    if base_dir is not None and not root.is_absolute():
        root = base_dir / root
    if Path(model).name != model or not (root / model / CARD_FILE).is_file():
        raise EngineConfigError(
            f"model: no model '{model}' under models_root {root} (no {root / model / CARD_FILE})"
        )
    store_block = _parse_store_block(data.get("cameras_from_store"), base_dir)
    cams = data.get("cameras")
    if store_block is not None and cams is None:
        cams = []  # every camera may come from the store
    if not isinstance(cams, list) or (not cams and store_block is None):
        raise EngineConfigError("cameras: must be a non-empty list")
    cameras = []
    seen: set[str] = set()
    for i, c in enumerate(cams):
        if not isinstance(c, dict):
            raise EngineConfigError(f"cameras[{i}]: must be a mapping")
        cid = c.get("id")

        def bad(key: str, problem: str, i: int = i, cid: object = cid) -> EngineConfigError:
            named = f" (camera '{cid}')" if isinstance(cid, str) and cid else ""
            return EngineConfigError(f"cameras[{i}].{key}{named}: {problem}")

        extra = set(c) - _CAMERA_KEYS
        if extra:
            raise bad(sorted(extra)[0], "unknown field")
        if isinstance(cid, str) and cid in seen:
            raise bad("id", "appears twice")
        cam = _parse_camera(c, bad, base_dir)
        seen.add(cam.camera_id)
        cameras.append(cam)
    tracking = data.get("tracking", {}) or {}
    if not isinstance(tracking, dict) or set(tracking) - _TRACKING_KEYS:
        bad_keys = sorted(set(tracking) - _TRACKING_KEYS) if isinstance(tracking, dict) else []
        raise EngineConfigError(
            f"tracking.{bad_keys[0]}: unknown field" if bad_keys else "tracking: must be a mapping"
        )
    tracking = dict(tracking)
    for key, v in tracking.items():
        if key in _TRACKING_CLASS_LISTS:
            if not isinstance(v, list) or any(c not in APPLIANCE_CLASSES for c in v):
                raise EngineConfigError(
                    f"tracking.{key}: must be a list of {', '.join(APPLIANCE_CLASSES)}, got {v!r}"
                )
            tracking[key] = [APPLIANCE_CLASSES.index(c) for c in v]
            continue
        if key in _TRACKING_STRS:
            if not isinstance(v, str):
                raise EngineConfigError(f"tracking.{key}: must be a string, got {v!r}")
            continue
        if isinstance(v, bool) or not isinstance(v, int if key in _TRACKING_INTS else int | float):
            kind = "an integer" if key in _TRACKING_INTS else "a number"
            raise EngineConfigError(f"tracking.{key}: must be {kind}, got {v!r}")
    try:
        ByteTracker(**tracking)  # the core's own range checks, before anything starts
    except ValueError as e:
        raise EngineConfigError(f"tracking: {e}") from None
    backend = data.get("backend", "auto")
    if backend not in CHOICES:
        raise EngineConfigError(f"backend: must be one of {', '.join(CHOICES)}, got {backend!r}")
    hwaccel = data.get("hwaccel", "auto")
    if hwaccel not in HWACCEL_CHOICES:
        raise EngineConfigError(
            f"hwaccel: must be one of {', '.join(HWACCEL_CHOICES)}, got {hwaccel!r}"
        )
    cache = data.get("engine_cache")
    if cache is not None and (not isinstance(cache, str) or not cache):
        raise EngineConfigError("engine_cache: must be a folder path")
    cache_dir = None if cache is None else Path(cache)
    if cache_dir is not None and base_dir is not None and not cache_dir.is_absolute():
        cache_dir = base_dir / cache_dir
    return EngineSettings(
        model=model,
        cameras=tuple(cameras),
        models_root=root,
        max_batch=int(_number("max_batch", data.get("max_batch", 8), 1, 256)),
        max_wait_ms=int(_number("max_wait_ms", data.get("max_wait_ms", 50), 0, 10000)),
        health_interval_s=_number("health_interval_s", data.get("health_interval_s", 1.0), 0.1, 60),
        heap_trim_interval_s=_number(
            "heap_trim_interval_s", data.get("heap_trim_interval_s", 10.0), 0, 3600
        ),
        inference_threads=int(
            _number("inference_threads", data.get("inference_threads", 1), 1, 64)
        ),
        tracking=dict(tracking),
        backend=backend,
        engine_cache=cache_dir,
        cameras_from_store=store_block,
        hwaccel=hwaccel,
        hw_device=int(_number("hw_device", data.get("hw_device", 0), 0, 63)),
    )


def read_engine_file(path: str | Path) -> EngineSettings:
    """The file alone, checked (parse_engine_config); the store is not read."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise EngineConfigError(f"{path}: cannot read the engine configuration: {e}") from e
    return parse_engine_config(data, base_dir=path.parent)


def load_engine_config(path: str | Path, problems: list[str] | None = None) -> EngineSettings:
    """The file, checked, and with `cameras_from_store` the store's enabled cameras added after
    the file's (with_store_cameras). EngineConfigError for a bad file or a store that cannot be
    read; a store camera that does not validate is only left out (logged, in `problems`)."""
    settings = read_engine_file(path)
    block = settings.cameras_from_store
    if block is None:
        return settings
    with open_store(block) as store:
        return with_store_cameras(settings, store, Path(path).parent, problems)


@dataclass
class EngineCounters:
    batches: int = 0
    frames: int = 0
    tracks_published: int = 0
    tracks_dropped: int = 0
    health_published: int = 0
    stale_frames: int = 0  # frames of a camera removed or restarted since, not published
    reloads: int = 0  # reloads applied (a new file read and compared, changed or not)
    reloads_refused: int = 0  # new files refused: nothing changed
    config_published: int = 0  # config.changed messages sent ("applied", "refused: ...")
    heap_trims: int = 0  # malloc_trim calls (heap_trim_interval_s)
    heap_trim_ms: float = 0.0  # their total time


def _run_dir_endpoint(publisher_endpoint: str, name: str) -> str | None:
    """ipc://<run dir>/<name> next to the run dir's bus-in; None for other endpoints."""
    prefix, suffix = "ipc://", "/" + bus_defaults.XSUB_NAME
    if not (publisher_endpoint.startswith(prefix) and publisher_endpoint.endswith(suffix)):
        return None
    run_dir = publisher_endpoint[len(prefix) : -len(suffix)]
    return f"{prefix}{run_dir}/{name}"


def evidence_endpoint_for(publisher_endpoint: str) -> str | None:
    """ipc://<run dir>/evidence next to the run dir's bus-in; None for other endpoints."""
    return _run_dir_endpoint(publisher_endpoint, bus_defaults.EVIDENCE_NAME)


def control_endpoint_for(publisher_endpoint: str) -> str | None:
    """ipc://<run dir>/bus-out (where config.changed is read) next to the run dir's bus-in."""
    return _run_dir_endpoint(publisher_endpoint, bus_defaults.XPUB_NAME)


class Engine:
    """Engine(settings, publisher_endpoint).run(stop) until stop is set (or `seconds` pass).

    evidence_endpoint: where the evidence server binds; "auto" (the default) puts it next to the
    publisher endpoint's run dir (ipc://<run dir>/evidence), None runs none.

    Live reconfiguration (docs/events.md): `request_reload(reason)` from any thread (or a signal
    handler), or a `config.changed` message on the bus (read from control_endpoint: "auto" is the
    run dir's bus-out, None reads none), makes the loop re-read `config_path` between batches
    and apply what changed camera by camera (`reload`); `apply(settings)` does the same with
    settings at hand. Nothing else may call the pipeline's stream methods while run() runs.
    """

    evidence: EvidenceServer | None

    def __init__(
        self,
        settings: EngineSettings,
        publisher_endpoint: str,
        evidence_endpoint: str | None = "auto",
        *,
        config_path: str | Path | None = None,
        control_endpoint: str | None = "auto",
        requests: ReloadRequests | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = None if config_path is None else Path(config_path)
        self.requests = requests if requests is not None else ReloadRequests()
        self.evidence = None
        self._control: Any = None  # a smartcity.bus.Subscriber on config.changed
        self.reloads: list[ReloadResult] = []
        self._config_seq = 0
        self._store: Store | None = None  # cameras_from_store's, opened at the first reload
        self._store_block: StoreCameras | None = None  # the block it was opened for
        # Wall-clock time (ns) at which the engine last stopped a camera's stream (removed or
        # restarted): its frames captured before then are not tracked nor published.
        self._stopped_ns: dict[str, int] = {}
        try:
            self.card = load_card(settings.models_root / settings.model)
        except CardError as e:
            raise EngineConfigError(f"model: {e}") from e
        self.detector = create_detector(
            self.card,
            settings.backend,
            intra_op_threads=settings.inference_threads,
            max_batch=min(settings.max_batch, 256),
            cache_dir=settings.engine_cache,
        )
        # A GPU detector that reads the core's tensor as it is gets device batches: NVDEC's
        # frames are converted into device memory and stay there up to the model.
        self.pipeline = _core.Pipeline(
            **self.card.pipeline_options(),
            max_batch=min(settings.max_batch, 256),
            batch_device=batch_device_of(self.detector),
        )
        tracking = {**self.card.tracking_options(), **settings.tracking}
        if tracking:
            self.pipeline.configure_tracking(**tracking)
        self.publisher = _core.Publisher(publisher_endpoint)
        self.counters = EngineCounters()
        self._infer_ms = 0.0
        self._track_ms = 0.0
        try:
            started = []
            for i, cam in enumerate(settings.cameras):
                try:
                    self._start_camera(cam)
                except ValueError as e:
                    if not cam.from_store:
                        raise EngineConfigError(f"cameras[{i}] ('{cam.camera_id}'): {e}") from e
                    # The store is edited while the appliance runs: its camera is left out (the
                    # next reload tries it again), the file's cameras still start.
                    log.error("store camera %s could not be started: %s", cam.camera_id, e)
                    continue
                started.append(cam)
            self.settings = replace(settings, cameras=tuple(started))
            if evidence_endpoint == "auto":
                evidence_endpoint = evidence_endpoint_for(publisher_endpoint)
            if evidence_endpoint is not None:
                tmp = None
                if evidence_endpoint.startswith("ipc://"):
                    tmp = str(Path(evidence_endpoint[len("ipc://") :]).parent)  # the 0700 run dir
                self.evidence = EvidenceServer(self.pipeline, evidence_endpoint, tmp_dir=tmp)
                self.evidence.start()
            if control_endpoint == "auto":
                control_endpoint = control_endpoint_for(publisher_endpoint)
            if control_endpoint is not None:
                from smartcity.bus import Subscriber
                from smartcity.bus.events import CONFIG_CHANGED

                self._control = Subscriber(control_endpoint, [CONFIG_CHANGED])
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ cameras

    def _start_camera(self, cam: CameraSettings) -> None:
        """add_stream and its calibration; ValueError (nothing left running) when refused."""
        self.pipeline.add_stream(
            _core.StreamConfig(
                camera_id=cam.camera_id,
                url=cam.url,
                analyze_fps=cam.analyze_fps,
                rtsp_transport=cam.rtsp_transport,
                loop=cam.loop,
                realtime=cam.realtime,
                hwaccel=cam.hwaccel or self.settings.hwaccel,
                hw_device=self.settings.hw_device,
            )
        )
        if cam.image_to_ground is not None:
            try:
                self.pipeline.set_calibration(cam.camera_id, np.asarray(cam.image_to_ground))
            except ValueError:
                self._stop_camera(cam.camera_id)
                raise

    def _stop_camera(self, camera_id: str) -> None:
        """remove_stream: the stream stops, its tracker and calibration go with it."""
        self.pipeline.remove_stream(camera_id)
        # After the stream's thread has ended: every frame it made is older than this.
        self._stopped_ns[camera_id] = time.time_ns()

    # ------------------------------------------------------------ live reconfiguration

    def request_reload(self, reason: str = "request") -> None:
        """Ask the loop to re-read config_path between batches; safe from any thread and from a
        signal handler."""
        self.requests.request(reason)

    def _poll_control(self) -> None:
        """config.changed messages waiting on the bus become reload requests (not our own)."""
        if self._control is None:
            return
        while (ev := self._control.recv(timeout_s=0)) is not None:
            reason = getattr(ev, "reason", "")
            if reason == APPLIED or reason.startswith(REFUSED + ":"):
                continue  # a report of a reload (ours, or another engine's), not a request
            cams = ",".join(getattr(ev, "cams", ()))
            self.requests.request(f"config.changed ({reason or 'no reason'}; cams {cams or '-'})")

    def reload(self, reasons: tuple[str, ...] = ("request",)) -> ReloadResult:
        """Re-read config_path, validate all of it, then apply what changed. A file that does
        not validate changes nothing: the result's `refused` says why (field named)."""
        why = "; ".join(reasons)
        if self.config_path is None:
            result = ReloadResult(reasons, refused="the engine was started without a file")
            log.error("reload (%s) refused: %s", why, result.refused)
        else:
            problems: list[str] = []  # store cameras left out (they do not validate)
            try:
                new = self._load(self.config_path, problems)
            except EngineConfigError as e:
                result = ReloadResult(reasons, refused=str(e))
                log.error("reload (%s) refused, nothing changed: %s", why, e)
            else:
                result = self.apply(new, reasons)
                result.errors[:0] = problems
                return result
        self.counters.reloads_refused += 1
        self.reloads.append(result)
        self._publish_config_changed((), f"{REFUSED}: {result.refused}"[:1000])
        return result

    def _load(self, path: Path, problems: list[str]) -> EngineSettings:
        """load_engine_config, through a store kept open from one reload to the next (closed
        when it fails, so that the next reload opens it again, or when the block changes)."""
        settings = read_engine_file(path)
        block = settings.cameras_from_store
        if block != self._store_block:
            self._close_store()
        if block is None:
            return settings
        if self._store is None:
            self._store = open_store(block)
            self._store_block = block
        try:
            return with_store_cameras(settings, self._store, path.parent, problems)
        except EngineConfigError:
            self._close_store()
            raise

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store, self._store_block = None, None

    def apply(self, new: EngineSettings, reasons: tuple[str, ...] = ("apply",)) -> ReloadResult:
        """Turn the running configuration into `new` (already validated), camera by camera, on
        the loop thread; then config.changed (reason "applied") names the cameras changed."""
        diff = diff_settings(self.settings, new)
        result = ReloadResult(reasons, diff=diff)
        running = {c.camera_id: c for c in self.settings.cameras}
        for cid in diff.removed:
            self._stop_camera(cid)
            running.pop(cid, None)
            log.info("camera %s removed", cid)
        restarted = {c.camera_id for c in diff.restarted}
        failed: set[str] = set()
        for cam in (*diff.restarted, *diff.added):
            if cam.camera_id in running:
                self._stop_camera(cam.camera_id)
                running.pop(cam.camera_id)
            try:
                self._start_camera(cam)
            except ValueError as e:  # validated already: only the core's own refusals remain
                failed.add(cam.camera_id)
                result.errors.append(f"camera '{cam.camera_id}': {e}")
                log.error("camera %s could not be started: %s", cam.camera_id, e)
                continue
            running[cam.camera_id] = cam
            log.info(
                "camera %s %s%s",
                cam.camera_id,
                "added" if cam in diff.added else "restarted",
                " (from the store)" if cam.from_store else "",
            )
        for cam in diff.recalibrated:
            assert cam.image_to_ground is not None  # a removed calibration restarts the camera
            try:
                self.pipeline.set_calibration(cam.camera_id, np.asarray(cam.image_to_ground))
            except (ValueError, LookupError) as e:
                failed.add(cam.camera_id)
                result.errors.append(f"camera '{cam.camera_id}': {e}")
                log.error("camera %s: calibration refused: %s", cam.camera_id, e)
                continue
            running[cam.camera_id] = cam
            log.info("camera %s calibration changed", cam.camera_id)
        for name in diff.needs_restart:
            log.warning(
                "%s changed: it takes effect when the engine starts again (ignored until then)",
                name,
            )
        # An unchanged camera takes its new settings too (one that moved between the file and
        # the store keeps its stream, but its origin is the new one).
        for cam in new.cameras:
            if cam.camera_id in running and cam.camera_id not in diff.cams:
                running[cam.camera_id] = cam
        order = [c.camera_id for c in new.cameras if c.camera_id in running]
        order += [cid for cid in running if cid not in order]  # kept after a failed change
        keep = {f: getattr(self.settings, f) for f in restart_fields(self.settings)}
        self.settings = replace(new, cameras=tuple(running[cid] for cid in order), **keep)
        # Every camera whose stream or calibration changed: a failed restart still stopped the
        # old stream; a failed add or calibration changed nothing.
        changed = tuple(
            cid for cid in diff.cams if cid in diff.removed or cid in restarted or cid not in failed
        )
        result.applied = changed
        if changed:
            self._publish_config_changed(changed)
        self.counters.reloads += 1
        self.reloads.append(result)
        log.info(
            "reload (%s): %d added, %d removed, %d restarted, %d recalibrated%s",
            "; ".join(reasons),
            len(diff.added),
            len(diff.removed),
            len(diff.restarted),
            len(diff.recalibrated),
            f", needs a restart: {', '.join(diff.needs_restart)}" if diff.needs_restart else "",
        )
        return result

    def _publish_config_changed(self, cams: tuple[str, ...], reason: str = APPLIED) -> None:
        from smartcity.bus.codec import encode
        from smartcity.bus.events import ConfigChangedEvent

        topic, payload = encode(
            ConfigChangedEvent(seq=self._config_seq, t_ns=time.time_ns(), cams=cams, reason=reason)
        )
        self._config_seq += 1
        if self.publisher.publish_raw(topic.decode(), payload):
            self.counters.config_published += 1

    def _take_requests(self) -> None:
        self._poll_control()
        reasons = self.requests.take()
        if reasons:
            self.reload(reasons)

    # ------------------------------------------------------------ the batch loop

    def step(self) -> bool:
        """One batch: detect, track, publish. False when no batch came in time."""
        batch = self.pipeline.next_batch(self.settings.max_batch, self.settings.max_wait_ms)
        if batch is None:
            return False
        with batch:
            t0 = time.perf_counter()
            dets: list[_core.Detections | None] = list(detect(self.detector, batch, self.pipeline))
            t1 = time.perf_counter()
            sizes, frames, pts, t_ns = (
                batch.frame_size,
                batch.frame_numbers,
                batch.pts,
                batch.capture_ns,
            )
            cams = batch.camera_ids
            # A frame of a camera removed or restarted since it was decoded: not tracked, not
            # published (it belongs to a stream that is gone).
            stopped = self._stopped_ns
            live = [cam not in stopped or int(t_ns[i]) > stopped[cam] for i, cam in enumerate(cams)]
            for i, ok in enumerate(live):
                if not ok:
                    dets[i] = None
            tracks = self.pipeline.track(batch, dets)
            t2 = time.perf_counter()
            for i, (cam, t) in enumerate(zip(cams, tracks, strict=True)):
                if not live[i]:
                    self.counters.stale_frames += 1
                    continue
                ok = self.publisher.publish_tracks(
                    cam,
                    int(frames[i]),
                    float(pts[i]),
                    int(t_ns[i]),
                    int(sizes[i, 0]),
                    int(sizes[i, 1]),
                    t.track_id,
                    t.xyxy,
                    t.score,
                    t.class_id,
                    t.ground_xy,
                    t.speed_kmh,
                )
                self.counters.tracks_published += ok
                self.counters.tracks_dropped += not ok
            self.counters.batches += 1
            self.counters.frames += batch.size
            # Per-frame cost of this batch, kept for the health messages.
            self._infer_ms = (t1 - t0) * 1000 / batch.size
            self._track_ms = (t2 - t1) * 1000 / batch.size
        return True

    def publish_health(self) -> None:
        for s in self.pipeline.stats():
            self.publisher.publish_health(
                s["camera_id"], s, infer_ms=self._infer_ms, track_ms=self._track_ms
            )
            self.counters.health_published += 1

    def run(self, stop: threading.Event, seconds: float | None = None) -> EngineCounters:
        """Batches until stop is set (or `seconds` pass); reload requests are applied between
        batches. The batch in hand when stop is set is finished and published."""
        end = None if seconds is None else time.monotonic() + seconds
        next_health = time.monotonic()
        trim_every = self.settings.heap_trim_interval_s
        next_trim = next_health + trim_every
        while not stop.is_set() and (end is None or time.monotonic() < end):
            self._take_requests()
            self.step()
            now = time.monotonic()
            if now >= next_health:
                self.publish_health()
                next_health = max(next_health + self.settings.health_interval_s, now)
            if trim_every > 0 and now >= next_trim:
                self.trim_heap()
                next_trim = time.monotonic() + trim_every
        return self.counters

    def trim_heap(self) -> None:
        """Returns the malloc arenas' free pages to the OS. The streams' packet copies come and
        go in mixed sizes and leave free holes in the arenas that malloc keeps resident: without
        this the engine's RSS grew 2 % in 10 minutes at a constant heap in use (bench/README.md,
        memory.py)."""
        t0 = time.perf_counter()
        _core.trim_heap()
        self.counters.heap_trims += 1
        self.counters.heap_trim_ms += (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        """Stops the evidence server, the streams, then the publisher (which lingers up to
        PUB_LINGER_MS to hand what is queued to the broker). Safe to call twice."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.evidence is not None:
            self.evidence.stop()
        if hasattr(self, "pipeline"):
            self.pipeline.close()
        if hasattr(self, "publisher"):
            self.publisher.close()
        if hasattr(self, "_store"):
            self._close_store()
