"""The incident rules behind the full pipeline: video -> model -> tracker -> rules (issue 6).

The oracle tests (test_rules_scenes.py) hand the tracker the truth boxes; these run the
appliance's own path (smartcity.incidents.rules.oracle.run_scene with a detector): the library
scene rendered to H.264 MP4 at 640x360, decoded and letterboxed by ``smartcity._core.Pipeline``
with the model card's options (every frame, ``block_when_busy``), the synthetic-traffic model
through ONNX Runtime and ``detect()``, the camera's tracker inside the pipeline with the scene's
calibration, and the same RuleSet and scoring as the oracle path. The model is loaded through
its card (models/synthetic-traffic), whatever its input size.

The thresholds below are what the current model honestly does, with margin: each says the
figure measured on 2026-11-27 beside it (model sha256 fe18f3b5..., 640x384; the one before it,
71c87b70..., in brackets where it differs). They are not the issue's
goals (precision and recall >= 0.95, speed MAE <= 3 km/h): docs/incidents.md has the table of
the full pipeline beside the oracle's and what limits it.

vtest: tests/media/vtest-h264.mp4 is real footage of people walking on a campus (no moving
vehicle). With an assumed geometry (oracle.VTEST_GEOMETRY: a calibration and two lanes over
the walkway), no vehicle rule may fire on it: through person-ssdlite trivially (it only knows
people), through synthetic-traffic as the real test of false vehicles reaching the rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartcity import scenarios
from smartcity.incidents.rules import oracle

MODEL = "synthetic-traffic"


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("renders")


_runs: dict[tuple[str, float | None], oracle.SceneRun] = {}


def scene(name: str, cache: Path, analyze_fps: float | None = None) -> oracle.SceneRun:
    if (name, analyze_fps) not in _runs:
        _runs[(name, analyze_fps)] = oracle.run_scene(
            name, resolution="640x360", detector=MODEL, cache_dir=cache, analyze_fps=analyze_fps
        )
    return _runs[(name, analyze_fps)]


# (scene, incident type it is about, most false findings of any type, speed MAE limit km/h)
# measured: wrong_way_urban 0 false, MAE 3.0 km/h over 458 (5.3); speeding_arterial 0 false
# (2: a second speeding finding on a car, a wrong-way on a far bus), MAE 8.1 over 222 (9.7).
DEFAULT = [("wrong_way_urban", "wrong_way", 2, 6.0), ("speeding_arterial", "speeding", 2, 12.0)]


@pytest.mark.parametrize(("name", "kind", "max_false", "max_mae"), DEFAULT)
def test_full_pipeline_finds_the_scene_incident(
    renders: Path, name: str, kind: str, max_false: int, max_mae: float
) -> None:
    run = scene(name, renders)
    # every frame of the video was analysed (run_scene checks that each frame number is a
    # frame index of the truth)
    assert run.frames == run.head["frames"]
    scores = oracle.score(run)
    s = scores[kind]
    assert s.expected >= 1
    assert s.recalled == s.expected, s.misses  # measured: 1 of 1 on both scenes
    false = [f for sc in scores.values() for f in sc.false]
    assert len(false) <= max_false, false
    assert len(run.speed_errors) >= 150, len(run.speed_errors)  # measured 458 and 222
    mae = float(np.mean(run.speed_errors))
    assert mae <= max_mae, mae


def test_full_pipeline_hands_the_rules_the_cars(renders: Path) -> None:
    """Per frame, the tracks the rules get against the truth (IoU >= 0.5, same class)."""
    cars = oracle.ClassCounts()
    for name, *_ in DEFAULT:
        cars.add(scene(name, renders).per_class["car"])
    # measured: recall 0.946 (0.95) on the 672 cars at least 12 px each way and occluded under
    # half (0.66 over every car of 4 px and more: the far ones are missed), precision 0.92
    # (0.79), no track on a truck or bus
    assert cars.clear >= 500
    assert cars.recall_clear >= 0.85, vars(cars)
    assert cars.precision >= 0.8, vars(cars)
    assert cars.wrong_class <= 0.05 * cars.tracks, vars(cars)


def test_replay_gives_the_pipeline_tracks(renders: Path) -> None:
    """bench/accuracy.py --replay: the detections recorded from the pipeline, handed to a
    standalone tracker set as the pipeline sets the camera's (the card's box bias, the
    analysis rate, the calibration), give the pipeline's own tracks to the digit."""
    det = oracle.load_detector(MODEL)
    with oracle.rendered_video("wrong_way_urban", cache_dir=renders) as (video, st):
        H = np.asarray(st.head["camera"]["image_to_ground"])
        fps = float(st.head["fps"])
        for old in video.parent.glob("dets-*.npz"):
            old.unlink()
        piped = oracle.replay_tracks(video, det, "cam", H, fps, None)  # runs and records
        kept = list(video.parent.glob("dets-*.npz"))
        replayed = oracle.replay_tracks(video, det, "cam", H, fps, None)  # replays
    assert len(kept) == 1 and len(piped) == len(replayed) == st.head["frames"]
    assert sum(len(f.track_id) for f in piped) > 500  # measured 744
    for a, b in zip(piped, replayed, strict=True):
        assert (a.frame, a.pts, a.w, a.h) == (b.frame, b.pts, b.w, b.h)
        for k in ("track_id", "class_id", "score", "xyxy", "ground_xy", "speed_kmh"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


# Every other library scene, slow (about 5 minutes on the shared 2-core machine, renders included).
# Measured with the stage-6 model (2026-11-28) and the stage-9 model (2026-11-29, 7 min 48 s): every
# expected incident the scene showed is found. The wrong-way car at night (its far box jitters 6 m
# between frames at 25 fps, which restarts the step check's drive) was a known miss until
# wrong-way's long path (tenth session); the speeding motorcycle until speeding's `min_m` (and, with
# stage 9, until speeding kept ground points from a track's first frame). Precision is asserted for
# every type: no false finding on any scene since the rule and tracker changes for far, jittering
# boxes (duplicate tracks, speeding's confidence check, wrong-way's pixel span; 2026-11-28).
SLOW = [n for n in scenarios.library_names() if n not in {d[0] for d in DEFAULT}]
KNOWN_MISSES: set[tuple[str, str]] = set()


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_full_pipeline_recall_on_the_library(renders: Path, name: str) -> None:
    run = scene(name, renders)
    assert run.frames == run.head["frames"]
    for kind, s in oracle.score(run).items():
        if (name, kind) not in KNOWN_MISSES:
            assert s.recalled_seen == s.expected_seen, (kind, s.misses)
        assert s.false == [], (kind, s.false)


def vtest_run(model: str) -> oracle.ClipRun:
    return oracle.run_clip(oracle.VTEST, oracle.VTEST_GEOMETRY, model, cam="vtest")


def test_vtest_no_vehicle_incident_with_synthetic_traffic(vtest: Path) -> None:
    """Real footage through the model trained on rendered scenes: any false vehicle it sees on
    the walkway reaches the rules. The file of 2026-11-27 failed this (a "truck" over the grass
    whose bottom lay on the walkway: stopped_vehicle at 40.8 s; 69 vehicle tracks); the file of
    2026-11-28 (55 more minutes of training) passes: 15 short vehicle tracks, no incident
    (docs/incidents.md)."""
    assert vtest == oracle.VTEST
    run = vtest_run(MODEL)
    assert run.frames == 795
    found = [(f.rule, f.key, round(f.pts, 1), dict(f.details)) for f in run.opened()]
    assert found == [], (found, run.tracks)


def test_vtest_no_vehicle_incident_with_person_ssdlite(vtest: Path) -> None:
    run = vtest_run("person-ssdlite")
    assert run.frames == 795
    assert set(run.tracks) == {"person"}
    assert run.tracks["person"] >= 20  # people are there and tracked (measured 109 ids)
    assert run.opened() == []


@pytest.mark.slow
def test_full_pipeline_at_a_lower_analysis_rate(renders: Path) -> None:
    """10 frames a second of the 25 (the engine's default is 5): the wrong-way car is still
    found, and only the sampled frames are analysed."""
    run = scene("wrong_way_urban", renders, analyze_fps=10.0)
    assert 195 <= run.frames <= 205
    s = oracle.score(run)["wrong_way"]
    assert s.recalled == s.expected == 1, s.misses
