"""The rules on rendered scenes with known truth: the "oracle" path of the accuracy figures.

A library scene is prepared at a small resolution and drawn frame by frame (no video encoding);
each frame's truth boxes (the visible parts) become detections with score 0.9 and go through
`ByteTracker` with the scene's image -> ground homography and the frame times; the tracks become
`FrameTracks`; a `RuleSet` built from ``geometry_from_scenario`` (thresholds from the scene's
truth parameters) runs on them. Tracks are matched to truth objects by IoU, so each finding
names truth ids, and `score` compares the findings with the scene's expected incidents:
a finding counts when it falls within ``start_s - tolerance_s .. end_s + tolerance_s`` of an
expected incident of its type and names one of its objects.

The full pipeline: `run_scene(..., detector=...)` renders the scene to H.264 MP4
(`rendered_video`) and runs it the appliance's way (`pipeline_frames`: `smartcity._core.Pipeline`
with the model card's options, `detect()`, the pipeline's own tracker with the scene's
calibration); the same `judge` (RuleSet, matching to truth) and `score` follow. `run_clip` does
the same for a video without truth (tests/media/vtest-h264.mp4 with `VTEST_GEOMETRY`, assumed).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.incidents.geometry import geometry_from_scenario
from smartcity.incidents.rules.base import frame_view
from smartcity.incidents.rules.line_crossing import Crossing
from smartcity.incidents.rules.ruleset import RuleSet
from smartcity.incidents.types import Finding, FrameTracks

if TYPE_CHECKING:
    from smartcity import _core
    from smartcity.engine.detectors.base import Detector

#: rule types whose findings must never appear on the quiet scenes
VEHICLE_RULES = ("wrong_way", "stopped_vehicle", "speeding", "congestion", "crash")
#: incident types scored for precision and recall (counting is scored separately)
SCORED = ("wrong_way", "stopped_vehicle", "speeding", "congestion", "crowd", "loitering",
          "pedestrian_on_carriageway", "crash")  # fmt: skip
MIN_BOX_PX = 4.0  # an oracle detection needs a box at least this wide and high
T0_NS = 1_790_000_000 * 10**9  # wall clock of frame 0 (any fixed value)
MODELS = Path(__file__).resolve().parents[3] / "models"


@dataclass
class SceneTruth:
    """A rendered scene without pixels: its header (scenario.json) and per-frame objects."""

    head: dict[str, Any]
    frames: list[list[dict[str, Any]]]


_cache: dict[tuple[str, float | None, str, int | None], SceneTruth] = {}


def render_truth(
    name: str,
    seconds: float | None = None,
    resolution: str = "640x360",
    seed: int | None = None,
    cache_dir: str | Path | None = None,
) -> SceneTruth:
    """Draws a library scene and keeps its truth, not its pixels; cached per process, and in
    ``cache_dir`` when given (keyed by the scenario and the renderer's source)."""
    from smartcity import scenarios as S
    from smartcity.scenarios.render import scenario_record

    key = (name, seconds, resolution, seed)
    if key in _cache:
        return _cache[key]
    sc = S.load(name)
    path = None
    if cache_dir is not None:
        digest = _render_hash(sc, seconds, resolution, seed)
        path = Path(cache_dir) / f"{name}-{resolution}-{digest}.json.gz"
        if path.is_file():
            with gzip.open(path, "rt") as fh:
                d = json.load(fh)
            _cache[key] = SceneTruth(d["head"], d["frames"])
            return _cache[key]
    prep = S.prepare(sc, seconds=seconds, seed=seed, resolution=resolution)
    head = json.loads(json.dumps(scenario_record(prep), default=float))
    r = S.Renderer(prep)
    frames = [r.render(f)[1]["objects"] for f in range(r.frames)]
    _cache[key] = SceneTruth(head, frames)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wt") as fh:
            json.dump({"head": head, "frames": frames}, fh, separators=(",", ":"))
        tmp.replace(path)
    return _cache[key]


def _render_hash(sc: Any, seconds: float | None, resolution: str, seed: int | None) -> str:
    """Cache key of a render: the scenario, the arguments and the renderer's own source."""
    from smartcity import scenarios as S

    h = hashlib.sha256(repr((sc, seconds, resolution, seed)).encode())
    for src in sorted(Path(S.__file__).parent.glob("*.py")):  # the renderer's own version
        h.update(src.read_bytes())
    return h.hexdigest()[:16]


@contextmanager
def rendered_video(
    name: str,
    seconds: float | None = None,
    resolution: str = "640x360",
    seed: int | None = None,
    cache_dir: str | Path | None = None,
) -> Iterator[tuple[Path, SceneTruth]]:
    """A library scene rendered to H.264 MP4 (``smartcity.scenarios.render_to_dir``) with its
    truth: kept in ``cache_dir`` (a folder per scene keyed like `render_truth`'s files), or in a
    temporary folder removed on leaving the block."""
    from smartcity import scenarios as S

    sc = S.load(name)
    tmp = None
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix=f"smartcity-{name}-")
        folder = Path(tmp) / "render"
    else:
        key = _render_hash(sc, seconds, resolution, seed)
        folder = Path(cache_dir) / f"{name}-{resolution}-{key}.video"
    try:
        if not (folder / f"{name}.scenario.json").is_file():  # written last: the render is whole
            part = folder.with_name(folder.name + ".part")
            shutil.rmtree(part, ignore_errors=True)
            S.render_to_dir(sc, part, seconds=seconds, seed=seed, resolution=resolution)
            shutil.rmtree(folder, ignore_errors=True)
            part.replace(folder)
        head = json.loads((folder / f"{name}.scenario.json").read_text())
        frames = [
            json.loads(line)["objects"]
            for line in (folder / f"{name}.truth.jsonl").read_text().splitlines()
        ]
        yield folder / f"{name}.mp4", SceneTruth(head, frames)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def load_detector(detector: Detector | str | Path, intra_op_threads: int = 1) -> Detector:
    """A `Detector` as it is, or an `OnnxRuntimeDetector` (CPU) for a model folder or the name
    of one under the repository's models/ (its card says input size, format and classes)."""
    if not isinstance(detector, str | Path):
        return detector
    from smartcity.engine.detectors import OnnxRuntimeDetector
    from smartcity.engine.models import load_card

    folder = Path(detector)
    if not folder.is_dir():
        folder = MODELS / str(detector)
    return OnnxRuntimeDetector(load_card(folder), intra_op_threads=intra_op_threads, device="cpu")


