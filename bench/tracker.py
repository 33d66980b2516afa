"""Tracker time per frame: smartcity's C++ ByteTracker against Roboflow's trackers.ByteTrackTracker.

Both get the same detections: N objects moving at constant velocity over 1280x720 with jitter,
5 % misses, low-score boxes and a few false boxes per frame, 300 frames at 10 fps. Ours runs
in this process (`ByteTracker.update` per frame, the Python call included); the peer runs in
a child process of its own environment (`trackers` brings supervision, SciPy and NumPy pins of
its own, so it lives in build/bench-venv, which `make bench` creates). Runs alternate, best of
`--reps` counts. Prints ms per frame and the ratio at 10, 50, 100 and 200 objects; the goal of
issue 5 is 50x or better at 100 objects. A second column of ours is the same run with a camera
calibration set (ground points and speeds on, the default ground-plane Kalman filter per
track, docs/tracking.md), which the peer does not compute at all: what a calibrated camera costs.

    .venv/bin/python bench/tracker.py [--reps 3] [--peer-python build/bench-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
W, H, FRAMES, FPS = 1280, 720, 300, 10


def detections(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 0], [W, H], (n, 2))
    vel = rng.uniform(-12, 12, (n, 2))
    size = rng.uniform([20, 40], [120, 160], (n, 2))
    out = []
    for _ in range(FRAMES):
        pos = (pos + vel) % [W, H]
        keep = rng.random(n) > 0.05
        c = pos[keep] + rng.normal(0, 2, (int(keep.sum()), 2))
        s = size[keep]
        boxes = np.concatenate([c - s / 2, c + s / 2], axis=1)
        scores = np.where(rng.random(len(boxes)) < 0.15, 0.3, 0.9) + rng.uniform(-0.05, 0.05)
        fp = rng.uniform([0, 0], [W - 50, H - 50], (3, 2))
        boxes = np.concatenate([boxes, np.concatenate([fp, fp + 40], axis=1)])
        scores = np.concatenate([scores, rng.uniform(0.2, 0.6, 3)])
        out.append((boxes.astype(np.float32), scores.astype(np.float32)))
    return out


# Image to ground: 5 cm a pixel, y up the picture (a top-down view of the bench's 1280x720).
GROUND = np.array([[0.05, 0.0, 0.0], [0.0, -0.05, 36.0], [0.0, 0.0, 1.0]])


def time_ours(dets: list[tuple[np.ndarray, np.ndarray]], calibrated: bool = False) -> float:
    from smartcity.tracking import ByteTracker

    t = ByteTracker(track_thresh=0.5, match_thresh=0.8, track_buffer=30, frame_rate=FPS)
    if calibrated:
        t.set_calibration(GROUND)
    cls = [np.zeros(len(s), np.int32) for _, s in dets]
    t0 = time.perf_counter()
    for (b, s), c in zip(dets, cls, strict=True):
        t.update(b, s, c)
    return (time.perf_counter() - t0) / len(dets) * 1e3


def time_peer(path: str) -> float:
    """Runs in the peer's environment: ms per frame of trackers.ByteTrackTracker."""
    import warnings

    import supervision as sv
    import trackers

    data = np.load(path)
    n = int(data["frames"])
    dets = [(data[f"b{i}"], data[f"s{i}"]) for i in range(n)]
    t = trackers.ByteTrackTracker(lost_track_buffer=30, frame_rate=FPS)
    sdets = [sv.Detections(xyxy=b, confidence=s, class_id=np.zeros(len(s), int)) for b, s in dets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for d in sdets:
            t.update(d)
        return (time.perf_counter() - t0) / n * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--objects", default="10,50,100,200")
    ap.add_argument("--peer-python", default=str(ROOT / "build" / "bench-venv" / "bin" / "python"))
    ap.add_argument("--peer", help=argparse.SUPPRESS)  # child mode: a .npz of detections
    a = ap.parse_args()
    if a.peer:
        print(json.dumps({"ms": time_peer(a.peer)}))
        return 0
    if not Path(a.peer_python).exists():
        print(f"no peer environment at {a.peer_python}: run `make bench` (it creates it)")
        return 2
    print(f"tracker ms/frame, {FRAMES} frames, best of {a.reps} (ratio = peer / ours)")
    head = f"{'objects':>8} {'ours':>9} {'trackers':>9} {'ratio':>8}"
    print(f"{head} {'ours+ground':>12} {'ratio':>8}")
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.objects.split(",")):
            dets = detections(n)
            path = Path(tmp) / f"d{n}.npz"
            arrays = {f"b{i}": b for i, (b, _) in enumerate(dets)}
            arrays.update({f"s{i}": s for i, (_, s) in enumerate(dets)})
            np.savez(path, frames=len(dets), **arrays)  # type: ignore[arg-type]
            ours, ground, peer = [], [], []
            for _ in range(a.reps):
                ours.append(time_ours(dets))
                ground.append(time_ours(dets, calibrated=True))
                out = subprocess.run(
                    [a.peer_python, __file__, "--peer", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                peer.append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
            o, g, p = min(ours), min(ground), min(peer)
            ratios[n] = p / o
            print(f"{n:>8} {o:>9.3f} {p:>9.3f} {p / o:>7.1f}x {g:>12.3f} {p / g:>7.1f}x")
    goal = ratios.get(100)
    if goal is not None:
        verdict = "met" if goal >= 50 else "MISSED"
        print(f"goal (issue 5): 50x at 100 objects -> {goal:.1f}x {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
