"""mAP@0.5 per class of the synthetic-traffic model on scenes it never saw, at day, night, rain.

    .venv/bin/python models/synthetic-traffic/evaluate.py [--seeds 100,101] [--seconds 16]

Scenes: eight library scenarios that together hold every class (quiet_urban, mixed_urban_bikes,
quiet_highway, counting_arterial, crowd_square, stopped_vehicle_highway,
speeding_motorcycle_highway, pedestrian_on_carriageway_urban), each rendered with seeds 100 and
101 (training used 0-9 and 20-29) at 640x360 to an H.264 MP4 by smartcity.scenarios, three times:

- day: the scenario as written;
- night: effects.night on, sensor noise 2;
- rain: effects.rain 0.6, noise 3, brightness drift 0.1.

Detection runs the appliance's own path: sc.Pipeline made with the card's options (decode of the
MP4, letterbox into the batch tensor), OnnxRuntimeDetector (one thread) and detect() (the C++
post-processing, class-aware NMS at the card's IoU threshold), with the score threshold lowered to
0.01 so that the precision-recall curve is complete. Every --every-th frame is scored.

Truth: the per-frame truth boxes. Objects that the dataset writer leaves out of the labels
(smartcity.scenarios.dataset.LabelRules: shorter side < 6 px, < 40 visible pixels, occlusion or
truncation > 0.7) are "ignore" boxes: a detection on one of them (IoU >= 0.5, same class) counts
neither as a true nor as a false positive, and missing one costs no recall.

A second table (--also-min-px N, default 10; 0 turns it off) scores the same detections with a
stricter ignore rule, as CCTV benchmarks and COCO-style size splits do: truth boxes whose
shorter side is under N px (at 640x360) also become ignore boxes. It is reported beside the
first table, never instead of it: the first table (the writer's own rules) is the model's figure.

AP: per class over all frames of a condition, detections ranked by score, matched greedily
(highest score first, within a frame) to the unmatched truth box of the same class with the
highest IoU >= 0.5; all-point interpolation (the area under the precision envelope, PASCAL VOC
2010+ / COCO style). mAP is the mean over the classes that have truth boxes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import smartcity as sc
from smartcity import scenarios as S
from smartcity.classes import APPLIANCE_CLASSES
from smartcity.engine.detectors import OnnxRuntimeDetector, detect
from smartcity.engine.models import load_card
from smartcity.scenarios.dataset import LabelRules

HERE = Path(__file__).resolve().parent
SCENES = (
    "quiet_urban",
    "mixed_urban_bikes",
    "quiet_highway",
    "counting_arterial",
    "crowd_square",
    "stopped_vehicle_highway",
    "speeding_motorcycle_highway",
    "pedestrian_on_carriageway_urban",
)
CONDITIONS = ("day", "night", "rain")
GOAL_CLASSES = ("car", "bus", "truck", "motorcycle", "person")


def condition(scn: S.Scenario, cond: str) -> S.Scenario:
    fx = scn.effects
    if cond == "night":
        fx = dataclasses.replace(fx, night=True, noise=max(fx.noise, 2.0))
    elif cond == "rain":
        fx = dataclasses.replace(fx, rain=0.6, noise=max(fx.noise, 3.0), brightness_drift=0.1)
    elif cond != "day":
        raise ValueError(cond)
    return dataclasses.replace(scn, effects=fx)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) xyxy -> (n, m)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + ab[None] - inter + 1e-9)


def average_precision(scores: np.ndarray, tp: np.ndarray, n_truth: int) -> float:
    """All-point interpolated AP from ranked detections (tp: 1 true, 0 false positive)."""
    if n_truth == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_truth
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


class Scorer:
    """Accumulates ranked detections and truth counts per class."""

    def __init__(self) -> None:
        self.scores: dict[int, list[float]] = {c: [] for c in range(len(APPLIANCE_CLASSES))}
        self.tp: dict[int, list[int]] = {c: [] for c in range(len(APPLIANCE_CLASSES))}
        self.n: dict[int, int] = dict.fromkeys(range(len(APPLIANCE_CLASSES)), 0)

    def add(self, det_xyxy, det_score, det_cls, truth_objects, rules: LabelRules) -> None:
        for c, name in enumerate(APPLIANCE_CLASSES):
            objs = [o for o in truth_objects if o["class"] == name]
            gt = np.array([o["box"] for o in objs if rules.keep(o)], np.float64).reshape(-1, 4)
            ign = np.array([o["box"] for o in objs if not rules.keep(o)], np.float64).reshape(-1, 4)
            self.n[c] += len(gt)
            sel = det_cls == c
            boxes, scores = det_xyxy[sel].astype(np.float64), det_score[sel]
            order = np.argsort(-scores, kind="stable")
            boxes, scores = boxes[order], scores[order]
            m = iou(boxes, gt)
            mi = iou(boxes, ign)
            used = np.zeros(len(gt), bool)
            for k in range(len(boxes)):
                cand = np.where(used, -1.0, m[k]) if len(gt) else np.zeros(0)
                j = int(np.argmax(cand)) if len(cand) else -1
                if j >= 0 and cand[j] >= 0.5:
                    used[j] = True
                    self.scores[c].append(float(scores[k]))
                    self.tp[c].append(1)
                elif len(ign) and mi[k].max() >= 0.5:
                    continue  # on an ignored (too small / hidden) object: not counted
                else:
                    self.scores[c].append(float(scores[k]))
                    self.tp[c].append(0)

    def ap(self) -> dict[str, float]:
        return {
            name: average_precision(np.array(self.scores[c]), np.array(self.tp[c]), self.n[c])
            for c, name in enumerate(APPLIANCE_CLASSES)
        }


def run_video(detector: OnnxRuntimeDetector, video: Path, every: int) -> dict[int, tuple]:
    """Frame number -> (xyxy, score, class_id) for every `every`-th frame, via sc.Pipeline."""
    card = detector.card
    out: dict[int, tuple] = {}
    p = sc.Pipeline(**card.pipeline_options(), max_batch=8)
    try:
        p.add_stream(sc.StreamConfig(camera_id="ev", url=str(video), block_when_busy=True))
        idle = 0
        while True:
            batch = p.next_batch(8, 200)
            if batch is None:
                state = p.stream_stats("ev")["state"]
                idle += 1
                if str(state).split(".")[-1] in ("stopped", "failed") or idle > 50:
                    break
                continue
            idle = 0
            with batch:
                for fn, d in zip(
                    batch.frame_numbers.tolist(), detect(detector, batch), strict=True
                ):
                    if fn % every == 0:
                        out[fn] = (d.xyxy.copy(), d.score.copy(), d.class_id.copy())
    finally:
        p.close()
    return out


def print_table(results: dict[str, dict]) -> None:
    print("| condition | " + " | ".join(APPLIANCE_CLASSES) + " | mAP@0.5 | goal classes |")
    print("|" + "---|" * (len(APPLIANCE_CLASSES) + 3))
    for cond, r in results.items():
        cells = [
            "-" if np.isnan(r["ap50"][c]) else f"{r['ap50'][c]:.3f} ({r['truth'][c]})"
            for c in APPLIANCE_CLASSES
        ]
        print(
            f"| {cond} | " + " | ".join(cells) + f" | {r['map50']:.3f} "
            f"| {r['map50_goal_classes']:.3f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(HERE))
    ap.add_argument("--seeds", default="100,101")
    ap.add_argument("--seconds", type=float, default=16.0)
    ap.add_argument("--every", type=int, default=4, help="score every n-th frame")
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--also-min-px", type=float, default=10.0, help="second table; 0: none")
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()
    card = dataclasses.replace(load_card(a.model), score_threshold=0.01)
    detector = OnnxRuntimeDetector(card, intra_op_threads=1)
    seeds = [int(s) for s in a.seeds.split(",")]
    rules = LabelRules()
    strict = dataclasses.replace(rules, min_box_px=max(rules.min_box_px, a.also_min_px))
    results: dict[str, dict] = {}
    results_strict: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cond in a.conditions.split(","):
            scorer = Scorer()
            scorer2 = Scorer()
            frames = 0
            t0 = time.time()
            for name in a.scenes.split(","):
                for seed in seeds:
                    scn = condition(S.load(name), cond)
                    r = S.render_to_dir(
                        scn,
                        Path(tmp) / f"{cond}_{name}_{seed}",
                        seconds=a.seconds,
                        seed=seed,
                        resolution="640x360",
                    )
                    truth = [json.loads(line) for line in r.truth.read_text().splitlines()]
                    dets = run_video(detector, r.video, a.every)
                    for rec in truth:
                        f = rec["frame"]
                        if f % a.every:
                            continue
                        if f not in dets:
                            raise RuntimeError(f"{r.video}: frame {f} was not decoded")
                        scorer.add(*dets[f], rec["objects"], rules)
                        scorer2.add(*dets[f], rec["objects"], strict)
                        frames += 1
            for sco, res in ((scorer, results), (scorer2, results_strict)):
                aps = sco.ap()
                goal = [aps[c] for c in GOAL_CLASSES if not np.isnan(aps[c])]
                res[cond] = {
                    "frames": frames,
                    "truth": {APPLIANCE_CLASSES[c]: n for c, n in sco.n.items()},
                    "ap50": aps,
                    "map50": float(np.nanmean(list(aps.values()))),
                    "map50_goal_classes": float(np.mean(goal)) if goal else float("nan"),
                    "seconds": round(time.time() - t0, 1),
                }
            print(f"{cond}: {frames} frames, {time.time() - t0:.0f} s", flush=True)
    print_table(results)
    print("(AP@0.5, all-point interpolation; truth boxes in brackets)")
    if strict.min_box_px > rules.min_box_px:
        print_table(results_strict)
        print(
            f"(the same, with truth boxes under {strict.min_box_px:g} px on their shorter side "
            "as ignore boxes too)"
        )
    x = np.random.default_rng(0).random((8, 3, card.input_height, card.input_width), np.float32)
    for n in (1, 8):
        detector.infer(x[:n])
        ts = []
        for _ in range(30):
            t0 = time.perf_counter()
            detector.infer(x[:n])
            ts.append(time.perf_counter() - t0)
        ms = float(np.median(ts)) * 1000 / n
        results[f"infer_ms_per_frame_batch{n}"] = ms  # type: ignore[assignment]
        print(f"ONNX Runtime, one thread, batch {n}: {ms:.1f} ms per frame (median of 30)")
    if a.json:
        if strict.min_box_px > rules.min_box_px:
            results[f"min_box_px_{strict.min_box_px:g}"] = results_strict  # type: ignore[assignment]
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
