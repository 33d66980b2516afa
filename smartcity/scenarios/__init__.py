"""Synthetic traffic scenes with ground truth (docs/scenarios.md).

from smartcity import scenarios
sc = scenarios.load("wrong_way_urban")          # a named scenario from library/
out = scenarios.render_to_dir(sc, "out/")       # NAME.mp4, NAME.truth.jsonl, NAME.scenario.json
"""

from __future__ import annotations

from pathlib import Path

from smartcity.scenarios.camera import RESOLUTIONS, Camera, apply_homography
from smartcity.scenarios.motion import Tracks, simulate
from smartcity.scenarios.render import (
    Prepared,
    Rendered,
    Renderer,
    VideoWriter,
    prepare,
    render_to_dir,
    scenario_record,
)
from smartcity.scenarios.schema import (
    Scenario,
    ScenarioError,
    load_scenario_file,
    load_scenario_text,
    parse_scenario,
)
from smartcity.scenarios.truth import TruthError, validate_truth
from smartcity.scenarios.world import PRESETS, Scene, make_scene

LIBRARY = Path(__file__).resolve().parent / "library"


def library_names() -> list[str]:
    """Names of the scenarios in the library (file stems, sorted)."""
    return sorted(p.stem for p in LIBRARY.glob("*.yaml"))


def load(name: str) -> Scenario:
    """A library scenario by name, or a YAML file by path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return load_scenario_file(p)
    path = LIBRARY / f"{name}.yaml"
    if not path.is_file():
        raise ScenarioError(f"unknown scenario {name!r} (smartcity scenarios list)")
    sc = load_scenario_file(path)
    if sc.name != name:
        raise ScenarioError(f"{path.name}: name must be {name!r} (the file's stem)")
    return sc


__all__ = [
    "LIBRARY",
    "PRESETS",
    "RESOLUTIONS",
    "Camera",
    "Prepared",
    "Rendered",
    "Renderer",
    "Scenario",
    "ScenarioError",
    "Scene",
    "Tracks",
    "TruthError",
    "VideoWriter",
    "apply_homography",
    "library_names",
    "load",
    "load_scenario_file",
    "load_scenario_text",
    "make_scene",
    "parse_scenario",
    "prepare",
    "render_to_dir",
    "scenario_record",
    "simulate",
    "validate_truth",
]