def pipeline_frames(
    video: str | Path,
    detector: Detector,
    cam: str,
    image_to_ground: np.ndarray | None = None,
    analyze_fps: float | None = None,
    tracking: Mapping[str, Any] | None = None,
    on_detections: Callable[[_core.Batch, list[_core.Detections]], None] | None = None,
) -> list[FrameTracks]:
    """A video through the appliance's own path, as `smartcity engine` runs it: a
    `smartcity._core.Pipeline` with the card's options (decode, sample at ``analyze_fps`` or
    every frame, letterbox / stretch), ``block_when_busy`` so that no frame is dropped,
    ``detect()`` (the model, C++ decode and NMS) and the camera's tracker inside the pipeline
    (``configure_tracking`` with the card's box bias, ``set_calibration``, ``track``). One
    FrameTracks per analysed frame, in stream order: ``frame`` the batch's frame number (decoded
    frames from 0, the truth's frame index for a rendered MP4), ``pts`` the batch's, ``t_ns``
    T0_NS + pts. ``on_detections(batch, detections)`` sees each batch's raw detections."""
    from smartcity import _core
    from smartcity.engine.detectors import detect

    card = detector.card
    out: list[FrameTracks] = []
    p = _core.Pipeline(**card.pipeline_options(), max_batch=card.max_batch)
    try:
        p.configure_tracking(
            **{"speed_window_s": 1.0, **card.tracking_options(), **(tracking or {})}
        )
        p.add_stream(
            _core.StreamConfig(
                camera_id=cam, url=str(video), analyze_fps=analyze_fps or 0.0,
                block_when_busy=True,
            )
        )  # fmt: skip
        if image_to_ground is not None:
            H = np.asarray(image_to_ground, np.float64)
            p.set_calibration(cam, H / H[2, 2])
        while True:
            batch = p.next_batch(card.max_batch, 200)
            if batch is None:
                if p.stream_stats(cam)["state"] not in ("stopped", "failed"):
                    continue
                batch = p.next_batch(card.max_batch, 0)
                if batch is None:
                    break
            with batch:
                dets = detect(detector, batch)
                if on_detections is not None:
                    on_detections(batch, dets)
                tracks = p.track(batch, dets)
                sizes, fns, pts = batch.frame_size, batch.frame_numbers, batch.pts
                for i, tr in enumerate(tracks):
                    t = float(pts[i])
                    out.append(
                        FrameTracks(
                            cam=cam, frame=int(fns[i]), pts=t, t_ns=T0_NS + int(round(t * 1e9)),
                            w=int(sizes[i, 0]), h=int(sizes[i, 1]),
                            track_id=np.array(tr.track_id), class_id=np.array(tr.class_id),
                            score=np.array(tr.score), xyxy=np.array(tr.xyxy),
                            ground_xy=np.array(tr.ground_xy), speed_kmh=np.array(tr.speed_kmh),
                        )
                    )  # fmt: skip
        st = p.stream_stats(cam)
        if st["state"] == "failed" or st["frames_dropped"]:
            raise RuntimeError(f"{video}: stream {st['state']} ({st['last_error']}), "
                               f"{st['frames_dropped']} frames dropped")  # fmt: skip
    finally:
        p.close()
    return out


