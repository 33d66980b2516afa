"""A detector training set from rendered scenarios: images + YOLO labels, split by seed.

    DIR/images/{train,val,test}/NAME_sSEED_fFRAME.jpg
    DIR/labels/{train,val,test}/NAME_sSEED_fFRAME.txt    class cx cy w h (normalized)
    DIR/data.yaml                                          Ultralytics-style: splits, names
    DIR/manifest.jsonl                                     one line per image (what, where, why)
    DIR/dataset.json                                       the parameters and the counts

Every (scenario, seed) pair is one scene instance; all frames of one seed go to one split, so
no split shares a scene instance (nor, since the split is per seed, a seed) with another. Labels
are the truth's visible boxes; an object too small or too hidden to learn from is left out
(``LabelRules``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.scenarios.render import Renderer, prepare
from smartcity.scenarios.schema import Scenario, ScenarioError

# the appliance's classes, in the order of the class ids written to the labels
DATASET_CLASSES = APPLIANCE_CLASSES
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelRules:
    """Which visible objects get a label (the others are left out of the label file).

    min_box_px: the visible box's shorter side must be at least this many pixels (at the
    written resolution); min_visible_px: at least this many visible silhouette pixels;
    max_occlusion: covered by nearer objects at most this fraction; max_truncation: cut by the
    image border at most this fraction.
    """

    min_box_px: float = 6.0
    min_visible_px: int = 40
    max_occlusion: float = 0.7
    max_truncation: float = 0.7

    def keep(self, obj: dict[str, Any]) -> bool:
        x0, y0, x1, y1 = obj["box"]
        return (
            min(x1 - x0, y1 - y0) >= self.min_box_px
            and obj["visible_px"] >= self.min_visible_px
            and obj["occlusion"] <= self.max_occlusion
            and obj["truncation"] <= self.max_truncation
        )


def yolo_line(obj: dict[str, Any], width: int, height: int) -> str:
    """`class cx cy w h`, normalized to the image, from a truth object's box."""
    x0, y0, x1, y1 = obj["box"]
    cls = DATASET_CLASSES.index(obj["class"])
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    w, h = (x1 - x0) / width, (y1 - y0) / height
    return f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def split_seeds(seeds: Sequence[int], val: float = 0.1, test: float = 0.1) -> dict[int, str]:
    """Each seed's split: the highest seeds go to test, the ones below them to val, the rest
    to train. With three seeds or more, val and test get at least one seed each (when their
    fraction is above 0); with fewer, every seed is train."""
    order = sorted(set(seeds))
    n = len(order)
    n_test = n_val = 0
    if n >= 3:
        n_test = max(1, round(n * test)) if test > 0 else 0
        n_val = max(1, round(n * val)) if val > 0 else 0
        if n_test + n_val >= n:
            raise ScenarioError(f"{n} seeds are too few for val {val} and test {test}")
    out: dict[int, str] = {}
    for i, s in enumerate(order):
        if i >= n - n_test:
            out[s] = "test"
        elif i >= n - n_test - n_val:
            out[s] = "val"
        else:
            out[s] = "train"
    return out


