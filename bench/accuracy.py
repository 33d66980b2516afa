"""Incident rules and traffic counts on the rendered library scenes, against their truth.

Two paths (``--detector``), the same rules and the same scoring (smartcity.incidents.rules.oracle):

- ``oracle``: every library scene is drawn (truth only, no video; cached under --cache), its
  truth boxes go through ByteTracker as detections and the RuleSet runs on the tracks: what the
  rules and the tracker can do with perfect detections.
- ``model``: the full pipeline. Each scene is rendered to H.264 MP4 (cached under --cache) and
  run the appliance's way: ``smartcity._core.Pipeline`` with the model card's options (decode,
  every frame or --analyze-fps, letterbox, ``block_when_busy``: no frame dropped), the model
  through ONNX Runtime on the CPU and ``detect()`` (C++ decode and NMS), the camera's tracker
  inside the pipeline with the scene's calibration; the tracks go to the same RuleSet. Also runs
  tests/media/vtest-h264.mp4 (real footage, people only) with an assumed geometry
  (oracle.VTEST_GEOMETRY) through person-ssdlite and the model, and lists the vehicle-rule
  findings there (--no-vtest leaves it out). The pipeline's tracks are kept beside each
  cached video (keyed by the model file, the card's post-processing, the analysis rate and the
  core library's build), so that a rerun after a change to the rules takes seconds.
  ``--replay``: the model's raw detections are kept instead (keyed without the tracker's
  settings), and once kept, handed to a standalone ByteTracker set as the pipeline sets the
  camera's tracker: a change to the tracker (or to the core library) is measured in a minute
  or two instead of decoding and detecting again. It gives the pipeline's tracks to the digit
  (tests/integration/test_rules_pipeline.py); judge what ships without it.
- ``both``: both, and a table of the two side by side.

Per path: per incident type, the scenes it is expected on, the expected and found incidents,
precision and recall (and recall over the incidents the scene showed at all: the same
denominator on both paths); the counting error on the counting scenes and over all lines; the
vehicles' counted crossings paired one to one with the truth's own crossing events (same
line, direction and object, within 3 s; with -v the missed and extra ones, named); the
ground-speed error against the scripted speeds; findings of the vehicle rules on the quiet
scenes; for the model, per class what the rules were handed (tracks against truth, IoU >= 0.5).
Goals (issue 6): counting error <= 1 %, speed MAE <= 3 km/h, precision and recall (seen) >= 0.95
per type, no vehicle incidents on the quiet scenes (and on vtest); --check exits 1 if one is
missed on a path that ran.

    .venv/bin/python bench/accuracy.py [--detector oracle|model|both] [--scenes a,b]
        [--model synthetic-traffic] [--analyze-fps N] [--resolution 640x360] [--replay]
        [--check] [-v]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartcity import scenarios
from smartcity.classes import APPLIANCE_CLASSES
from smartcity.engine.detectors.base import Detector
from smartcity.incidents.rules import oracle

COUNTING_SCENES = ("counting_arterial",)
QUIET_SCENES = ("quiet_urban", "quiet_highway", "quiet_arterial_rain", "quiet_square_night",
                "red_light_queue_urban", "lane_changes_highway", "mixed_urban_bikes")  # fmt: skip


@dataclass
class Summary:
    """One path over the scenes."""

    label: str
    runs: int = 0
    seconds: float = 0.0
    scores: dict[str, oracle.Score] = field(default_factory=dict)
    on_scenes: dict[str, set[str]] = field(default_factory=dict)
    speed: list[float] = field(default_factory=list)
    per_scene_mae: dict[str, float] = field(default_factory=dict)
    counted: int = 0
    expected: int = 0
    all_counted: int = 0
    all_expected: int = 0
    veh_counted: int = 0
    veh_expected: int = 0
    veh_off: int = 0  # sum over scenes of |counted - expected|: over- and under-counts add up
    veh_off_scenes: list[str] = field(default_factory=list)  # "scene counted/expected"
    quiet_finds: list[str] = field(default_factory=list)
    per_class: dict[str, oracle.ClassCounts] = field(default_factory=dict)
    crossings: oracle.CrossingMatch = field(default_factory=oracle.CrossingMatch)

    @property
    def count_err(self) -> float:
        return abs(self.counted - self.expected) / self.expected if self.expected else 0.0

    @property
    def veh_err(self) -> float:
        e = self.veh_expected
        return abs(self.veh_counted - e) / e if e else 0.0

    @property
    def all_err(self) -> float:
        e = self.all_expected
        return abs(self.all_counted - e) / e if e else 0.0

    @property
    def mae(self) -> float:
        return float(np.mean(self.speed)) if self.speed else float("nan")


def evaluate(
    label: str,
    jobs: list[tuple[str, int | None]],
    a: argparse.Namespace,
    detector: Detector | None = None,
) -> Summary:
    s = Summary(label, per_class={c: oracle.ClassCounts() for c in APPLIANCE_CLASSES})
    t0 = time.perf_counter()
    for name, seed in jobs:
        t1 = time.perf_counter()
        run = oracle.run_scene(
            name, resolution=a.resolution, seed=seed, cache_dir=a.cache,
            detector=detector, analyze_fps=a.analyze_fps, replay=a.replay,
        )  # fmt: skip
        if seed is not None:
            run.name = f"{name}@{seed}"
        if a.verbose:
            print(f"  {label}: {run.name} {time.perf_counter() - t1:.1f} s", flush=True)
        oracle.score(run, s.scores)
        for inc in run.head["incidents"]:
            s.on_scenes.setdefault(inc["type"], set()).add(name)
        for f in run.findings:
            if not f.closed:
                s.on_scenes.setdefault(f.rule, set())
        c, e = oracle.counting_error(run, vehicles_only=True)
        s.veh_counted, s.veh_expected = s.veh_counted + c, s.veh_expected + e
        s.veh_off += abs(c - e)
        if c != e:
            s.veh_off_scenes.append(f"{run.name} {c}/{e}")
        s.crossings.add(oracle.match_crossings(run))
        c, e = oracle.counting_error(run)
        s.all_counted, s.all_expected = s.all_counted + c, s.all_expected + e
        if name in COUNTING_SCENES:
            s.counted, s.expected = s.counted + c, s.expected + e
        if run.speed_errors:
            s.speed.extend(run.speed_errors)
            s.per_scene_mae[run.name] = float(np.mean(run.speed_errors))
        if name in QUIET_SCENES:
            s.quiet_finds += [f"{run.name}: {f.rule} {f.key} at {f.pts:.1f}s" for f in run.findings
                              if f.rule in oracle.VEHICLE_RULES and not f.closed]  # fmt: skip
        for k, pc in run.per_class.items():
            s.per_class[k].add(pc)
        s.runs += 1
    s.seconds = time.perf_counter() - t0
    return s


def report(s: Summary, a: argparse.Namespace) -> bool:
    """Prints one path's figures; True when its goals are met."""
    print(f"\n== {s.label}: {s.runs} scene runs at {a.resolution} ({s.seconds:.0f} s)")
    head = f"{'rule':<26} {'scenes':>6} {'expected':>8} {'found':>6} {'precision':>9} "
    head += f"{'recall':>7} {'recall(seen)':>12}"
    print(head)
    ok = True
    for kind in oracle.SCORED:
        sc = s.scores.get(kind, oracle.Score())
        n = len(s.on_scenes.get(kind, ()))
        print(f"{kind:<26} {n:>6} {sc.expected:>8} {sc.found:>6} {sc.precision:>9.3f} "
              f"{sc.recall:>7.3f} {sc.recall_seen:>12.3f}")  # fmt: skip
        ok &= sc.precision >= 0.95 and sc.recall_seen >= 0.95
        if a.verbose:
            for m in sc.misses:
                print(f"    miss  {m}")
            for m in sc.false:
                print(f"    false {m}")
    scenes = ", ".join(COUNTING_SCENES)
    print(f"counting ({scenes}): {s.counted} of {s.expected}, error {s.count_err:.1%}")
    print(
        f"counting, all lines of all scenes: vehicles {s.veh_counted} of {s.veh_expected}, error "
        f"{s.veh_err:.1%}; with people {s.all_counted} of {s.all_expected}, error {s.all_err:.1%}"
    )
    off = s.veh_off / s.veh_expected if s.veh_expected else 0.0
    print(f"  vehicles off per scene, summed (over- and under-counts do not cancel): "
          f"{s.veh_off} ({off:.1%})")  # fmt: skip
    if a.verbose and s.veh_off_scenes:
        print(f"    off: {', '.join(s.veh_off_scenes)}")
    x = s.crossings
    print(f"  vehicle crossings matched one to one to the truth's (line, direction, object, 3 s): "
          f"{x.matched} of {x.truth} truth crossings, {x.counted - x.matched} of {x.counted} "
          f"counted unmatched")  # fmt: skip
    if a.verbose:
        for m in x.missed:
            print(f"    missed {m}")
        for m in x.extra:
            print(f"    extra  {m}")
    worst = max(s.per_scene_mae.items(), key=lambda kv: kv[1]) if s.per_scene_mae else ("-", 0.0)
    print(f"speed MAE: {s.mae:.2f} km/h over {len(s.speed)} measurements "
          f"(worst scene {worst[0]} {worst[1]:.2f})")  # fmt: skip
    print(f"vehicle incidents on quiet scenes: {len(s.quiet_finds)}")
    for q in s.quiet_finds:
        print(f"    {q}")
    print("what the rules were handed, per class (frames x objects; IoU >= 0.5, class-aware):")
    print(f"  {'class':<11} {'truth':>7} {'recall':>7} {'clear':>7} {'recall':>7} "
          f"{'tracks':>7} {'precision':>9} {'wrong class':>11}")  # fmt: skip
    for c, pc in s.per_class.items():
        if pc.truth or pc.tracks:
            print(f"  {c:<11} {pc.truth:>7} {pc.recall:>7.3f} {pc.clear:>7} "
                  f"{pc.recall_clear:>7.3f} {pc.tracks:>7} {pc.precision:>9.3f} "
                  f"{pc.wrong_class:>11}")  # fmt: skip
    ok &= s.count_err <= 0.01 and s.mae <= 3.0 and not s.quiet_finds
    print(f"goals ({s.label}): " + ("met" if ok else "NOT met"))
    return ok


