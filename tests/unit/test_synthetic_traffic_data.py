"""models/synthetic-traffic/dataset.py's opt-in grey part: its scenes parse, and while its
palette is open every vehicle but a bus is painted in the road's own shades; the library's
palette comes back afterwards, also when rendering fails."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from smartcity.scenarios import motion

SCRIPT = Path(__file__).resolve().parents[2] / "models" / "synthetic-traffic" / "dataset.py"


@pytest.fixture(scope="module")
def dataset():
    spec = importlib.util.spec_from_file_location("st_dataset", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["st_dataset"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("st_dataset", None)


def test_grey_scenes_are_dense_car_traffic_on_four_presets(dataset):
    scs = dataset.grey_scenarios()
    assert len(scs) == 8
    assert {sc.preset for sc in scs} == {"urban_straight", "arterial", "highway", "junction"}
    for sc in scs:
        assert sc.seconds <= dataset.MAX_SECONDS
        (flow,) = sc.traffic
        assert max(flow.classes, key=lambda cw: cw[1])[0] == "car"


def test_grey_palette_paints_vehicles_grey_and_restores_the_library_palette(dataset):
    before = list(motion.VEHICLE_PALETTE)
    grey = set(dataset.GREY_PALETTE)
    assert grey <= {c for c, _ in before}  # every shade is one of the library's own
    rng = np.random.default_rng(7)
    with dataset.grey_palette():
        drawn = {motion._colours("car", rng)[0] for _ in range(400)}
        drawn |= {motion._colours("truck", rng)[0] for _ in range(100)}
    assert drawn == grey
    assert motion.VEHICLE_PALETTE == before
    with pytest.raises(RuntimeError), dataset.grey_palette():
        raise RuntimeError("render failed")
    assert motion.VEHICLE_PALETTE == before
    drawn = {motion._colours("car", rng)[0] for _ in range(400)}
    assert not drawn <= grey  # white, red, blue ... again
