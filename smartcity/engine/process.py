"""`smartcity engine`: streams -> batches -> detector -> trackers -> tracks on the bus.

One process runs a camera set: the C++ pipeline decodes and batches, the detector runs on each
batch (ONNX Runtime), the C++ post-processing and the per-camera trackers turn its outputs into
tracks, and the C++ publisher puts `tracks.<camera>` on the bus for every analysed frame and
`health.<camera>` every `health_interval_s`. Python does three things per batch, nothing per
object (DESIGN.md §1). The evidence server (smartcity/engine/evidence.py) answers snapshot and
clip requests on `ipc://<run dir>/evidence` from its own thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from smartcity import _core
from smartcity.bus import defaults as bus_defaults
from smartcity.engine.detectors import OnnxRuntimeDetector, detect
from smartcity.engine.evidence import EvidenceServer
from smartcity.engine.models import load_card


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


@dataclass(frozen=True)
class EngineSettings:
    model: str
    cameras: tuple[CameraSettings, ...]
    models_root: Path = Path("models")
    max_batch: int = 8
    max_wait_ms: int = 50
    health_interval_s: float = 1.0
    inference_threads: int = 1
    tracking: dict[str, Any] = field(default_factory=dict)


_TRACKING_KEYS = {"track_thresh", "match_thresh", "track_buffer", "speed_window_s"}


def _number(where: str, v: Any, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise EngineConfigError(f"{where}: must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def parse_engine_config(data: Any, base_dir: Path | None = None) -> EngineSettings:
    """Checks a parsed YAML/JSON document; EngineConfigError names the first bad field."""
    if not isinstance(data, dict):
        raise EngineConfigError("the engine configuration must be a mapping")
    unknown = set(data) - {
        "model",
        "models_root",
        "cameras",
        "max_batch",
        "max_wait_ms",
        "health_interval_s",
        "inference_threads",
        "tracking",
    }
    if unknown:
        raise EngineConfigError(f"{sorted(unknown)[0]}: unknown field")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise EngineConfigError("model: must name a model folder under models_root")
    root = Path(str(data.get("models_root", "models")))
    if base_dir is not None and not root.is_absolute():
        root = base_dir / root
    cams = data.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise EngineConfigError("cameras: must be a non-empty list")
    cameras = []
    seen: set[str] = set()
    for i, c in enumerate(cams):
        where = f"cameras[{i}]"
        if not isinstance(c, dict):
            raise EngineConfigError(f"{where}: must be a mapping")
        extra = set(c) - {
            "id",
            "url",
            "analyze_fps",
            "rtsp_transport",
            "loop",
            "realtime",
            "image_to_ground",
        }
        if extra:
            raise EngineConfigError(f"{where}.{sorted(extra)[0]}: unknown field")
        cid, url = c.get("id"), c.get("url")
        if not isinstance(cid, str) or not cid:
            raise EngineConfigError(f"{where}.id: must be a non-empty string")
        if cid in seen:
            raise EngineConfigError(f"{where}.id: '{cid}' appears twice")
        seen.add(cid)
        if not isinstance(url, str) or not url:
            raise EngineConfigError(f"{where}.url: must be a non-empty string")
        if base_dir is not None and "://" not in url and not Path(url).is_absolute():
            url = str(base_dir / url)  # a file named relative to the configuration file
        h = c.get("image_to_ground")
        if h is not None:
            arr = np.asarray(h, dtype=object)
            if arr.shape != (3, 3) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in arr.ravel()
            ):
                raise EngineConfigError(f"{where}.image_to_ground: must be a 3x3 list of numbers")
            h = tuple(tuple(float(x) for x in row) for row in h)
        for flag in ("loop", "realtime"):
            if not isinstance(c.get(flag, False), bool):
                raise EngineConfigError(f"{where}.{flag}: must be true or false")
        cameras.append(
            CameraSettings(
                camera_id=cid,
                url=url,
                analyze_fps=_number(f"{where}.analyze_fps", c.get("analyze_fps", 5.0), 0, 1000),
                rtsp_transport=str(c.get("rtsp_transport", "tcp")),
                loop=c.get("loop", False),
                realtime=c.get("realtime", False),
                image_to_ground=h,
            )
        )
    tracking = data.get("tracking", {}) or {}
    if not isinstance(tracking, dict) or set(tracking) - _TRACKING_KEYS:
        bad = sorted(set(tracking) - _TRACKING_KEYS) if isinstance(tracking, dict) else []
        raise EngineConfigError(
            f"tracking.{bad[0]}: unknown field" if bad else "tracking: must be a mapping"
        )
    return EngineSettings(
        model=model,
        cameras=tuple(cameras),
        models_root=root,
        max_batch=int(_number("max_batch", data.get("max_batch", 8), 1, 256)),
        max_wait_ms=int(_number("max_wait_ms", data.get("max_wait_ms", 50), 0, 10000)),
        health_interval_s=_number("health_interval_s", data.get("health_interval_s", 1.0), 0.1, 60),
        inference_threads=int(
            _number("inference_threads", data.get("inference_threads", 1), 1, 64)
        ),
        tracking=dict(tracking),
    )


def load_engine_config(path: str | Path) -> EngineSettings:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise EngineConfigError(f"{path}: cannot read the engine configuration: {e}") from e
    return parse_engine_config(data, base_dir=path.parent)


@dataclass
class EngineCounters:
    batches: int = 0
    frames: int = 0
    tracks_published: int = 0
    tracks_dropped: int = 0
    health_published: int = 0


def evidence_endpoint_for(publisher_endpoint: str) -> str | None:
    """ipc://<run dir>/evidence next to the run dir's bus-in; None for other endpoints."""
    prefix, suffix = "ipc://", "/" + bus_defaults.XSUB_NAME
    if not (publisher_endpoint.startswith(prefix) and publisher_endpoint.endswith(suffix)):
        return None
    run_dir = publisher_endpoint[len(prefix) : -len(suffix)]
    return f"{prefix}{run_dir}/{bus_defaults.EVIDENCE_NAME}"