def side_by_side(o: Summary, m: Summary) -> None:
    """A markdown table of the two paths, per rule (docs/incidents.md)."""
    print(f"\n== {o.label} vs {m.label}: found, precision, recall, recall (seen)")
    print(f"| rule | expected | {o.label} found | P | R | R (seen) "
          f"| {m.label} found | P | R | R (seen) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in oracle.SCORED:
        so, sm = o.scores.get(kind, oracle.Score()), m.scores.get(kind, oracle.Score())
        print(f"| {kind} | {so.expected} | {so.found} | {so.precision:.3f} | {so.recall:.3f} "
              f"| {so.recall_seen:.3f} | {sm.found} | {sm.precision:.3f} | {sm.recall:.3f} "
              f"| {sm.recall_seen:.3f} |")  # fmt: skip
    rows = (
        ("counting error, counting scene", f"{o.count_err:.1%}", f"{m.count_err:.1%}"),
        ("vehicles counted, all lines", f"{o.veh_counted} of {o.veh_expected}",
         f"{m.veh_counted} of {m.veh_expected}"),
        ("vehicles off per scene, summed", str(o.veh_off), str(m.veh_off)),
        ("speed MAE (km/h)", f"{o.mae:.2f} ({len(o.speed)})", f"{m.mae:.2f} ({len(m.speed)})"),
        ("vehicle findings, quiet scenes", str(len(o.quiet_finds)), str(len(m.quiet_finds))),
    )  # fmt: skip
    print(f"\n| | {o.label} | {m.label} |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


def vtest_report(model: Detector, name: str) -> bool:
    """tests/media/vtest-h264.mp4 with the assumed geometry, through person-ssdlite and
    ``model`` (a Detector); True when neither gives a vehicle-rule finding."""
    ok = True
    print(f"\n== vtest ({oracle.VTEST.name}, real footage, assumed geometry), default rules")
    runs: tuple[tuple[str, Detector | str], ...] = (
        ("person-ssdlite", "person-ssdlite"),
        (name, model),
    )
    for m, det in runs:
        t0 = time.perf_counter()
        r = oracle.run_clip(oracle.VTEST, oracle.VTEST_GEOMETRY, det, cam="vtest")
        took = time.perf_counter() - t0
        tracks = ", ".join(f"{c} {n}" for c, n in sorted(r.tracks.items()))
        veh = r.opened()
        other = [f for f in r.findings if not f.closed and f.rule not in oracle.VEHICLE_RULES]
        print(f"{m}: {r.frames} frames ({took:.0f} s); tracks by class: {tracks}")
        print(f"  vehicle-rule findings: {len(veh)}; other findings: {len(other)} "
              f"({', '.join(sorted({f.rule for f in other})) or '-'})")  # fmt: skip
        for f in veh:
            print(f"    {f.rule} {f.key} at {f.pts:.1f} s {dict(f.details)}")
        ok &= not veh
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="all", help="comma-separated library names, or all")
    ap.add_argument("--resolution", default="640x360")
    ap.add_argument("--seeds", default="", help="e.g. 1,2: each scene again with these seeds")
    ap.add_argument("--detector", choices=("oracle", "model", "both"), default="oracle")
    ap.add_argument("--model", default="synthetic-traffic", help="model folder or name")
    ap.add_argument(
        "--analyze-fps", type=float, default=None, help="full pipeline: frames per second"
    )
    ap.add_argument("--no-vtest", action="store_true", help="skip the vtest run (model path)")
    ap.add_argument(
        "--replay", action="store_true", help="model path: kept detections, standalone tracker"
    )
    ap.add_argument("--cache", default=str(Path.home() / ".cache/smartcity/accuracy"))
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    ap.add_argument("-v", "--verbose", action="store_true", help="list misses and false finds")
    a = ap.parse_args()
    names = scenarios.library_names() if a.scenes == "all" else a.scenes.split(",")
    seeds: list[int | None] = [None, *(int(x) for x in a.seeds.split(",") if x)]
    jobs = [(n, s) for s in seeds for n in names]

    ok = True
    done: dict[str, Summary] = {}
    if a.detector in ("oracle", "both"):
        done["oracle"] = evaluate("oracle", jobs, a)
        ok &= report(done["oracle"], a)
    if a.detector in ("model", "both"):
        det = oracle.load_detector(a.model)
        card = det.card
        rate = f"{a.analyze_fps:g} fps" if a.analyze_fps else "every frame"
        sha = hashlib.sha256(card.onnx_path.read_bytes()).hexdigest()[:12]
        label = f"pipeline ({card.name})"
        print(f"\nfull pipeline: model {card.name} ({card.input_width}x{card.input_height}, "
              f"onnx sha256 {sha}...), ONNX Runtime CPU 1 thread, {rate}"
              + (", tracks replayed from kept detections" if a.replay else ""))  # fmt: skip
        done["model"] = evaluate(label, jobs, a, detector=det)
        ok &= report(done["model"], a)
        if not a.no_vtest:
            ok &= vtest_report(det, card.name)
    if len(done) == 2:
        side_by_side(done["oracle"], done["model"])
    print("\ngoals: " + ("met" if ok else "NOT met"))
    return 0 if ok or not a.check else 1


if __name__ == "__main__":
    sys.exit(main())