def rules_config_for(head: Mapping[str, Any]) -> dict[str, Any]:
    """Rule settings equal to the thresholds the scene's expected incidents were computed with."""
    p = head["truth_params"]
    return {
        "wrong_way": {"min_distance_m": p["wrong_way_min_m"]},
        "stopped_vehicle": {"min_s": p["stopped_min_s"]},
        "speeding": {"margin_kmh": p["speeding_margin_kmh"], "min_s": p["speeding_min_s"]},
        "congestion": {"min_vehicles": p["congestion_min_vehicles"],
                       "max_kmh": p["congestion_max_kmh"], "raise_s": p["congestion_min_s"]},
        "crowd": {"min_people": p["crowd_min_people"], "radius_m": p["crowd_radius_m"],
                  "min_s": p["crowd_min_s"],
                  "clear_people": max(2, p["crowd_min_people"] - 2)},
        "loitering": {"radius_m": p["loiter_radius_m"], "min_s": p["loiter_min_s"]},
        "pedestrian_on_carriageway": {"min_s": p["on_carriageway_min_s"]},
    }  # fmt: skip


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0))


@dataclass
class SceneRun:
    """What the rules said on one scene, with track ids mapped to truth ids."""

    name: str
    head: dict[str, Any]
    findings: list[Finding]
    track_to_truth: dict[int, int]
    line_counts: dict[str, dict[str, dict[str, int]]]
    speed_errors: list[float] = field(default_factory=list)  # |measured - scripted| km/h
    frames: int = 0
    seen: dict[int, set[int]] = field(default_factory=dict)  # truth id -> frames detected
    per_class: dict[str, ClassCounts] = field(default_factory=dict)  # what the rules were handed
    crossings: list[Crossing] = field(default_factory=list)  # every line crossing counted

    def observable(self, inc: Mapping[str, Any], share: float = 0.5) -> bool:
        """Whether the detections could show an expected incident: one of its objects is
        detected in at least ``share`` of the frames from its start until a rule could know
        (``detect_after_s``, at least 1 s on). An object hidden behind another is not."""
        fps = float(self.head["fps"])
        f0 = int(round(inc["start_s"] * fps))
        f1 = max(int(round(inc["detect_after_s"] * fps)), f0 + int(fps))
        need = share * (f1 - f0)
        return any(
            sum(1 for f in self.seen.get(i, ()) if f0 <= f < f1) >= need for i in inc["object_ids"]
        )