class Engine:
    """Engine(settings, publisher_endpoint).run(stop) until stop is set (or `seconds` pass).

    evidence_endpoint: where the evidence server binds; "auto" (the default) puts it next to the
    publisher endpoint's run dir (ipc://<run dir>/evidence), None runs none."""

    evidence: EvidenceServer | None

    def __init__(
        self,
        settings: EngineSettings,
        publisher_endpoint: str,
        evidence_endpoint: str | None = "auto",
    ) -> None:
        self.settings = settings
        self.evidence = None
        self.card = load_card(settings.models_root / settings.model)
        self.detector = OnnxRuntimeDetector(self.card, intra_op_threads=settings.inference_threads)
        self.pipeline = _core.Pipeline(
            **self.card.pipeline_options(),
            max_batch=min(settings.max_batch, 256),
        )
        if settings.tracking:
            self.pipeline.configure_tracking(**settings.tracking)
        self.publisher = _core.Publisher(publisher_endpoint)
        self.counters = EngineCounters()
        self._infer_ms = 0.0
        self._track_ms = 0.0
        try:
            for i, cam in enumerate(settings.cameras):
                try:
                    self.pipeline.add_stream(
                        _core.StreamConfig(
                            camera_id=cam.camera_id,
                            url=cam.url,
                            analyze_fps=cam.analyze_fps,
                            rtsp_transport=cam.rtsp_transport,
                            loop=cam.loop,
                            realtime=cam.realtime,
                        )
                    )
                except ValueError as e:
                    raise EngineConfigError(f"cameras[{i}]: {e}") from e
                if cam.image_to_ground is not None:
                    self.pipeline.set_calibration(cam.camera_id, np.asarray(cam.image_to_ground))
            if evidence_endpoint == "auto":
                evidence_endpoint = evidence_endpoint_for(publisher_endpoint)
            if evidence_endpoint is not None:
                tmp = None
                if evidence_endpoint.startswith("ipc://"):
                    tmp = str(Path(evidence_endpoint[len("ipc://") :]).parent)  # the 0700 run dir
                self.evidence = EvidenceServer(self.pipeline, evidence_endpoint, tmp_dir=tmp)
                self.evidence.start()
        except BaseException:
            self.close()
            raise

    def step(self) -> bool:
        """One batch: detect, track, publish. False when no batch came in time."""
        batch = self.pipeline.next_batch(self.settings.max_batch, self.settings.max_wait_ms)
        if batch is None:
            return False
        with batch:
            t0 = time.perf_counter()
            dets = detect(self.detector, batch)
            t1 = time.perf_counter()
            tracks = self.pipeline.track(batch, dets)
            t2 = time.perf_counter()
            sizes, frames, pts, t_ns = (
                batch.frame_size,
                batch.frame_numbers,
                batch.pts,
                batch.capture_ns,
            )
            for i, (cam, t) in enumerate(zip(batch.camera_ids, tracks, strict=True)):
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
        end = None if seconds is None else time.monotonic() + seconds
        next_health = time.monotonic()
        while not stop.is_set() and (end is None or time.monotonic() < end):
            self.step()
            if time.monotonic() >= next_health:
                self.publish_health()
                next_health += self.settings.health_interval_s
        return self.counters

    def close(self) -> None:
        if self.evidence is not None:
            self.evidence.stop()
        self.pipeline.close()
        self.publisher.close()
