"""A model's box-bottom bias, measured on rendered scenes whose truth is known (docs/detection.md).

A detector does not place a box's bottom edge exactly where the object meets the road, and how
far off it is depends on the box's size (the synthetic-traffic model puts the bottom of a 35-70
px vehicle 1.4-1.9 px low, of a 10-17 px one 0.1-0.2 px high). The tracker takes a vehicle's
ground position from its box bottom, so as a vehicle drives away and its box shrinks, the error
changes and reads as speed. `measure` renders library scenes, runs the model through the
appliance's own pipeline, matches each detection to the truth box it covers (IoU >= 0.5, the
object at most 30 % hidden and not cut by the frame's edge) and takes, per band of box heights,
the median of (detected bottom - true bottom) in the model's input pixels. The card keeps the
table as ``box_bias.bottom_px``; the tracker takes it off before the ground position.

    smartcity models box-bias synthetic-traffic --seeds 2 [--write]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.engine.models import BOX_BIAS_DEFAULT_CLASSES
from smartcity.incidents.rules import oracle
from smartcity.scenarios import library_names

#: Bands of detected box heights (input pixels) the medians are taken over.
HEIGHT_EDGES = (0.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 60.0, 100.0, 400.0)
#: A band needs this many matched boxes to get a point of the table.
MIN_SAMPLES = 300
#: The scenes measured by default: every vehicle scene of the library.
DEFAULT_SCENES = (
    "congestion_arterial", "counting_arterial", "crash_head_on_urban", "crash_rear_end_arterial",
    "junction_cross_traffic", "lane_changes_highway", "mixed_urban_bikes", "quiet_arterial_rain",
    "quiet_highway", "quiet_urban", "red_light_queue_urban", "speeding_arterial",
    "speeding_motorcycle_highway", "stopped_vehicle_highway", "stopped_vehicle_junction",
    "stopped_vehicle_urban", "traffic_jam_highway", "wrong_way_highway", "wrong_way_junction",
    "wrong_way_night_highway", "wrong_way_urban",
)  # fmt: skip


@dataclass
class BiasSamples:
    """Matched boxes: detected height and (detected - true) bottom, both in input pixels."""

    heights: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)

    def add(self, heights: np.ndarray, offsets: np.ndarray) -> None:
        self.heights += [float(h) for h in heights]
        self.offsets += [float(o) for o in offsets]


def fit_bottom_bias(
    heights: Sequence[float],
    offsets: Sequence[float],
    edges: Sequence[float] = HEIGHT_EDGES,
    min_samples: int = MIN_SAMPLES,
) -> list[tuple[float, float, int]]:
    """(median height, median offset, samples) per band of ``edges`` holding ``min_samples``
    or more, rounded to 0.01 px; ValueError when no band has enough."""
    h = np.asarray(heights, np.float64)
    o = np.asarray(offsets, np.float64)
    if h.shape != o.shape:
        raise ValueError("heights and offsets must have the same length")
    ok = np.isfinite(h) & np.isfinite(o) & (h > 0)
    h, o = h[ok], o[ok]
    out: list[tuple[float, float, int]] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (h > lo) & (h <= hi)
        n = int(sel.sum())
        if n < min_samples:
            continue
        hm, om = float(np.median(h[sel])), float(np.median(o[sel]))
        if abs(om) <= hm / 2 and (not out or round(hm, 2) > out[-1][0]):
            out.append((round(hm, 2), round(om, 2), n))
    if not out:
        raise ValueError(f"no band of box heights has {min_samples} matched boxes: measure more")
    return out


def match_frame(
    boxes: np.ndarray,
    scale_y: float,
    truth: list[dict[str, Any]],
    classes: Sequence[str],
    samples: BiasSamples,
) -> None:
    """Adds the frame's detections (frame pixels) that cover a clear truth box of ``classes``."""
    clear = [
        o for o in truth
        if o["class"] in classes and o["occlusion"] < 0.3 and o["truncation"] < 0.05
    ]  # fmt: skip
    if not len(boxes) or not clear:
        return
    tb = np.array([o["box"] for o in clear], np.float32).reshape(-1, 4)
    iou = oracle.iou_matrix(boxes, tb)
    best = iou.argmax(axis=1)
    hit = iou[np.arange(len(boxes)), best] >= 0.5
    if not hit.any():
        return
    d, t = boxes[hit], tb[best[hit]]
    samples.add((d[:, 3] - d[:, 1]) * scale_y, (d[:, 3] - t[:, 3]) * scale_y)


