"""Render the training set of the synthetic-traffic model (YOLO layout, the project's writer).

    .venv/bin/python models/synthetic-traffic/dataset.py --out /tmp/stdata

Two parts, both written by smartcity.scenarios.dataset.write_dataset (split by seed):

- every library scenario as written (its own effects: night, rain, noise, shake where it has
  them), seeds 0-9 (train 0-7, val 8, test 9), 16 frames per scene;
- the same day scenarios with their effects turned to night, and to rain (0.6 with noise 3),
  seeds 20-29 (train 20-27, val 28, test 29), 6 frames per scene each, so that night and rain
  are seen on every preset and not only in the three library scenes that have them.

Scenes longer than 30 s are cut to 30 s (the frames are spread over the scene either way).
Evaluation (evaluate.py) uses seeds 100 and up, which no part of this set uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from smartcity import scenarios as S
from smartcity.scenarios.dataset import write_dataset

MAX_SECONDS = 30.0


def cut(sc: S.Scenario) -> S.Scenario:
    return dataclasses.replace(sc, seconds=min(sc.seconds, MAX_SECONDS))


def variant(sc: S.Scenario, kind: str) -> S.Scenario:
    fx = sc.effects
    if kind == "night":
        fx = dataclasses.replace(fx, night=True, noise=max(fx.noise, 2.0))
    elif kind == "rain":
        fx = dataclasses.replace(fx, rain=0.6, noise=max(fx.noise, 3.0), brightness_drift=0.1)
    else:
        raise ValueError(kind)
    return dataclasses.replace(cut(sc), name=f"{sc.name}__{kind}", effects=fx)


def day_library() -> list[S.Scenario]:
    out = []
    for name in S.library_names():
        sc = S.load(name)
        if not sc.effects.night and sc.effects.rain == 0:
            out.append(sc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--variant-frames", type=int, default=6)
    ap.add_argument("--resolution", default="640x360")
    a = ap.parse_args()
    out = Path(a.out)
    t0 = time.time()
    lib = [cut(S.load(n)) for n in S.library_names()]
    s1 = write_dataset(out / "library", lib, list(range(0, 10)), a.frames, a.resolution)
    t1 = time.time()
    print(f"library: {s1.images} in {t1 - t0:.0f} s", flush=True)
    var = [variant(sc, k) for sc in day_library() for k in ("night", "rain")]
    s2 = write_dataset(out / "variants", var, list(range(20, 30)), a.variant_frames, a.resolution)
    print(f"variants: {s2.images} in {time.time() - t1:.0f} s", flush=True)


if __name__ == "__main__":
    main()
