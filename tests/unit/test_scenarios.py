"""smartcity.scenarios: projection, determinism, the library, truth computed from motion, files."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math

import av
import numpy as np
import pytest

import smartcity as sc
from smartcity import scenarios as S
from smartcity.cli import main as cli_main
from smartcity.scenarios.truth import expected_incidents
from tests.conftest import wait_for

SMALL = "640x360"


def _frames_hash(name: str, frames: int, seed: int | None = None) -> list[str]:
    prep = S.prepare(S.load(name), seconds=frames / 25, seed=seed, resolution=SMALL)
    r = S.Renderer(prep)
    return [hashlib.sha256(r.render(f)[0].tobytes()).hexdigest() for f in range(frames)]


# --------------------------------------------------------------------------- camera


@pytest.mark.parametrize("preset", sorted(S.PRESETS))
@pytest.mark.parametrize("resolution", sorted(S.RESOLUTIONS))
def test_round_trip_through_written_homography_within_1cm_at_30m(preset, resolution):
    w, h = S.RESOLUTIONS[resolution]
    cam = S.make_scene(preset).camera.at_resolution(w, h)
    written = json.loads(json.dumps(cam.to_dict()))  # what the truth file holds
    # ground points 30 m from the camera's foot, across the view
    yaw = math.radians(cam.yaw_deg)
    angles = yaw + np.radians(np.linspace(-15, 15, 7))
    world = np.column_stack(
        [cam.x_m + 30 * np.sin(angles), cam.y_m + 30 * np.cos(angles), np.zeros(7)]
    )
    uv, depth = cam.project(world)  # full 3D pinhole projection
    assert np.all(depth > 0)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    assert inside.sum() >= 3, "30 m should be in view of every preset"
    back = S.apply_homography(np.array(written["image_to_ground"]), uv)
    err = np.hypot(*(back - world[:, :2]).T)
    assert err.max() < 0.01
    # and the forward homography agrees with the pinhole model
    fwd = S.apply_homography(np.array(written["ground_to_image"]), world[:, :2])
    assert np.abs(fwd - uv).max() < 1e-6


def test_camera_pitch_and_yaw_move_the_view():
    a = S.Camera(pitch_deg=10)
    b = S.Camera(pitch_deg=20)
    p = np.array([[0.0, 30.0, 0.0]])
    assert b.project(p)[0][0, 1] < a.project(p)[0][0, 1]  # looking down more: point rises
    c = S.Camera(yaw_deg=10)
    assert c.project(p)[0][0, 0] < a.project(p)[0][0, 0]  # turned right: point moves left


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_frames_bit_for_bit_other_seed_differs():
    a = _frames_hash("quiet_arterial_rain", 12)
    b = _frames_hash("quiet_arterial_rain", 12)
    c = _frames_hash("quiet_arterial_rain", 12, seed=99)
    assert a == b
    assert a != c


def test_same_seed_same_video_file(tmp_path):
    sc_ = S.load("speeding_shaky_urban")
    r1 = S.render_to_dir(sc_, tmp_path / "a", seconds=1, resolution=SMALL)
    r2 = S.render_to_dir(sc_, tmp_path / "b", seconds=1, resolution=SMALL)
    assert r1.video.read_bytes() == r2.video.read_bytes()
    assert r1.truth.read_bytes() == r2.truth.read_bytes()


# --------------------------------------------------------------------------- library


def test_library_has_the_scenarios_other_issues_name():
    names = S.library_names()
    assert len(names) >= 20
    covered = collections.Counter()
    for n in names:
        covered.update(t for t, c in S.load(n).expect if c > 0)
    for kind in (
        "wrong_way",
        "stopped_vehicle",
        "speeding",
        "congestion",
        "crowd",
        "loitering",
        "pedestrian_on_carriageway",
        "crash",
    ):
        assert covered[kind] >= 1, kind
    assert sum(1 for n in names if not S.load(n).expect) >= 5  # quiet scenes
    assert {S.load(n).preset for n in names} == set(S.PRESETS)


@pytest.mark.parametrize("name", S.library_names())
def test_library_scenario_renders_and_truth_validates(name, tmp_path):
    out = S.render_to_dir(S.load(name), tmp_path, seconds=1.2, resolution=SMALL)
    head = S.validate_truth(out.scenario, out.truth)
    assert head["frames"] == out.frames == 30
    assert (head["width"], head["height"]) == (640, 360)
    with av.open(str(out.video)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264"
        frames = [f for f in c.decode(st)]
    assert len(frames) == 30
    assert frames[0].key_frame and not any(f.key_frame for f in frames[1:])  # GOP of 2 s


@pytest.mark.parametrize("name", S.library_names())
def test_incidents_computed_from_motion_match_the_scenario_intent(name):
    scen = S.load(name)
    prep = S.prepare(scen)
    got = collections.Counter(
        i["type"] for i in expected_incidents(scen, prep.scene, prep.camera, prep.tracks)
    )
    assert dict(got) == dict(scen.expect)


# --------------------------------------------------------------------------- truth from motion


def _incidents(scen: S.Scenario) -> list[dict]:
    prep = S.prepare(scen)
    return expected_incidents(scen, prep.scene, prep.camera, prep.tracks)


def test_wrong_way_is_the_scripted_object_and_only_while_against_the_lane():
    scen = S.load("wrong_way_urban")
    inc = [i for i in _incidents(scen) if i["type"] == "wrong_way"]
    assert len(inc) == 1 and inc[0]["object_ids"] == [1] and inc[0]["lane"] == "main.s0"
    assert inc[0]["distance_m"] >= scen.truth.wrong_way_min_m
    assert inc[0]["start_s"] <= inc[0]["detect_after_s"] <= inc[0]["end_s"]
    # the same car with the lane's direction: nothing wrong
    obj = dataclasses.replace(scen.objects[0], against_lane=False, start_m=150.0)
    fixed = dataclasses.replace(scen, objects=(obj,))
    assert [i for i in _incidents(fixed) if i["type"] == "wrong_way"] == []
    # a threshold longer than the drive in view: nothing either
    strict = dataclasses.replace(scen, truth=dataclasses.replace(scen.truth, wrong_way_min_m=1e4))
    assert [i for i in _incidents(strict) if i["type"] == "wrong_way"] == []


def test_stopped_vehicle_starts_when_it_stands_and_follows_the_script():
    scen = S.load("stopped_vehicle_urban")
    (inc,) = [i for i in _incidents(scen) if i["type"] == "stopped_vehicle"]
    # scripted to brake at 7 s from 40 km/h at 3 m/s^2: standing about 3.7 s later
    assert inc["object_ids"] == [1]
    assert 7.0 + 40 / 3.6 / 3.0 - 0.5 <= inc["start_s"] <= 7.0 + 40 / 3.6 / 3.0 + 1.0
    later = dataclasses.replace(
        scen.objects[0], actions=(dataclasses.replace(scen.objects[0].actions[0], at_s=12.0),)
    )
    (inc2,) = [
        i
        for i in _incidents(dataclasses.replace(scen, objects=(later,)))
        if i["type"] == "stopped_vehicle"
    ]
    assert inc2["start_s"] == pytest.approx(inc["start_s"] + 5.0, abs=0.1)


def test_line_counts_equal_the_scripted_crossings(tmp_path):
    scen = S.load("counting_arterial")
    out = S.render_to_dir(scen, tmp_path, resolution=SMALL, seconds=scen.seconds)
    head = json.loads(out.scenario.read_text())
    line = head["lines"]["main"]
    # independent reference: objects scripted on northbound lanes cross forward, southbound
    # lanes backward (the line runs west to east; forward = to its left = north)
    want_f: collections.Counter = collections.Counter()
    want_b: collections.Counter = collections.Counter()
    for o in scen.objects:
        (want_f if ".n" in str(o.lane) else want_b)[o.cls] += 1
    assert {k: v for k, v in line["forward"].items() if v} == dict(want_f)
    assert {k: v for k, v in line["backward"].items() if v} == dict(want_b)
    assert len(line["events"]) == len(scen.objects)
    assert len({e["id"] for e in line["events"]}) == len(scen.objects)


def test_crash_stops_both_vehicles_where_they_met():
    scen = S.load("crash_head_on_urban")
    prep = S.prepare(scen)
    (f, a, b) = prep.tracks.crashes[0]
    speed = prep.tracks.speed
    assert speed[f:, a].max() == 0 and speed[f:, b].max() == 0
    assert speed[f - 1, a] > 5 and speed[f - 1, b] > 5
    gap = math.hypot(
        prep.tracks.x[f, a] - prep.tracks.x[f, b], prep.tracks.y[f, a] - prep.tracks.y[f, b]
    )
    la, lb = prep.tracks.bodies[a].length, prep.tracks.bodies[b].length
    assert gap <= (la + lb) / 2 + 0.5


def test_traffic_queues_instead_of_crashing():
    scen = S.load("congestion_arterial")
    prep = S.prepare(scen)
    assert prep.tracks.crashes == []
    assert prep.tracks.queued.any()


# --------------------------------------------------------------------------- truth per frame


def test_frame_truth_boxes_match_the_painted_pixels():
    scen = S.load("speeding_arterial")
    prep = S.prepare(scen, seconds=8, resolution=SMALL)
    r = S.Renderer(prep)
    for f in range(0, prep.tracks.frames, 20):
        img, rec = r.render(f)
        for o in rec["objects"]:
            if o["occlusion"] > 0 or o["truncation"] > 0 or o["visible_px"] < 200:
                continue
            x0, y0, x1, y1 = (int(v) for v in o["box"])
            diff = np.abs(img.astype(int) - r.background.astype(int)).sum(axis=2) > 30
            inside = diff[y0:y1, x0:x1].sum()
            # the object's pixels differ from the background inside its box
            assert inside >= 0.6 * o["visible_px"], (f, o)


def test_occlusion_ratio_rises_when_a_nearer_object_covers():
    scen = S.load("traffic_jam_highway")
    prep = S.prepare(scen, seconds=40.1, resolution=SMALL)
    _, rec = S.Renderer(prep).render(1000)
    occl = [o["occlusion"] for o in rec["objects"]]
    assert max(occl) > 0.3 and min(occl) == 0.0


# --------------------------------------------------------------------------- effects


def test_night_is_darker_and_effects_change_pixels():
    base = S.load("quiet_urban")
    plain = S.Renderer(S.prepare(base, seconds=0.2, resolution=SMALL)).render(2)[0]
    for fx in ({"night": True}, {"rain": 0.8}, {"noise": 8.0}, {"shake_px": 5.0}):
        scen = dataclasses.replace(base, effects=dataclasses.replace(base.effects, **fx))
        img = S.Renderer(S.prepare(scen, seconds=0.2, resolution=SMALL)).render(2)[0]
        assert not np.array_equal(img, plain), fx
        if "night" in fx:
            assert img.mean() < 0.5 * plain.mean()


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {
                "objects": [{"class": "car", "lane": 0, "speed_kmh": 40}] * 2
                + [{"class": "car", "lane": 0, "speed_kmh": -5}]
            },
            r"^objects\[2\]\.speed_kmh: must be a number in \[0, 400\]",
        ),  # noqa: E501
        (
            {"objects": [{"class": "tram", "lane": 0, "speed_kmh": 40}]},
            r"^objects\[0\]\.class: must be one of",
        ),  # noqa: E501
        (
            {"objects": [{"class": "car", "lane": "main.x9", "speed_kmh": 4}]},
            r"^objects\[0\]\.lane: must be a lane id",
        ),  # noqa: E501
        ({"objects": [{"class": "car", "lane": 0}]}, r"^objects\[0\]\.speed_kmh: required"),
        (
            {"objects": [{"class": "car", "lane": 0, "speed_kmh": 40, "spead": 1}]},
            r"^objects\[0\]\.spead: unknown field",
        ),  # noqa: E501
        ({"effects": {"rain": 3}}, r"^effects\.rain: must be a number in \[0, 1\]"),
        ({"preset": "moon"}, r"^preset: must be one of"),
        ({"seconds": "long"}, r"^seconds: must be a number"),
        ({"traffic": [{"per_minute": 5, "classes": {"tank": 1}}]}, r"^traffic\[0\]\.classes\.tank"),
        ({"expect": {"fire": 1}}, r"^expect\.fire: must be one of"),
        (
            {"crowds": [{"count": 5, "centre": [0, 1], "gather_s": 10, "disperse_s": 5}]},
            r"^crowds\[0\]\.disperse_s",
        ),  # noqa: E501
    ],
)
def test_bad_scenario_names_the_field(patch, message):
    data = {"name": "x", "preset": "urban_straight"}
    data.update(patch)
    with pytest.raises(S.ScenarioError, match=message):
        S.parse_scenario(data)


def test_bad_yaml_text_is_reported():
    with pytest.raises(S.ScenarioError, match="not valid YAML"):
        S.load_scenario_text("name: [unclosed")
    with pytest.raises(S.ScenarioError, match=r"^name: required field is missing"):
        S.load_scenario_text("preset: highway\n")


# --------------------------------------------------------------------------- the core, the CLI


def test_rendered_video_decodes_with_the_core(tmp_path, make_pipeline):
    out = S.render_to_dir(S.load("quiet_urban"), tmp_path, seconds=2, resolution=SMALL)
    p = make_pipeline()
    p.add_stream(sc.StreamConfig(camera_id="s", url=str(out.video), decode_only=True))
    assert wait_for(lambda: p.stream_stats("s")["state"] == "stopped", 60)
    st = p.stream_stats("s")
    assert st["frames_decoded"] == out.frames == 50
    assert st["corrupt_packets"] == 0


def test_cli_lists_and_renders(tmp_path, capsys):
    assert cli_main(["scenarios", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in S.library_names())
    rc = cli_main(
        ["scenarios", "render", "wrong_way_urban", "--out", str(tmp_path), "--seconds", "1",
         "--seed", "5", "--resolution", SMALL]
    )  # fmt: skip
    assert rc == 0
    for suffix in (".mp4", ".truth.jsonl", ".scenario.json"):
        assert (tmp_path / f"wrong_way_urban{suffix}").is_file()
    head = json.loads((tmp_path / "wrong_way_urban.scenario.json").read_text())
    assert head["seed"] == 5 and head["frames"] == 25
    assert cli_main(["scenarios", "render", "no_such", "--out", str(tmp_path)]) == 2