def measure(
    model: str | Path | Any,
    scenes: Sequence[str] = DEFAULT_SCENES,
    seeds: Sequence[int | None] = (2,),
    resolution: str = "640x360",
    classes: Sequence[str] = BOX_BIAS_DEFAULT_CLASSES,
    cache_dir: str | Path | None = None,
    progress: Any = None,
) -> BiasSamples:
    """Matched boxes of ``model`` (a model folder, a name under models/ or a Detector) on the
    library ``scenes`` rendered at each of ``seeds``."""

    for c in classes:
        if c not in APPLIANCE_CLASSES:
            raise ValueError(f"classes: {c!r} is not an appliance class")
    known = library_names()
    for name in scenes:
        if name not in known:
            raise ValueError(f"scenes: {name!r} is not a library scene ({', '.join(known)})")
    det = oracle.load_detector(model)
    samples = BiasSamples()
    for name in scenes:
        for seed in seeds:
            with oracle.rendered_video(name, None, resolution, seed, cache_dir) as (video, st):

                def seen(batch: Any, dets: list[Any]) -> None:
                    for i, fn in enumerate(batch.frame_numbers):
                        if 0 <= fn < len(st.frames) and dets[i] is not None:
                            boxes = np.asarray(dets[i].xyxy, np.float32).reshape(-1, 4)
                            sy = float(batch.scale[i, 1])
                            match_frame(boxes, sy, st.frames[int(fn)], classes, samples)

                oracle.pipeline_frames(video, det, name, on_detections=seen)
            if progress is not None:
                progress(f"{name} seed {seed}: {len(samples.heights)} boxes so far")
    return samples


def card_text(
    text: str, table: list[tuple[float, float, int]], classes: Sequence[str], note: str
) -> str:
    """A card's YAML text with its top-level box_bias block replaced by (or, where it has none,
    followed by) the measured one; the rest of the text, comments included, is kept."""
    lines = text.splitlines()
    out: list[str] = []
    skipping = False
    for ln in lines:
        top = bool(ln) and not ln[0].isspace() and not ln.startswith("#")
        if top:
            skipping = ln.split(":", 1)[0].strip() == "box_bias"
        if not skipping:
            out.append(ln)
    while out and not out[-1].strip():
        out.pop()
    pts = ", ".join(f"[{h:g}, {o:g}]" for h, o, _ in table)
    out += [
        "",
        "box_bias:                  # smartcity models box-bias (docs/detection.md)",
        f"  bottom_px: [{pts}]",
        f"  classes: [{', '.join(classes)}]",
        f"  measured: {json.dumps(note)}",
    ]
    return "\n".join(out) + "\n"


def cmd_box_bias(
    name: str,
    root: Path,
    scenes: Sequence[str],
    seeds: Sequence[int | None],
    resolution: str,
    write: bool,
    cache_dir: str | Path | None = None,
) -> int:
    """Measures, prints the table and, with ``write``, puts it into the card (checked by
    loading the new card before the file is replaced). 0 done, 1 refused, 2 no such model."""
    import sys
    from datetime import UTC, datetime

    import yaml

    from smartcity.engine.models import CardError, load_card, parse_box_bias

    d = root / name
    if not (d / "model.yaml").is_file():
        print(f"smartcity models: no model {name!r} in {root}", file=sys.stderr)
        return 2
    try:
        card = load_card(d)
        classes = card.box_bias_classes or BOX_BIAS_DEFAULT_CLASSES
        samples = measure(d, scenes, seeds, resolution, classes, cache_dir,
                          progress=lambda m: print(f"  {m}", flush=True))  # fmt: skip
        table = fit_bottom_bias(samples.heights, samples.offsets)
    except (CardError, ValueError) as e:
        print(f"smartcity models: {e}", file=sys.stderr)
        return 1
    print(f"{name}: box bottom minus the true bottom, input pixels, by detected box height")
    print(f"  {'height':>8} {'offset':>8} {'boxes':>7}")
    for h, o, n in table:
        print(f"  {h:>8.2f} {o:>8.2f} {n:>7}")
    if card.box_bias:
        print(f"  (the card has: {[list(p) for p in card.box_bias]})")
    if not write:
        print("not written (--write puts it into the card)")
        return 0
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    seeds_s = ",".join(str(s) for s in seeds)
    n = len(samples.heights)
    note = f"{when}, {len(scenes)} scenes at {resolution}, seeds {seeds_s}, {n} boxes"
    path = d / "model.yaml"
    text = card_text(path.read_text(), table, classes, note)
    try:
        parse_box_bias(path, yaml.safe_load(text))
    except (CardError, yaml.YAMLError) as e:
        print(f"smartcity models: the new card would be refused: {e}", file=sys.stderr)
        return 1
    tmp = path.with_name("model.yaml.new")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"written to {path}")
    return 0
