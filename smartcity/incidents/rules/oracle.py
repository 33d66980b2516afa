"""The rules on rendered scenes with known truth: the "oracle" path of the accuracy figures.

A library scene is prepared at a small resolution and drawn frame by frame (no video encoding);
each frame's truth boxes (the visible parts) become detections with score 0.9 and go through
`ByteTracker` with the scene's image -> ground homography and the frame times; the tracks become
`FrameTracks`; a `RuleSet` built from ``geometry_from_scenario`` (thresholds from the scene's
truth parameters) runs on them. Tracks are matched to truth objects by IoU, so each finding
names truth ids, and `score` compares the findings with the scene's expected incidents:
a finding counts when it falls within ``start_s - tolerance_s .. end_s + tolerance_s`` of an
expected incident of its type and names one of its objects. (The full pipeline with the trained
detector is a later step: `run_scene(..., detector=...)` is its hook and raises today.)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.incidents.geometry import geometry_from_scenario
from smartcity.incidents.rules.base import frame_view
from smartcity.incidents.rules.ruleset import RuleSet
from smartcity.incidents.types import Finding, FrameTracks

#: rule types whose findings must never appear on the quiet scenes
VEHICLE_RULES = ("wrong_way", "stopped_vehicle", "speeding", "congestion", "crash")
#: incident types scored for precision and recall (counting is scored separately)
SCORED = ("wrong_way", "stopped_vehicle", "speeding", "congestion", "crowd", "loitering",
          "pedestrian_on_carriageway", "crash")  # fmt: skip
MIN_BOX_PX = 4.0  # an oracle detection needs a box at least this wide and high
T0_NS = 1_790_000_000 * 10**9  # wall clock of frame 0 (any fixed value)


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
        h = hashlib.sha256(repr((sc, seconds, resolution, seed)).encode())
        for src in sorted(Path(S.__file__).parent.glob("*.py")):  # the renderer's own version
            h.update(src.read_bytes())
        path = Path(cache_dir) / f"{name}-{resolution}-{h.hexdigest()[:16]}.json.gz"
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
    detector: Callable[..., Any] | None = None,
    cache_dir: str | Path | None = None,
) -> SceneRun:
    """The oracle path on one library scene (``detector``: the full-pipeline hook, not yet)."""
    if detector is not None:
        raise NotImplementedError("the full pipeline (rendered video -> detector) is a later step")
    frames, head = oracle_frames(name, seconds, resolution, seed, cache_dir=cache_dir)
    geo = geometry_from_scenario(head, cam=name)
    cfg = rules_config_for(head)
    for k, v in (rules or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, Mapping) else v
    ruleset = RuleSet(geo, cfg)
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    findings: list[Finding] = []
    first_seen: dict[int, float] = {}
    speed_err: list[float] = []
    seen: dict[int, set[int]] = defaultdict(set)
    for frame, keep in frames:
        f, t = frame.frame, frame.pts
        for o in keep:
            seen[int(o["id"])].add(f)
        findings.extend(ruleset.update(frame).findings)
        metric = frame_view(frame, geo).metric
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
    mapping = {tid: c.most_common(1)[0][0] for tid, c in votes.items()}
    return SceneRun(
        name, head, findings, mapping, ruleset.line_counts, speed_err, len(frames), dict(seen)
    )


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
