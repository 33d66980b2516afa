"""Camera geometry: parsing, validation errors naming camera and field, calibration."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from smartcity.incidents.geometry import (
    GeometryError,
    apply_h,
    fit_homography,
    geometry_from_scenario,
    latlon_to_metres,
    metres_to_latlon,
    parse_camera_geometry,
    parse_geometry,
    points_in_polygon,
)

# image (u, v) -> ground (x, y): x = u / 10, y = 100 - v / 10 (a flat top-down view)
H_TOP = np.array([[0.1, 0.0, 0.0], [0.0, -0.1, 100.0], [0.0, 0.0, 1.0]])


def _pairs(H: np.ndarray, img: list[list[float]]) -> list[dict[str, list[float]]]:
    g = apply_h(H, np.asarray(img, float))
    return [
        {"image": list(map(float, i)), "ground": list(map(float, p))}
        for i, p in zip(img, g, strict=True)
    ]


IMG = [[100.0, 600.0], [1100.0, 620.0], [900.0, 200.0], [300.0, 210.0], [640.0, 400.0]]

CAM = {
    "calibration": {"points": _pairs(H_TOP, IMG)},
    "location": {"latitude": 52.52, "longitude": 13.405, "road": "Main St", "segment_id": "A-7"},
    "zones": [{"name": "yard", "polygon": [[0, 0], [100, 0], [100, 100]],
               "forbidden": ["car", "truck"], "min_dwell_s": 3}],
    "lines": [{"name": "gate", "a": [0, 500], "b": [1280, 500], "in": "right"}],
    "lanes": [
        {"name": "n0", "polygon": [[500, 720], [640, 720], [640, 0], [500, 0]],
         "direction": [0, -1], "speed_limit_kmh": 50, "road": "Main St",
         "direction_name": "north"},
        {"name": "s0", "polygon_m": [[64, 28], [70, 28], [70, 100], [64, 100]],
         "heading_deg": 180, "speed_limit_kmh": 50},
    ],
    "no_stopping": [{"name": "bus", "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]]}],
}  # fmt: skip


def test_parses_a_full_camera() -> None:
    geo = parse_geometry({"cameras": {"cam1": CAM}})["cam1"]
    assert geo.cam == "cam1" and geo.calibrated
    assert geo.calibration is not None
    assert geo.calibration.rms_error_m < 1e-6 and geo.calibration.points == 5
    assert np.allclose(geo.calibration.image_to_ground, H_TOP, atol=1e-9)
    n0, s0 = geo.lanes
    assert n0.space == "image" and np.allclose(n0.direction, [0, -1])
    assert n0.ground_direction is not None and np.allclose(n0.ground_direction, [0, 1])
    assert n0.group == "Main St:north"
    assert s0.space == "ground" and np.allclose(s0.ground_direction, [0, -1], atol=1e-12)
    assert geo.zones[0].is_forbidden(2) and not geo.zones[0].is_forbidden(0)
    assert geo.lines[0].in_side == "right"
    assert geo.location.segment_id == "A-7"
    # lane_index uses the pixel point for image lanes and the ground point for ground lanes
    px = np.array([[570.0, 300.0], [670.0, 300.0]])
    idx = geo.lane_index(px, geo.calibration.to_ground(px))
    assert idx.tolist() == [0, 1]


def test_heading_lane_in_the_image_points_along_the_road() -> None:
    cam = copy.deepcopy(CAM)
    cam["lanes"] = [{"name": "n0", "polygon": [[500, 720], [640, 720], [640, 0], [500, 0]],
                     "heading_deg": 0}]  # fmt: skip
    lane = parse_camera_geometry("c", cam).lanes[0]
    assert np.allclose(lane.direction, [0, -1], atol=1e-9)  # north is up in this view


def _err(cam: dict, field: str, words: str) -> None:
    with pytest.raises(GeometryError) as e:
        parse_geometry({"cameras": {"cam1": cam}})
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ")
    assert words in str(e.value)


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"lanes": [{"polygon": [[0, 0], [1, 0], [1, 1]], "direction": [0, 0]}]},
         "cameras.cam1.lanes[0].direction", "non-zero"),
        ({"lanes": [{"polygon": [[0, 0], [1, 0], [1, 1]]}]},
         "cameras.cam1.lanes[0].direction", "must be given"),
        ({"lanes": [{"polygon": [[0, 0], [1, 0], [1, 1]], "direction": [1, 0],
                     "speed_limit_kmh": "fast"}]},
         "cameras.cam1.lanes[0].speed_limit_kmh", "number"),
        ({"lanes": [{}, {}, {"polygon": [[0, 0], [1, 0], [2, 0]], "direction": [1, 0]}]},
         "cameras.cam1.lanes[0]", "polygon"),
        ({"zones": [{"polygon": [[0, 0], [1, 0], [1, 1]], "forbidden": ["tank"]}]},
         "cameras.cam1.zones[0].forbidden[0]", "unknown class"),
        ({"zones": [{"name": "a", "polygon": [[0, 0], [1, 0], [1, 1]]},
                    {"name": "a", "polygon": [[0, 0], [1, 0], [1, 1]]}]},
         "cameras.cam1.zones[1].name", "duplicate"),
        ({"lines": [{"a": [0, 0], "b": [0, 0]}]}, "cameras.cam1.lines[0].b", "differ"),
        ({"lines": [{"a": [0, 0], "b": [1, 0], "in": "up"}]}, "cameras.cam1.lines[0].in",
         "left or right"),
        ({"colour": "red"}, "cameras.cam1.colour", "unknown field"),
        ({"location": {"latitude": 123}}, "cameras.cam1.location.latitude", "[-90, 90]"),
    ],
)  # fmt: skip
def test_errors_name_the_camera_and_field(patch: dict, field: str, words: str) -> None:
    cam = copy.deepcopy(CAM)
    cam.update(patch)
    _err(cam, field, words)


def test_collinear_polygon_is_refused() -> None:
    cam = copy.deepcopy(CAM)
    cam["no_stopping"] = [{"polygon": [[0, 0], [1, 1], [2, 2]]}]
    _err(cam, "cameras.cam1.no_stopping[0].polygon", "collinear")


def test_metres_need_a_calibration() -> None:
    cam = {"lanes": [{"polygon_m": [[0, 0], [1, 0], [1, 1]], "direction": [0, 1]}]}
    _err(cam, "cameras.cam1.lanes[0].polygon_m", "calibration")
    cam = {"lanes": [{"polygon": [[0, 0], [1, 0], [1, 1]], "heading_deg": 90}]}
    _err(cam, "cameras.cam1.lanes[0].heading_deg", "calibration")


def test_calibration_needs_four_points() -> None:
    cam = {"calibration": {"points": _pairs(H_TOP, IMG[:3])}}
    _err(cam, "cameras.cam1.calibration.points", "at least 4")


def test_calibration_refuses_a_bad_fit_and_names_the_error() -> None:
    pairs = _pairs(H_TOP, IMG)
    pairs[4]["ground"] = [pairs[4]["ground"][0] + 6.0, pairs[4]["ground"][1]]  # a 6 m typo
    _err({"calibration": {"points": pairs}}, "cameras.cam1.calibration.points",
         "reprojection error")  # fmt: skip
    geo = parse_camera_geometry("c", {"calibration": {"points": pairs, "max_error_m": 10}})
    assert geo.calibration is not None and 1.0 < geo.calibration.rms_error_m < 10.0


def test_calibration_by_latitude_longitude() -> None:
    origin = (48.8566, 2.3522)
    ground = apply_h(H_TOP, np.asarray(IMG))
    ground -= ground.mean(axis=0)  # the centroid is the local origin
    ll = metres_to_latlon(ground, origin)
    pts = [{"image": i, "latlon": list(map(float, p))} for i, p in zip(IMG, ll, strict=True)]
    geo = parse_camera_geometry("c", {"calibration": {"points": pts, "max_error_m": 0.05}})
    cal = geo.calibration
    assert cal is not None and cal.origin_latlon is not None
    assert abs(cal.origin_latlon[0] - origin[0]) < 1e-6
    g = cal.to_ground(np.asarray(IMG, float))
    assert np.allclose(g, latlon_to_metres(ll, cal.origin_latlon), atol=0.02)
    back = cal.to_latlon(g)
    assert back is not None and np.allclose(back, ll, atol=1e-7)


def test_direct_homography_and_its_validation() -> None:
    geo = parse_camera_geometry("c", {"calibration": {"homography": H_TOP.tolist()}})
    assert geo.calibration is not None
    assert np.allclose(geo.calibration.to_image(geo.calibration.to_ground(np.array([[5.0, 7.0]]))),
                       [[5.0, 7.0]])  # fmt: skip
    _err({"calibration": {"homography": [[1, 0], [0, 1]]}},
         "cameras.cam1.calibration.homography", "3x3")  # fmt: skip
    _err({"calibration": {"homography": np.zeros((3, 3)).tolist()}},
         "cameras.cam1.calibration.homography", "invertible")  # fmt: skip


def test_fit_homography_recovers_a_perspective_one() -> None:
    H = np.array([[0.02, 0.001, -5.0], [0.0005, -0.01, 40.0], [0.0001, 0.002, 1.0]])
    src = np.array([[10, 300], [600, 320], [500, 120], [120, 130], [320, 200], [50, 250]], float)
    Hf = fit_homography(src, apply_h(H, src))
    assert np.allclose(Hf, H / H[2, 2], rtol=1e-6, atol=1e-9)


def test_points_in_polygon() -> None:
    poly = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    pts = np.array([[5, 5], [11, 5], [-1, -1], [9.9, 0.1]], float)
    assert points_in_polygon(pts, poly).tolist() == [True, False, False, True]


def test_geometry_from_a_rendered_scene() -> None:
    from smartcity import scenarios as S
    from smartcity.scenarios.render import scenario_record

    prep = S.prepare(S.load("red_light_queue_urban"), seconds=1, resolution="640x360")
    head = scenario_record(prep)
    geo = geometry_from_scenario(head)
    assert [ln.name for ln in geo.lanes] == [ln["id"] for ln in head["lanes"]]
    assert geo.calibrated and geo.width == 640 and geo.lines[0].name == "main"
    assert len(geo.crossings) == 1 and len(geo.waiting_areas) == 2
    # the camera's own homography: the lane's origin on the image maps back onto it
    cam = prep.camera
    lane = head["lanes"][0]
    p = np.asarray(lane["origin_m"]) + 30 * np.asarray(lane["direction"])
    uv = apply_h(cam.ground_to_image(), p[None, :])
    assert geo.calibration is not None
    assert np.allclose(geo.calibration.to_ground(uv), p[None, :], atol=0.01)
    # a point 5 m before the crossing on the northbound lane is in its waiting area
    cross_y0 = min(y for _, y in head["crossings_m"][0])
    inside = [w.contains(np.zeros((1, 2)), np.array([[1.75, cross_y0 - 5]]))[0]
              for w in geo.waiting_areas]  # fmt: skip
    assert any(inside)