def parse_seeds(text: str) -> list[int]:
    """'0-9', '1,4,7' or '0-4,10' as a sorted list of distinct seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.update(range(lo, hi + 1))
            else:
                seeds.add(int(part))
            if min(seeds) < 0:
                raise ValueError
        except ValueError:
            raise ScenarioError(f"seeds: cannot read {part!r} (use 0-9 or 1,4,7)") from None
    if not seeds:
        raise ScenarioError("seeds: none given")
    return sorted(seeds)


def sample_frames(frames: int, n: int) -> list[int]:
    """n frames spread evenly over the scene (the middle of n equal slices), ascending."""
    n = max(1, min(n, frames))
    return sorted({min(frames - 1, int((i + 0.5) * frames / n)) for i in range(n)})


@dataclass
class DatasetSummary:
    out: Path
    images: dict[str, int]
    labels: dict[str, int]
    skipped: int
    per_class: dict[str, int]
    seeds: dict[int, str]


def write_dataset(
    out_dir: str | Path,
    scenarios: Iterable[Scenario],
    seeds: Sequence[int],
    frames_per_scene: int = 20,
    resolution: str = "640x360",
    image_format: str = "jpg",
    jpeg_quality: int = 90,
    rules: LabelRules | None = None,
    val: float = 0.1,
    test: float = 0.1,
    progress: Callable[[str], None] | None = None,
) -> DatasetSummary:
    """Renders `frames_per_scene` frames of every scenario at every seed into a YOLO dataset."""
    if image_format not in ("jpg", "png"):
        raise ScenarioError(f"image format must be jpg or png, got {image_format!r}")
    rules = rules or LabelRules()
    out = Path(out_dir)
    split_of = split_seeds(seeds, val, test)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        if image_format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    images = dict.fromkeys(SPLITS, 0)
    labels = dict.fromkeys(SPLITS, 0)
    per_class = dict.fromkeys(DATASET_CLASSES, 0)
    skipped = 0
    names: list[str] = []
    with open(out / "manifest.jsonl", "w") as manifest:
        for sc in scenarios:
            names.append(sc.name)
            for seed in sorted(split_of):
                split = split_of[seed]
                prep = prepare(sc, seed=seed, resolution=resolution)
                renderer = Renderer(prep)
                w, h = prep.camera.width, prep.camera.height
                chosen = sample_frames(renderer.frames, frames_per_scene)
                if progress is not None:
                    progress(f"{sc.name} seed {seed} ({split}): {len(chosen)} frames")
                for f in chosen:
                    img, rec = renderer.render(f)
                    stem = f"{sc.name}_s{seed}_f{f:05d}"
                    kept = [o for o in rec["objects"] if rules.keep(o)]
                    left_out = [o["id"] for o in rec["objects"] if not rules.keep(o)]
                    lines = [yolo_line(o, w, h) for o in kept]
                    image_path = out / "images" / split / f"{stem}.{image_format}"
                    if not cv2.imwrite(str(image_path), img, params):
                        raise OSError(f"cannot write {image_path}")
                    label_path = out / "labels" / split / f"{stem}.txt"
                    label_path.write_text("".join(line + "\n" for line in lines))
                    images[split] += 1
                    labels[split] += len(lines)
                    skipped += len(left_out)
                    for o in kept:
                        per_class[o["class"]] += 1
                    entry = {
                        "image": str(image_path.relative_to(out)),
                        "label": str(label_path.relative_to(out)),
                        "split": split,
                        "scenario": sc.name,
                        "seed": seed,
                        "frame": f,
                        "t": rec["t"],
                        "width": w,
                        "height": h,
                        "labelled_ids": [o["id"] for o in kept],
                        "left_out_ids": left_out,
                    }
                    manifest.write(json.dumps(entry, separators=(",", ":")) + "\n")
    (out / "data.yaml").write_text(_data_yaml())
    summary = DatasetSummary(out, images, labels, skipped, per_class, split_of)
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "classes": list(DATASET_CLASSES),
                "scenarios": names,
                "seeds": {str(s): sp for s, sp in split_of.items()},
                "frames_per_scene": frames_per_scene,
                "resolution": resolution,
                "image_format": image_format,
                "rules": asdict(rules),
                "images": images,
                "labels": labels,
                "left_out": skipped,
                "per_class": per_class,
            },
            indent=1,
        )
        + "\n"
    )
    return summary


def _data_yaml() -> str:
    # no `path`: the splits are relative to this file's folder
    lines = ["# smartcity scenarios dataset (docs/scenarios.md)"]
    lines += [f"{s}: images/{s}" for s in SPLITS]
    lines.append(f"nc: {len(DATASET_CLASSES)}")
    lines.append("names:")
    lines += [f"  {i}: {n}" for i, n in enumerate(DATASET_CLASSES)]
    return "\n".join(lines) + "\n"


def read_labels(path: Path) -> np.ndarray:
    """A YOLO label file as an (N, 5) float array: class, cx, cy, w, h."""
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line]
    return np.array(rows, np.float64).reshape(-1, 5)