def oracle_frames(
    name: str,
    seconds: float | None = None,
    resolution: str = "640x360",
    seed: int | None = None,
    cam: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[list[tuple[FrameTracks, list[dict[str, Any]]]], dict[str, Any]]:
    """A library scene's truth boxes (score 0.9) through ByteTracker with the scene's exact
    calibration: per frame the FrameTracks (camera `cam`, default the scene's name) and the
    truth objects that were detections; and the scene's header."""
    from smartcity.tracking import ByteTracker

    st = render_truth(name, seconds, resolution, seed, cache_dir)
    head = st.head
    fps = float(head["fps"])
    tracker = ByteTracker(frame_rate=fps, speed_window_s=1.0)
    H = np.asarray(head["camera"]["image_to_ground"], np.float64)
    tracker.set_calibration(H / H[2, 2])
    out = []
    for f, objs in enumerate(st.frames):
        t = f / fps
        keep = [o for o in objs if o["box"][2] - o["box"][0] >= MIN_BOX_PX
                and o["box"][3] - o["box"][1] >= MIN_BOX_PX]  # fmt: skip
        boxes = np.array([o["box"] for o in keep], np.float32).reshape(-1, 4)
        cls = np.array([APPLIANCE_CLASSES.index(o["class"]) for o in keep], np.int32)
        tr = tracker.update(boxes, np.full(len(keep), 0.9, np.float32), cls, timestamp=t)
        frame = FrameTracks(
            cam=cam or name, frame=f, pts=t, t_ns=T0_NS + int(round(t * 1e9)),
            w=int(head["width"]), h=int(head["height"]),
            track_id=np.asarray(tr.track_id), class_id=np.asarray(tr.class_id),
            score=np.asarray(tr.score), xyxy=np.asarray(tr.xyxy),
            ground_xy=np.asarray(tr.ground_xy), speed_kmh=np.asarray(tr.speed_kmh),
        )  # fmt: skip
        out.append((frame, keep))
    return out, head


def run_scene(
    name: str,
    seconds: float | None = None,
    resolution: str = "640x360",
    seed: int | None = None,
    rules: Mapping[str, Any] | None = None,
    detector: Detector | str | Path | None = None,
    cache_dir: str | Path | None = None,
    analyze_fps: float | None = None,
    replay: bool = False,
) -> SceneRun:
    """One library scene through the rules: the oracle path (``detector`` None), or the full
    pipeline (``detector``: a `Detector`, or a model folder / a name under models/): the scene
    rendered to H.264 MP4 (cached in ``cache_dir`` when given), decoded, detected and tracked by
    `smartcity._core.Pipeline` at ``analyze_fps`` (None: every frame, the scene's fps).
    ``replay`` (with ``cache_dir``): the model's detections are kept beside the video and, once
    kept, handed to a standalone tracker with the pipeline's settings (`replay_frames`) instead
    of decoding and detecting again: for work on the tracker and the rules."""
    if detector is None:
        frames, head = oracle_frames(name, seconds, resolution, seed, cache_dir=cache_dir)
        return judge(name, head, frames, rules)
    det = load_detector(detector)
    with rendered_video(name, seconds, resolution, seed, cache_dir) as (video, st):
        head = st.head
        H = np.asarray(head["camera"]["image_to_ground"])
        tracks: list[FrameTracks] | None = None
        if replay and cache_dir is not None:
            rate = analyze_fps or float(head["fps"])
            tracks = replay_tracks(video, det, name, H, rate, analyze_fps)
        else:
            kept = None if cache_dir is None else _tracks_file(video, det, analyze_fps)
            tracks = _load_tracks(kept, name) if kept is not None else None
            if tracks is None:
                tracks = pipeline_frames(video, det, name, H, analyze_fps)
                if kept is not None:
                    _save_tracks(kept, tracks)
    frames = []
    fps = float(head["fps"])
    for ft in tracks:
        # The batch's frame number counts decoded frames from 0: the truth's frame index, whose
        # time is frame / fps (the MP4 starts at 0).
        if not 0 <= ft.frame < len(st.frames) or abs(ft.pts - ft.frame / fps) > 0.5 / fps:
            raise RuntimeError(f"{name}: frame {ft.frame} at {ft.pts} s is not in the truth")
        frames.append((ft, _visible(st.frames[ft.frame])))
    # What the scene showed (every frame, as the oracle counts it), not what the model found:
    # "recall (seen)" has the same denominator on both paths.
    seen: dict[int, set[int]] = defaultdict(set)
    for f, objs in enumerate(st.frames):
        for o in _visible(objs):
            seen[int(o["id"])].add(f)
    run = judge(name, head, frames, rules, seen=dict(seen), truth_frames=st.frames)
    run.frames = len(frames)
    return run


_TRACK_FIELDS = ("track_id", "class_id", "score", "xyxy", "ground_xy", "speed_kmh")
_DET_FIELDS = ("xyxy", "score", "class_id")


@dataclass
class FrameDetections:
    """One analysed frame's raw detections (frame pixels), as `detect()` gave them."""

    frame: int
    pts: float
    w: int
    h: int
    xyxy: np.ndarray  # (N, 4) float32
    score: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32


def replay_frames(
    dets: list[FrameDetections],
    card: Any,
    cam: str,
    image_to_ground: np.ndarray | None,
    frame_rate: float,
    tracking: Mapping[str, Any] | None = None,
) -> list[FrameTracks]:
    """Recorded detections through a standalone `ByteTracker` set as `pipeline_frames` sets the
    camera's tracker (``speed_window_s`` 1, the card's box bias scaled by the letterbox, the
    stream's analysis rate, ``tracking`` on top): the same tracks, without decoding or
    detecting again."""
    from smartcity import _core
    from smartcity.tracking import ByteTracker

    opts: dict[str, Any] = {"speed_window_s": 1.0, **card.tracking_options(), **(tracking or {})}
    if dets and "bottom_bias" in opts:
        # Frame pixels per input pixel down the picture: the core's own slot geometry.
        g = _core.compute_geometry(
            dets[0].w, dets[0].h, card.input_width, card.input_height,
            card.pipeline_options()["resize"],
        )  # fmt: skip
        opts.setdefault("bottom_bias_scale", 1.0 / g.scale_y)
    tracker = ByteTracker(frame_rate=frame_rate, **opts)
    if image_to_ground is not None:
        H = np.asarray(image_to_ground, np.float64)
        tracker.set_calibration(H / H[2, 2])
    out = []
    for d in dets:
        r = tracker.update(d.xyxy, d.score, d.class_id, timestamp=d.pts)
        out.append(
            FrameTracks(
                cam=cam, frame=d.frame, pts=d.pts, t_ns=T0_NS + int(round(d.pts * 1e9)),
                w=d.w, h=d.h, track_id=np.array(r.track_id), class_id=np.array(r.class_id),
                score=np.array(r.score), xyxy=np.array(r.xyxy), ground_xy=np.array(r.ground_xy),
                speed_kmh=np.array(r.speed_kmh),
            )
        )  # fmt: skip
    return out


def replay_tracks(
    video: Path,
    det: Detector,
    cam: str,
    image_to_ground: np.ndarray,
    frame_rate: float,
    analyze_fps: float | None,
) -> list[FrameTracks]:
    """The tracks of a rendered video from its kept detections (recorded on the first call, by
    the pipeline itself, whose tracks that call returns)."""
    path = video.with_name(f"dets-{_run_key(det, analyze_fps, with_tracking=False)}.npz")
    kept = _load_dets(path)
    if kept is not None:
        return replay_frames(kept, det.card, cam, image_to_ground, frame_rate)
    rows: list[FrameDetections] = []

    def record(batch: _core.Batch, found: list[_core.Detections]) -> None:
        fns, pts, sizes = batch.frame_numbers, batch.pts, batch.frame_size
        for i, d in enumerate(found):
            rows.append(
                FrameDetections(
                    int(fns[i]), float(pts[i]), int(sizes[i, 0]), int(sizes[i, 1]),
                    np.array(d.xyxy, np.float32).reshape(-1, 4), np.array(d.score, np.float32),
                    np.array(d.class_id, np.int32),
                )
            )  # fmt: skip

    tracks = pipeline_frames(video, det, cam, image_to_ground, analyze_fps, on_detections=record)
    cols = (("frame", np.int64), ("pts", np.float64), ("w", np.int32), ("h", np.int32))
    _save_rows(path, rows, cols, _DET_FIELDS)
    return tracks


def _load_dets(path: Path) -> list[FrameDetections] | None:
    """Kept detections, or None when there are none (or the file is unreadable: record again)."""
    kept = _load_rows(path)
    if kept is None:
        return None
    d, slices = kept
    return [
        FrameDetections(
            int(d["frame"][i]), float(d["pts"][i]), int(d["w"][i]), int(d["h"][i]),
            d["xyxy"][sl].reshape(-1, 4).astype(np.float32), d["score"][sl].astype(np.float32),
            d["class_id"][sl].astype(np.int32),
        )
        for i, sl in enumerate(slices)
    ]  # fmt: skip


def _save_rows(path: Path, rows: list[Any], cols: Any, fields: tuple[str, ...]) -> None:
    """Per-frame records in one .npz, written whole or not at all: the scalar columns ``cols``
    ((name, dtype) pairs), each record's count, and each array of ``fields`` concatenated."""
    head = {k: np.array([getattr(r, k) for r in rows], dt) for k, dt in cols}
    head["n"] = np.array([len(getattr(r, fields[0])) for r in rows], np.int64)
    for k in fields:
        parts = [getattr(r, k) for r in rows]
        head[k] = np.concatenate(parts) if parts else np.empty(0)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **head)  # type: ignore[arg-type]  # (the stub types **kwds as allow_pickle)
    tmp.replace(path)


