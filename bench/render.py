"""Rendering speed of smartcity.scenarios on one core, against peers measured in the same run.

Goal (issue 3): 1280x720 at 200 frames/s or better on one core. Absolute fps on shared
machines mean little, so every figure is also printed as a ratio against two peers timed on the
same frames in the same process, pinned to the same CPU:

- **copy**: copying the precomputed background into the frame buffer (the floor: what any
  renderer that starts from a static background pays);
- **x264**: encoding the rendered frames with PyAV libx264 (preset veryfast, one thread, the
  encoder ``render`` uses), i.e. how rendering compares with the encoding that follows it.

Each contender runs ``--reps`` times over the same frames, the fastest run counts.
Run: .venv/bin/python bench/render.py [--frames N] [--reps N] [--cpu N]. The last line printed
is one JSON object with every figure. ``--doc-images docs/img`` writes the preset pictures of
docs/scenarios.md instead.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from smartcity import scenarios as S

CASES = [
    # (scenario, first second, what it shows)
    ("quiet_urban", 10.0, "few objects, no effects"),
    ("congestion_arterial", 40.0, "30+ vehicles queueing, heavy occlusion"),
    ("crowd_square", 14.0, "16 people"),
    ("quiet_arterial_rain", 10.0, "rain + noise + brightness drift"),
    ("wrong_way_night_highway", 8.0, "night, headlights, noise"),
    ("speeding_shaky_urban", 4.0, "camera shake + noise"),
]


DOC_SHOTS = [  # (preset, scenario, second) for docs/img/scenario-<preset>.jpg
    ("urban_straight", "quiet_urban", 12.0),
    ("arterial", "congestion_arterial", 40.0),
    ("highway", "quiet_highway", 20.0),
    ("pedestrian_square", "crowd_square", 18.0),
    ("junction", "junction_cross_traffic", 27.0),
]


def doc_images(out_dir: Path) -> None:
    """One frame per preset, 1280x720 rendered, saved at 640x360 (JPEG, about 50 KB)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for preset, name, t in DOC_SHOTS:
        scen = S.load(name)
        prep = S.prepare(scen, seconds=t + 0.1)
        img = S.Renderer(prep).render(int(round(t * scen.fps)))[0]
        small = cv2.resize(img, (640, 360), interpolation=cv2.INTER_AREA)
        path = out_dir / f"scenario-{preset}.jpg"
        cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(f"{path} {path.stat().st_size // 1024} KB")


def best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=0, help="CPU to pin to; -1: no pin")
    ap.add_argument("--resolution", default="1280x720", choices=sorted(S.RESOLUTIONS))
    ap.add_argument("--doc-images", metavar="DIR", help="write one picture per preset and exit")
    args = ap.parse_args()
    if args.doc_images:
        doc_images(Path(args.doc_images))
        return 0
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    cv2.setNumThreads(1)
    n = args.frames
    results = []
    print(f"{args.resolution}, {n} frames per case, best of {args.reps}, cpu {args.cpu}")
    print(
        f"{'scenario':26} {'objects':>7} {'render fps':>10} {'copy fps':>9} {'x264 fps':>9}"
        f" {'render/copy':>11} {'render/x264':>11}  what"
    )
    for name, start, what in CASES:
        scen = S.load(name)
        prep = S.prepare(scen, seconds=start + n / scen.fps + 0.1, resolution=args.resolution)
        r = S.Renderer(prep)
        first = int(round(start * scen.fps))
        frames = range(first, min(first + n, r.frames))
        objects = int(np.mean([prep.tracks.present[f].sum() for f in frames]))
        kept: list[np.ndarray] = []

        def render_all(r: S.Renderer = r, frames: range = frames) -> None:
            for f in frames:
                r.render(f)

        t_render = best(render_all, args.reps)
        for f in frames:
            kept.append(r.render(f)[0].copy())
        buf = np.empty_like(r.background)

        def copy_all(r: S.Renderer = r, frames: range = frames, buf: np.ndarray = buf) -> None:
            for _ in frames:
                np.copyto(buf, r.background)

        t_copy = best(copy_all, args.reps)
        w, h = S.RESOLUTIONS[args.resolution]

        def encode_all(
            kept: list[np.ndarray] = kept, size: tuple[int, int] = (w, h), scen: S.Scenario = scen
        ) -> None:
            with tempfile.TemporaryDirectory() as d:
                vw = S.VideoWriter(Path(d) / "b.mp4", *size, scen.fps, scen.effects.crf, 50)
                for img in kept:
                    vw.write(img)
                vw.close()

        t_enc = best(encode_all, args.reps)
        k = len(frames)
        rec = {
            "scenario": name,
            "objects": objects,
            "render_fps": k / t_render,
            "copy_fps": k / t_copy,
            "x264_fps": k / t_enc,
        }
        rec["render_over_copy"] = rec["render_fps"] / rec["copy_fps"]
        rec["render_over_x264"] = rec["render_fps"] / rec["x264_fps"]
        results.append(rec)
        print(
            f"{name:26} {objects:7d} {rec['render_fps']:10.0f} {rec['copy_fps']:9.0f}"
            f" {rec['x264_fps']:9.0f} {rec['render_over_copy']:11.3f}"
            f" {rec['render_over_x264']:11.2f}  {what}"
        )
    goal = min(r["render_fps"] for r in results[:3])
    print(f"goal 200 fps at 1280x720 without effects: slowest case {goal:.0f} fps")
    print(json.dumps({"resolution": args.resolution, "frames": n, "cases": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