def _load_rows(path: Path) -> tuple[dict[str, np.ndarray], list[slice]] | None:
    """What `_save_rows` wrote and each record's slice of its arrays; None when there is no
    such file or it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None
    ends = np.cumsum(d["n"])
    return d, [slice(int(e - n), int(e)) for e, n in zip(ends, d["n"], strict=True)]


def _tracks_file(video: Path, det: Detector, analyze_fps: float | None) -> Path:
    """Where the pipeline's tracks of a rendered video are kept: beside the video, keyed by the
    model file, the analysis rate and the core library (decoder, letterbox, tracker), so that
    the rules can be measured again without decoding and detecting again."""
    return video.with_name(f"tracks-{_run_key(det, analyze_fps, with_tracking=True)}.npz")


def _run_key(det: Detector, analyze_fps: float | None, with_tracking: bool) -> str:
    """What a kept run of a video depends on: the model file, its post-processing (and its
    tracking options, for tracks), the analysis rate and the core library's build."""
    opts = sorted((k, repr(v)) for k, v in det.card.postprocess_options().items())
    if with_tracking:
        opts += sorted((k, repr(v)) for k, v in det.card.tracking_options().items())
    h = hashlib.sha256(repr((det.card.sha256, analyze_fps, opts, _core_digest())).encode())
    return h.hexdigest()[:16]


@functools.cache
def _core_digest() -> str:
    """sha256 of the core library's file, read once per process (tens of MB)."""
    from smartcity import _core

    return hashlib.sha256(Path(_core.__file__).read_bytes()).hexdigest()


def _save_tracks(path: Path, tracks: list[FrameTracks]) -> None:
    cols = (("frame", np.int64), ("pts", np.float64), ("t_ns", np.int64), ("w", np.int32),
            ("h", np.int32))  # fmt: skip
    _save_rows(path, tracks, cols, _TRACK_FIELDS)


def _load_tracks(path: Path, cam: str) -> list[FrameTracks] | None:
    """The kept tracks, or None when there are none (or the file is unreadable: run again)."""
    kept = _load_rows(path)
    if kept is None:
        return None
    d, slices = kept
    return [
        FrameTracks(
            cam=cam, frame=int(d["frame"][i]), pts=float(d["pts"][i]), t_ns=int(d["t_ns"][i]),
            w=int(d["w"][i]), h=int(d["h"][i]), **{k: d[k][sl] for k in _TRACK_FIELDS},
        )
        for i, sl in enumerate(slices)
    ]  # fmt: skip


def _visible(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The truth objects an oracle detection is made of: boxes at least MIN_BOX_PX each way."""
    return [o for o in objs if o["box"][2] - o["box"][0] >= MIN_BOX_PX
            and o["box"][3] - o["box"][1] >= MIN_BOX_PX]  # fmt: skip


def judge(
    name: str,
    head: dict[str, Any],
    frames: list[tuple[FrameTracks, list[dict[str, Any]]]],
    rules: Mapping[str, Any] | None = None,
    seen: dict[int, set[int]] | None = None,
    truth_frames: list[list[dict[str, Any]]] | None = None,
) -> SceneRun:
    """The RuleSet of the scene (``geometry_from_scenario``, ``rules_config_for`` + ``rules``)
    over tracked frames, each with the truth objects it is matched against; tracks map to truth
    ids by IoU (majority vote). ``seen`` (truth id -> frames it was visible in) defaults to the
    frames' own truth objects; ``truth_frames`` (every truth object per frame number) makes the
    per-class figures count tracks on objects smaller than MIN_BOX_PX as true."""
    geo = geometry_from_scenario(head, cam=name)
    cfg = rules_config_for(head)
    for k, v in (rules or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, Mapping) else v
    ruleset = RuleSet(geo, cfg)
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    findings: list[Finding] = []
    first_seen: dict[int, float] = {}
    speed_err: list[float] = []
    own_seen = seen is None
    seen = defaultdict(set) if seen is None else seen
    per_class = {c: ClassCounts() for c in APPLIANCE_CLASSES}
    crossings: list[Crossing] = []
    for frame, keep in frames:
        f, t = frame.frame, frame.pts
        if own_seen:
            for o in keep:
                seen.setdefault(int(o["id"]), set()).add(f)
        out = ruleset.update(frame)
        findings.extend(out.findings)
        crossings.extend(out.traffic.crossings)
        metric = frame_view(frame, geo).metric
        everything = truth_frames[f] if truth_frames is not None else keep
        _count_classes(per_class, frame, keep, everything)
        if len(frame) and keep:
            boxes = np.array([o["box"] for o in keep], np.float32).reshape(-1, 4)
            iou = iou_matrix(frame.xyxy, boxes)
            for j in range(len(frame)):
                m = int(np.argmax(iou[j]))
                if iou[j, m] < 0.3:
                    continue
                tid, o = int(frame.track_id[j]), keep[m]
                votes[tid][int(o["id"])] += 1
                first_seen.setdefault(tid, t)
                v = float(frame.speed_kmh[j])
                if (o["class"] != "person" and iou[j, m] >= 0.5 and math.isfinite(v) and metric[j]
                        and o["truncation"] < 0.05 and o["occlusion"] < 0.3
                        and t - first_seen[tid] >= 1.0):  # fmt: skip
                    speed_err.append(abs(v - float(o["speed_kmh"])))
    if frames:
        out = ruleset.finish(frames[-1][0])
        findings.extend(out.findings)
        crossings.extend(out.traffic.crossings)
    mapping = {tid: c.most_common(1)[0][0] for tid, c in votes.items()}
    return SceneRun(
        name, head, findings, mapping, ruleset.line_counts, speed_err, len(frames), dict(seen),
        per_class, crossings,
    )  # fmt: skip


@dataclass
class ClassCounts:
    """Per appliance class, frame by frame, what the rules were handed (IoU >= 0.5)."""

    truth: int = 0  # truth objects of the class at least MIN_BOX_PX each way
    found: int = 0  # ... with a track of the same class on them
    clear: int = 0  # truth objects at least CLEAR_BOX_PX each way and occluded under half
    clear_found: int = 0
    tracks: int = 0  # tracks of the class
    true: int = 0  # ... on a truth object of the same class (of any size)
    wrong_class: int = 0  # ... on a truth object of another class only

    def add(self, other: ClassCounts) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def recall(self) -> float:
        return self.found / self.truth if self.truth else float("nan")

    @property
    def recall_clear(self) -> float:
        return self.clear_found / self.clear if self.clear else float("nan")

    @property
    def precision(self) -> float:
        return self.true / self.tracks if self.tracks else float("nan")


CLEAR_BOX_PX = 12.0


def _count_classes(
    per_class: dict[str, ClassCounts],
    frame: FrameTracks,
    keep: list[dict[str, Any]],
    everything: list[dict[str, Any]],
) -> None:
    names = [APPLIANCE_CLASSES[int(c)] for c in frame.class_id]
    iou_keep = iou_matrix(frame.xyxy, np.array([o["box"] for o in keep], np.float32))
    for i, o in enumerate(keep):
        pc = per_class[o["class"]]
        hit = any(iou_keep[j, i] >= 0.5 and names[j] == o["class"] for j in range(len(names)))
        pc.truth += 1
        pc.found += hit
        b = o["box"]
        if min(b[2] - b[0], b[3] - b[1]) >= CLEAR_BOX_PX and o["occlusion"] < 0.5:
            pc.clear += 1
            pc.clear_found += hit
    iou_all = iou_matrix(frame.xyxy, np.array([o["box"] for o in everything], np.float32))
    for j, c in enumerate(names):
        pc = per_class[c]
        pc.tracks += 1
        on = [everything[i]["class"] for i in np.nonzero(iou_all[j] >= 0.5)[0]]
        if c in on:
            pc.true += 1
        elif on:
            pc.wrong_class += 1


#: An assumed geometry for tests/media/vtest-h264.mp4 (real footage, 768x576 at 10 fps: people
#: walking on a campus, two vans parked at the top right, no moving vehicle). Nothing about the
#: camera is known; the calibration is a guess made to be plausible: people 1.7-1.8 m tall are
#: 70-85 px there (2-2.6 cm/px across the picture, finer near the bottom), the camera looks down
#: steeply (a ground metre is ~1.5 times longer up the picture than across). Four image points
#: of the walkway span a 12 m x 10 m rectangle on the ground (2.1 cm/px across at the bottom,
#: 2.6 cm/px at the top, ~3.8 cm/px up the picture). Two opposite lanes cover the paved area
#: people walk on (the path from the left and the square in front; not the parking at the top
#: right): 30 km/h, so that every vehicle rule has something to judge there.
VTEST_GEOMETRY: dict[str, Any] = {
    "calibration": {"points": [
        {"image": [109, 450], "ground": [-6.0, 0.0]},
        {"image": [691, 450], "ground": [6.0, 0.0]},
        {"image": [633, 190], "ground": [6.0, 10.0]},
        {"image": [167, 190], "ground": [-6.0, 10.0]},
    ]},
    "lanes": [
        {"name": "walk.e", "direction": [1, 0], "speed_limit_kmh": 30, "road": "walk",
         "direction_name": "east",
         "polygon": [[0, 190], [560, 192], [680, 182], [700, 240], [740, 282], [420, 280],
                     [0, 240]]},
        {"name": "walk.w", "direction": [-1, 0], "speed_limit_kmh": 30, "road": "walk",
         "direction_name": "west",
         "polygon": [[330, 300], [420, 280], [740, 282], [768, 295], [768, 490]]},
    ],
}  # fmt: skip
VTEST = MODELS.parent / "tests" / "media" / "vtest-h264.mp4"


@dataclass
class ClipRun:
    """What the rules said on a video without truth (real footage), and what they were given."""

    findings: list[Finding]
    frames: int
    tracks: dict[str, int]  # class -> distinct track ids of that class
    track_frames: dict[str, int]  # class -> tracks x frames
    vehicle_tracks: list[str]  # one line per vehicle-class track: id, frames, travel, top speed

    def opened(self, rules: tuple[str, ...] = VEHICLE_RULES) -> list[Finding]:
        return [f for f in self.findings if f.rule in rules and not f.closed]


def run_clip(
    video: str | Path,
    geometry: Mapping[str, Any],
    detector: Detector | str | Path,
    rules: Mapping[str, Any] | None = None,
    analyze_fps: float | None = None,
    cam: str = "clip",
) -> ClipRun:
    """A video (no truth) through `pipeline_frames` and a RuleSet on ``geometry`` (a camera's
    geometry dict, as in the configuration; its calibration goes to the pipeline's tracker)."""
    from smartcity.incidents.geometry import parse_camera_geometry

    geo = parse_camera_geometry(cam, dict(geometry))
    det = load_detector(detector)
    H = None if geo.calibration is None else geo.calibration.image_to_ground
    frames = pipeline_frames(video, det, cam, H, analyze_fps)
    ruleset = RuleSet(geo, dict(rules or {}))
    findings: list[Finding] = []
    ids: dict[str, set[int]] = defaultdict(set)
    n: Counter[str] = Counter()
    path: dict[int, list[tuple[float, float, float, float]]] = defaultdict(list)
    cls_of: dict[int, str] = {}
    for fr in frames:
        findings.extend(ruleset.update(fr).findings)
        for j in range(len(fr)):
            c, tid = APPLIANCE_CLASSES[int(fr.class_id[j])], int(fr.track_id[j])
            ids[c].add(tid)
            n[c] += 1
            if c != "person":
                cls_of[tid] = c
                gx, gy = (float(v) for v in fr.ground_xy[j])
                path[tid].append((fr.pts, gx, gy, float(fr.speed_kmh[j])))
    lines = []
    for tid, pts in sorted(path.items()):
        xy = np.array([(x, y) for _, x, y, _ in pts])
        travel = float(np.hypot(*(xy.max(0) - xy.min(0)))) if len(xy) else 0.0
        v = [s for *_, s in pts if math.isfinite(s)]
        lines.append(f"track {tid} {cls_of[tid]}: {len(pts)} frames, {pts[0][0]:.1f}-"
                     f"{pts[-1][0]:.1f} s, extent {travel:.1f} m, "
                     f"top {max(v) if v else float('nan'):.0f} km/h")  # fmt: skip
    return ClipRun(findings, len(frames), {c: len(v) for c, v in ids.items()}, dict(n), lines)


@dataclass
class Score:
    """Per incident type over some scenes: expected, found (opened findings), matches."""

    expected: int = 0
    expected_seen: int = 0  # ... of which the detections could show (SceneRun.observable)
    recalled_seen: int = 0
    found: int = 0
    true_found: int = 0  # findings that matched an expected incident
    recalled: int = 0  # expected incidents some finding matched
    misses: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_found / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.recalled / self.expected if self.expected else 1.0

    @property
    def recall_seen(self) -> float:
        """Recall over the expected incidents the oracle detections could show."""
        return self.recalled_seen / self.expected_seen if self.expected_seen else 1.0


def score(run: SceneRun, scores: dict[str, Score] | None = None) -> dict[str, Score]:
    """Adds one scene's findings against its expected incidents into ``scores`` (per type)."""
    scores = scores if scores is not None else {}
    opened: dict[tuple[str, str], Finding] = {}
    for fnd in run.findings:
        if not fnd.closed and (fnd.rule, fnd.key) not in opened:
            opened[(fnd.rule, fnd.key)] = fnd
    expected = [i for i in run.head["incidents"] if i["type"] in SCORED]
    hit: set[int] = set()
    for kind in SCORED:
        sc = scores.setdefault(kind, Score())
        exp = [(n, i) for n, i in enumerate(expected) if i["type"] == kind]
        sc.expected += len(exp)
        sc.expected_seen += sum(run.observable(i) for _, i in exp)
        for fnd in sorted((f for f in opened.values() if f.rule == kind), key=lambda f: f.pts):
            sc.found += 1
            truth_ids = {run.track_to_truth.get(t, -1) for t in fnd.track_ids}
            ok = None
            for n, inc in exp:
                tol = float(inc["tolerance_s"])
                if not inc["start_s"] - tol <= fnd.pts <= inc["end_s"] + tol:
                    continue
                if truth_ids & set(inc["object_ids"]) or not fnd.track_ids:
                    ok = n
                    if n not in hit:
                        break
            if ok is None or ok in hit:
                sc.false.append(f"{run.name}: {kind} {fnd.key} at {fnd.pts:.1f}s ids {truth_ids}")
                continue
            hit.add(ok)
            sc.true_found += 1
            sc.recalled += 1
            sc.recalled_seen += run.observable(expected[ok])
        for n, inc in exp:
            if n not in hit:
                why = "" if run.observable(inc) else " (hidden from the detections)"
                sc.misses.append(f"{run.name}: {kind} {inc['object_ids']} "
                                 f"{inc['start_s']}-{inc['end_s']}s{why}")  # fmt: skip
    return scores


@dataclass
class CrossingMatch:
    """Counted crossings against the truth's own crossing events, one to one."""

    truth: int = 0  # the truth's crossing events
    counted: int = 0  # crossings the rule counted
    matched: int = 0
    missed: list[str] = field(default_factory=list)  # "line dir object class t"
    extra: list[str] = field(default_factory=list)  # "line dir track (object) class t"

    def add(self, o: CrossingMatch) -> None:
        self.truth, self.counted = self.truth + o.truth, self.counted + o.counted
        self.matched += o.matched
        self.missed += o.missed
        self.extra += o.extra


def match_crossings(run: SceneRun, window_s: float = 3.0) -> CrossingMatch:
    """The vehicles' counted crossings paired one to one with the truth's crossing events
    (``head["lines"][line]["events"]``) of the same line, direction ("in" is the scenes'
    "forward") and object (the track's truth id, by IoU vote), at most ``window_s`` apart,
    nearest first. A track voted onto a neighbour (a box between two queued cars) makes an
    extra crossing and a miss: a lower bound, but one that says which vehicle and when."""
    out = CrossingMatch()
    events = []
    for name, line in run.head["lines"].items():
        for e in line.get("events", ()):
            if e["class"] != "person":
                d = "in" if e["dir"] == "forward" else "out"
                events.append((name, d, int(e["id"]), e["class"], float(e["t"])))
    counted = [c for c in run.crossings if APPLIANCE_CLASSES[c.class_id] != "person"]
    out.truth, out.counted = len(events), len(counted)
    pairs = []
    for i, c in enumerate(counted):
        obj = run.track_to_truth.get(c.track_id)
        for j, (ln, d, oid, _, t) in enumerate(events):
            if ln == c.line and d == c.direction and oid == obj and abs(c.pts - t) <= window_s:
                pairs.append((abs(c.pts - t), i, j))
    used_c: set[int] = set()
    used_e: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in used_c and j not in used_e:
            used_c.add(i)
            used_e.add(j)
    out.matched = len(used_c)
    out.missed = [
        f"{run.name}: {ln} {d} object {oid} ({cls}) at {t:.1f}s"
        for j, (ln, d, oid, cls, t) in enumerate(events)
        if j not in used_e
    ]
    out.extra = [
        f"{run.name}: {c.line} {c.direction} track {c.track_id} (object "
        f"{run.track_to_truth.get(c.track_id)}, {APPLIANCE_CLASSES[c.class_id]}) at {c.pts:.1f}s"
        for i, c in enumerate(counted)
        if i not in used_c
    ]
    return out


def counting_error(run: SceneRun, vehicles_only: bool = False) -> tuple[int, int]:
    """(counted, expected) crossings over every line of the scene (both directions)."""
    counted = expected = 0
    ok = (lambda c: c != "person") if vehicles_only else (lambda c: True)
    for name, line in run.head["lines"].items():
        for d in ("forward", "backward"):
            expected += sum(n for c, n in line[d].items() if ok(c))
        per = run.line_counts.get(name, {})
        counted += sum(n for d in per.values() for c, n in d.items() if ok(c))
    return counted, expected
