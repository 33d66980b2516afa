"""Per-camera geometry: zones, lines, lanes, no-stopping areas, calibration, location.

Parsed from a plain dict (the ``cameras.<id>`` part of appliance.yaml, or an API body) and
validated; a bad value raises `GeometryError` whose message and ``.field`` name the camera and
the field: ``cameras.cam1.lanes[2].direction: must be ...``. docs/incidents.md has the format.

Every region is a polygon in image pixels (``polygon``) or on the ground in metres
(``polygon_m``, needs a calibration); a point test takes both the pixel and the ground point of
each track and uses the one the region was drawn in. The calibration is an image -> ground
homography fitted (normalized DLT) to 4 or more point pairs, image <-> ground metres or image
<-> latitude/longitude (converted to local metres east/north of the points' centroid), or given
directly (``homography``); the fit's reprojection error in metres is kept and a fit worse than
``max_error_m`` is refused naming the error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from smartcity import checks
from smartcity.classes import APPLIANCE_CLASSES

F64 = npt.NDArray[np.float64]
EARTH_RADIUS_M = 6_371_008.8


class GeometryError(ValueError):
    """A camera's geometry or rule configuration is invalid; ``field`` is the dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------- regions


def points_in_polygon(pts: F64, poly: F64) -> npt.NDArray[np.bool_]:
    """Even-odd test of (N, 2) points against one (K, 2) polygon; vectorized over points."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0:1], pts[:, 1:2]
    q = np.concatenate((poly[1:], poly[:1]))  # each edge's far end (np.roll costs more)
    px, py = poly[None, :, 0], poly[None, :, 1]
    qx, qy = q[None, :, 0], q[None, :, 1]
    crosses = (py > y) != (qy > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = px + (y - py) * (qx - px) / (qy - py)
    hit = crosses & (x < xi)
    return np.asarray(hit.sum(axis=1) % 2 == 1)


@dataclass(frozen=True)
class Region:
    """A polygon in image pixels (``space == "image"``) or ground metres (``"ground"``)."""

    name: str
    polygon: F64
    space: str = "image"

    def contains(self, px: F64, ground: F64) -> npt.NDArray[np.bool_]:
        """Which of N points lie inside: pixel points (N, 2) and ground points (N, 2)."""
        pts = px if self.space == "image" else ground
        if len(pts) == 0:
            return np.zeros(0, dtype=bool)
        inside = points_in_polygon(pts, self.polygon)
        return inside & np.all(np.isfinite(pts), axis=1)


@dataclass(frozen=True)
class Zone(Region):
    allowed: frozenset[int] | None = None  # class ids; None: any class allowed
    forbidden: frozenset[int] = frozenset()
    min_dwell_s: float = 0.0

    def is_forbidden(self, class_id: int) -> bool:
        if class_id in self.forbidden:
            return True
        return self.allowed is not None and class_id not in self.allowed


@dataclass(frozen=True)
class Lane(Region):
    """A lane: its polygon, the allowed direction of travel, speed limit and names.

    ``direction`` is a unit vector in the lane's space (image: pixels, y down; ground: x east,
    y north); ``ground_direction`` is the direction on the ground (from the heading, or the
    image direction carried through the calibration at the lane's centre), None without one.
    """

    direction: F64 = field(default_factory=lambda: np.zeros(2))
    ground_direction: F64 | None = None
    speed_limit_kmh: float | None = None
    road: str = ""
    direction_name: str = ""

    @property
    def group(self) -> str:
        """Lanes of one road and direction form a group (congestion is judged per group)."""
        if self.road or self.direction_name:
            return f"{self.road}:{self.direction_name}"
        return self.name


@dataclass(frozen=True)
class Line:
    """A tripwire a -> b. ``in_side`` is "left" or "right" of a -> b as seen on the image (or
    on the map, for ground lines): crossing towards that side is direction "in"."""

    name: str
    a: F64
    b: F64
    space: str = "image"
    in_side: str = "left"

    def side(self, pts: F64) -> F64:
        """Signed distance of (N, 2) points: > 0 on the left of a -> b as drawn/seen."""
        d = self.b - self.a
        length = float(np.hypot(*d))
        cross = d[0] * (pts[:, 1] - self.a[1]) - d[1] * (pts[:, 0] - self.a[0])
        # image y grows downwards, so the visual left is the negative cross product there
        sign = -1.0 if self.space == "image" else 1.0
        return np.asarray(sign * cross / length)

    def along(self, pts: F64) -> F64:
        """Position of the points' projection along a -> b, 0 at a and 1 at b."""
        d = self.b - self.a
        return np.asarray(((pts - self.a) @ d) / float(d @ d))


@dataclass(frozen=True)
class Calibration:
    """Image (pixels) -> ground (metres) homography and how well it fits its points."""

    image_to_ground: F64
    rms_error_m: float = 0.0
    max_error_m: float = 0.0
    points: int = 0
    origin_latlon: tuple[float, float] | None = None  # ground (0, 0) when given by lat/lon

    @property
    def ground_to_image(self) -> F64:
        Hi = np.linalg.inv(self.image_to_ground)
        return np.asarray(Hi / Hi[2, 2])

    def to_ground(self, px: F64) -> F64:
        return apply_h(self.image_to_ground, px)

    def to_image(self, ground: F64) -> F64:
        return apply_h(self.ground_to_image, ground)

    def to_latlon(self, ground: F64) -> F64 | None:
        """Ground metres to (lat, lon) degrees; None when the calibration had no lat/lon."""
        if self.origin_latlon is None:
            return None
        return metres_to_latlon(np.asarray(ground, np.float64), self.origin_latlon)


@dataclass(frozen=True)
class Location:
    latitude: float | None = None
    longitude: float | None = None
    road: str = ""
    segment_id: str = ""


@dataclass(frozen=True)
class CameraGeometry:
    cam: str
    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    lanes: tuple[Lane, ...] = ()
    no_stopping: tuple[Region, ...] = ()
    #: where vehicles stand waiting at a signal (before a stop line): not a stopped vehicle
    waiting_areas: tuple[Region, ...] = ()
    carriageways: tuple[Region, ...] = ()  # the road surface; lanes when none given
    crossings: tuple[Region, ...] = ()  # pedestrian crossings on the carriageway
    calibration: Calibration | None = None
    location: Location = field(default_factory=Location)
    width: int = 0
    height: int = 0
    #: ground points coarser than this (metres per pixel of image height at the point) are
    #: too far for measuring: the rules that measure metres or speed ignore tracks there
    max_m_per_px: float = 2.5

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def lane_index(self, px: F64, ground: F64) -> npt.NDArray[np.int64]:
        """Index of the first lane containing each point, -1 for none."""
        out = np.full(len(px), -1, dtype=np.int64)
        for i, lane in enumerate(self.lanes):
            hit = lane.contains(px, ground) & (out < 0)
            out[hit] = i
        return out


# --------------------------------------------------------------------------- homography


def apply_h(H: F64, pts: F64) -> F64:
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    h = np.column_stack([p, np.ones(len(p))]) @ np.asarray(H, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(h[:, :2] / h[:, 2:3])


def _normalizer(p: F64) -> F64:
    c = p.mean(axis=0)
    d = float(np.mean(np.hypot(*(p - c).T)))
    s = math.sqrt(2) / d if d > 0 else 1.0
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])


def fit_homography(src: F64, dst: F64) -> F64:
    """Normalized DLT: the 3x3 H with dst ~ H src, from 4 or more (N, 2) point pairs."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    Ts, Td = _normalizer(src), _normalizer(dst)
    s = apply_h(Ts, src)
    d = apply_h(Td, dst)
    rows = []
    for (x, y), (u, v) in zip(s, d, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, sv, vt = np.linalg.svd(np.asarray(rows))
    if len(sv) >= 8 and sv[7] < 1e-12 * max(sv[0], 1e-300):
        raise np.linalg.LinAlgError("degenerate points (three or more on one line?)")
    Hn = vt[-1].reshape(3, 3)
    H = np.linalg.inv(Td) @ Hn @ Ts
    if abs(H[2, 2]) < 1e-15:
        raise np.linalg.LinAlgError("degenerate homography")
    return np.asarray(H / H[2, 2])


def latlon_to_metres(latlon: F64, origin: tuple[float, float]) -> F64:
    """(N, 2) lat/lon degrees to local metres (x east, y north) around origin (equirectangular,
    good to a few centimetres over the few hundred metres a camera sees)."""
    lat0, lon0 = map(math.radians, origin)
    lat, lon = np.radians(latlon[:, 0]), np.radians(latlon[:, 1])
    return np.column_stack(
        [(lon - lon0) * math.cos(lat0) * EARTH_RADIUS_M, (lat - lat0) * EARTH_RADIUS_M]
    )


def metres_to_latlon(xy: F64, origin: tuple[float, float]) -> F64:
    lat0, lon0 = map(math.radians, origin)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    lat = lat0 + xy[:, 1] / EARTH_RADIUS_M
    lon = lon0 + xy[:, 0] / (EARTH_RADIUS_M * math.cos(lat0))
    return np.column_stack([np.degrees(lat), np.degrees(lon)])


# --------------------------------------------------------------------------- parsing helpers

_CLASS_IDS = {name: i for i, name in enumerate(APPLIANCE_CLASSES)}


def _num(v: Any, path: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    try:
        return checks.number(v, lo, hi)
    except checks.NumberError as e:
        raise GeometryError(path, str(e)) from None


def _str(v: Any, path: str) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise GeometryError(path, f"must be a string, got {v!r}")
    return v


def _map(v: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise GeometryError(path, f"must be a mapping, got {type(v).__name__}")
    for k in v:
        if k not in allowed:
            raise GeometryError(f"{path}.{k}", f"unknown field (allowed: {', '.join(allowed)})")
    return v


def _list(v: Any, path: str) -> list[Any]:
    if not isinstance(v, list | tuple):
        raise GeometryError(path, f"must be a list, got {type(v).__name__}")
    return list(v)


def _point(v: Any, path: str) -> F64:
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise GeometryError(path, f"must be a point [x, y], got {v!r}")
    return np.array([_num(v[0], f"{path}[0]"), _num(v[1], f"{path}[1]")])


def _polygon(v: Any, path: str) -> F64:
    pts = _list(v, path)
    if len(pts) < 3:
        raise GeometryError(path, f"must have at least 3 points, got {len(pts)}")
    poly = np.stack([_point(p, f"{path}[{i}]") for i, p in enumerate(pts)])
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area <= 1e-9:
        raise GeometryError(path, "must enclose an area (points are collinear)")
    return poly


def _classes(v: Any, path: str) -> frozenset[int]:
    out = set()
    for i, c in enumerate(_list(v, path)):
        if c not in _CLASS_IDS:
            raise GeometryError(
                f"{path}[{i}]", f"unknown class {c!r} (one of {', '.join(APPLIANCE_CLASSES)})"
            )
        out.add(_CLASS_IDS[c])
    return frozenset(out)


def _region_poly(
    d: Mapping[str, Any], path: str, calibrated: bool
) -> tuple[F64, str]:  # fmt: skip
    has_px, has_m = "polygon" in d, "polygon_m" in d
    if has_px == has_m:
        raise GeometryError(path, "needs exactly one of polygon (pixels) or polygon_m (metres)")
    if has_m:
        if not calibrated:
            raise GeometryError(f"{path}.polygon_m", "needs a calibration (metres on the ground)")
        return _polygon(d["polygon_m"], f"{path}.polygon_m"), "ground"
    return _polygon(d["polygon"], f"{path}.polygon"), "image"


def _name(d: Mapping[str, Any], path: str, i: int, seen: set[str]) -> str:
    name = _str(d.get("name", f"{i}"), f"{path}.name")
    if not name:
        raise GeometryError(f"{path}.name", "must not be empty")
    if name in seen:
        raise GeometryError(f"{path}.name", f"duplicate name {name!r}")
    seen.add(name)
    return name


# --------------------------------------------------------------------------- calibration

_CAL_FIELDS = ("points", "homography", "max_error_m")


def parse_calibration(v: Any, path: str) -> Calibration:
    d = _map(v, path, _CAL_FIELDS)
    max_err = _num(d.get("max_error_m", 1.0), f"{path}.max_error_m", 0.0, 1000.0)
    if ("points" in d) == ("homography" in d):
        raise GeometryError(path, "needs exactly one of points or homography")
    if "homography" in d:
        hp = f"{path}.homography"
        rows = _list(d["homography"], hp)
        if len(rows) != 3 or any(not isinstance(r, list | tuple) or len(r) != 3 for r in rows):
            raise GeometryError(hp, "must be a 3x3 matrix (image pixels -> ground metres)")
        H = np.array([[_num(x, f"{hp}[{i}][{j}]") for j, x in enumerate(r)]
                      for i, r in enumerate(rows)])  # fmt: skip
        if abs(np.linalg.det(H)) < 1e-12 or abs(H[2, 2]) < 1e-15:
            raise GeometryError(hp, "must be invertible")
        return Calibration(np.asarray(H / H[2, 2]))
    pp = f"{path}.points"
    pairs = _list(d["points"], pp)
    if len(pairs) < 4:
        raise GeometryError(pp, f"needs at least 4 point pairs, got {len(pairs)}")
    img, grd, ll = [], [], []
    for i, p in enumerate(pairs):
        q = _map(p, f"{pp}[{i}]", ("image", "ground", "latlon"))
        if "image" not in q:
            raise GeometryError(f"{pp}[{i}].image", "missing (pixel point [u, v])")
        img.append(_point(q["image"], f"{pp}[{i}].image"))
        if ("ground" in q) == ("latlon" in q):
            raise GeometryError(f"{pp}[{i}]", "needs exactly one of ground [x, y] or latlon")
        if "ground" in q:
            grd.append(_point(q["ground"], f"{pp}[{i}].ground"))
        else:
            lat, lon = _point(q["latlon"], f"{pp}[{i}].latlon")
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise GeometryError(f"{pp}[{i}].latlon", f"not a latitude/longitude: {q['latlon']}")
            ll.append((lat, lon))
    if grd and ll:
        raise GeometryError(pp, "mixes ground metres and latitude/longitude points")
    src = np.stack(img)
    origin: tuple[float, float] | None = None
    if ll:
        lla = np.asarray(ll, np.float64)
        origin = (float(lla[:, 0].mean()), float(lla[:, 1].mean()))
        dst = latlon_to_metres(lla, origin)
    else:
        dst = np.stack(grd)
    try:
        H = fit_homography(src, dst)
    except np.linalg.LinAlgError as e:
        raise GeometryError(pp, f"cannot fit a homography: {e}") from None
    err = np.hypot(*(apply_h(H, src) - dst).T)
    if not np.all(np.isfinite(err)):
        raise GeometryError(pp, "a point maps to infinity (above the horizon?)")
    rms = float(np.sqrt(np.mean(err**2)))
    if rms > max_err:
        worst = int(np.argmax(err))
        raise GeometryError(
            pp,
            f"reprojection error {rms:.2f} m RMS exceeds max_error_m {max_err:g} "
            f"(worst: points[{worst}], {err[worst]:.2f} m)",
        )
    return Calibration(H, rms, float(err.max()), len(pairs), origin)


# --------------------------------------------------------------------------- cameras

_CAMERA_FIELDS = (
    "zones", "lines", "lanes", "no_stopping", "waiting_areas", "carriageways", "crossings",
    "calibration", "location", "width", "height", "max_m_per_px",
)  # fmt: skip
_REGION_FIELDS = ("name", "polygon", "polygon_m")


def _regions(v: Any, path: str, calibrated: bool) -> tuple[Region, ...]:
    out, seen = [], set[str]()
    for i, r in enumerate(_list(v, path)):
        rp = f"{path}[{i}]"
        d = _map(r, rp, _REGION_FIELDS)
        name = _name(d, rp, i, seen)
        poly, space = _region_poly(d, rp, calibrated)
        out.append(Region(name, poly, space))
    return tuple(out)


def _zones(v: Any, path: str, calibrated: bool) -> tuple[Zone, ...]:
    out, seen = [], set[str]()
    for i, r in enumerate(_list(v, path)):
        rp = f"{path}[{i}]"
        d = _map(r, rp, (*_REGION_FIELDS, "allowed", "forbidden", "min_dwell_s"))
        name = _name(d, rp, i, seen)
        poly, space = _region_poly(d, rp, calibrated)
        allowed = _classes(d["allowed"], f"{rp}.allowed") if "allowed" in d else None
        forbidden = _classes(d.get("forbidden", []), f"{rp}.forbidden")
        if allowed is not None and allowed & forbidden:
            raise GeometryError(f"{rp}.forbidden", "names a class that allowed also names")
        dwell = _num(d.get("min_dwell_s", 0.0), f"{rp}.min_dwell_s", 0.0, 86400.0)
        out.append(Zone(name, poly, space, allowed, forbidden, dwell))
    return tuple(out)


def _lines(v: Any, path: str, calibrated: bool) -> tuple[Line, ...]:
    out, seen = [], set[str]()
    for i, r in enumerate(_list(v, path)):
        rp = f"{path}[{i}]"
        d = _map(r, rp, ("name", "a", "b", "a_m", "b_m", "in"))
        name = _name(d, rp, i, seen)
        if "a_m" in d or "b_m" in d:
            if "a" in d or "b" in d:
                raise GeometryError(rp, "needs a, b (pixels) or a_m, b_m (metres), not both")
            if not calibrated:
                raise GeometryError(f"{rp}.a_m", "needs a calibration (metres on the ground)")
            a, b, space = (
                _point(d.get("a_m"), f"{rp}.a_m"),
                _point(d.get("b_m"), f"{rp}.b_m"),
                "ground",
            )
        else:
            a, b, space = _point(d.get("a"), f"{rp}.a"), _point(d.get("b"), f"{rp}.b"), "image"
        if float(np.hypot(*(b - a))) <= 1e-9:
            raise GeometryError(f"{rp}.b", "must differ from a")
        side = d.get("in", "left")
        if side not in ("left", "right"):
            raise GeometryError(f"{rp}.in", f"must be left or right (of a -> b), got {side!r}")
        out.append(Line(name, a, b, space, side))
    return tuple(out)


def _ground_dir_of(poly: F64, space: str, vec: F64, cal: Calibration | None) -> F64 | None:
    if space == "ground":
        return vec
    if cal is None:
        return None
    c = poly.mean(axis=0)
    step = 5.0 * vec  # 5 pixels along the lane's image direction, through the homography
    g = cal.to_ground(np.stack([c - step, c + step]))
    d = g[1] - g[0]
    n = float(np.hypot(*d))
    return np.asarray(d / n) if np.isfinite(n) and n > 0 else None


def _lanes(v: Any, path: str, cal: Calibration | None) -> tuple[Lane, ...]:
    out, seen = [], set[str]()
    fields = (*_REGION_FIELDS, "direction", "heading_deg", "speed_limit_kmh", "road",
              "direction_name")  # fmt: skip
    for i, r in enumerate(_list(v, path)):
        rp = f"{path}[{i}]"
        d = _map(r, rp, fields)
        name = _name(d, rp, i, seen)
        poly, space = _region_poly(d, rp, cal is not None)
        if ("direction" in d) == ("heading_deg" in d):
            raise GeometryError(
                f"{rp}.direction",
                "must be given: direction [dx, dy] (image pixels, or metres for polygon_m) "
                "or heading_deg (compass, 0 = north, needs a calibration)",
            )
        if "heading_deg" in d:
            h = math.radians(_num(d["heading_deg"], f"{rp}.heading_deg", -360.0, 360.0))
            if cal is None:
                raise GeometryError(f"{rp}.heading_deg", "needs a calibration (ground heading)")
            gvec = np.array([math.sin(h), math.cos(h)])
            if space == "ground":
                vec = gvec
            else:  # the heading carried into the image at the lane's centre
                c = cal.to_ground(poly.mean(axis=0)[None, :])[0]
                ends = cal.to_image(np.stack([c, c + gvec]))
                dv = ends[1] - ends[0]
                vec = dv / float(np.hypot(*dv))
            gdir: F64 | None = gvec
        else:
            vec = _point(d["direction"], f"{rp}.direction")
            n = float(np.hypot(*vec))
            if n <= 1e-9:
                raise GeometryError(
                    f"{rp}.direction", f"must be a non-zero vector [dx, dy], got {d['direction']}"
                )
            vec = vec / n
            gdir = _ground_dir_of(poly, space, vec, cal)
        limit = d.get("speed_limit_kmh")
        limit_f = None if limit is None else _num(limit, f"{rp}.speed_limit_kmh", 1.0, 400.0)
        out.append(
            Lane(
                name, poly, space, vec, gdir, limit_f,
                _str(d.get("road", ""), f"{rp}.road"),
                _str(d.get("direction_name", ""), f"{rp}.direction_name"),
            )
        )  # fmt: skip
    return tuple(out)


def _location(v: Any, path: str) -> Location:
    d = _map(v, path, ("latitude", "longitude", "road", "segment_id"))
    lat = d.get("latitude")
    lon = d.get("longitude")
    return Location(
        None if lat is None else _num(lat, f"{path}.latitude", -90.0, 90.0),
        None if lon is None else _num(lon, f"{path}.longitude", -180.0, 180.0),
        _str(d.get("road", ""), f"{path}.road"),
        _str(d.get("segment_id", ""), f"{path}.segment_id"),
    )


def parse_camera_geometry(cam: str, v: Any, path: str | None = None) -> CameraGeometry:
    """One camera's geometry from its dict; errors name ``cameras.<cam>.<field>``."""
    path = path or f"cameras.{cam}"
    d = _map(v if v is not None else {}, path, _CAMERA_FIELDS)
    cal = parse_calibration(d["calibration"], f"{path}.calibration") if "calibration" in d else None
    ok = cal is not None
    return CameraGeometry(
        cam=cam,
        zones=_zones(d.get("zones", []), f"{path}.zones", ok),
        lines=_lines(d.get("lines", []), f"{path}.lines", ok),
        lanes=_lanes(d.get("lanes", []), f"{path}.lanes", cal),
        no_stopping=_regions(d.get("no_stopping", []), f"{path}.no_stopping", ok),
        waiting_areas=_regions(d.get("waiting_areas", []), f"{path}.waiting_areas", ok),
        carriageways=_regions(d.get("carriageways", []), f"{path}.carriageways", ok),
        crossings=_regions(d.get("crossings", []), f"{path}.crossings", ok),
        calibration=cal,
        location=_location(d.get("location", {}), f"{path}.location"),
        width=int(_num(d.get("width", 0), f"{path}.width", 0, 16384)),
        height=int(_num(d.get("height", 0), f"{path}.height", 0, 16384)),
        max_m_per_px=_num(d.get("max_m_per_px", 2.5), f"{path}.max_m_per_px", 0.001, 1000.0),
    )


def parse_geometry(config: Any) -> dict[str, CameraGeometry]:
    """All cameras of ``{"cameras": {id: geometry}}`` (or of the inner mapping itself)."""
    if isinstance(config, Mapping) and set(config) == {"cameras"}:
        config = config["cameras"]
    cams = _map(config, "cameras", list(config) if isinstance(config, Mapping) else [])
    return {str(c): parse_camera_geometry(str(c), g) for c, g in cams.items()}


# --------------------------------------------------------------------------- scenarios


def geometry_from_scenario(
    head: Mapping[str, Any], cam: str | None = None, waiting_m: float = 20.0
) -> CameraGeometry:
    """A rendered scene's camera geometry from its NAME.scenario.json dict.

    Lanes (ground polygons, heading, limit; grouped per road and heading), carriageways and
    crossings, the counting lines (ground, "in" = forward = northbound for the presets), the
    exact image -> ground homography, and a waiting area of ``waiting_m`` metres before each
    crossing on every lane (vehicles queue there at a red light).
    """
    cam = cam or str(head.get("name", "scene"))
    H = np.asarray(head["camera"]["image_to_ground"], np.float64)
    cal = Calibration(np.asarray(H / H[2, 2]))
    crossings = tuple(
        Region(f"crossing{i}", np.asarray(p, np.float64), "ground")
        for i, p in enumerate(head.get("crossings_m", []))
    )
    lanes, waiting = [], []
    for ln in head["lanes"]:
        d = np.asarray(ln["direction"], np.float64)
        poly = np.asarray(ln["polygon_m"], np.float64)
        lanes.append(
            Lane(
                ln["id"], poly, "ground", d, d, float(ln["speed_limit_kmh"]), str(ln["road"]),
                f"{round(float(ln['heading_deg'])) % 360}",
            )
        )  # fmt: skip
        origin = np.asarray(ln["origin_m"], np.float64)
        normal = np.array([-d[1], d[0]])
        half = float(ln["width_m"]) / 2
        for c in crossings:  # the lane's span before each crossing it meets
            s = (c.polygon - origin) @ d
            s0 = float(s.min())
            if not 0.0 < s0 <= float(ln["length_m"]):
                continue
            a, b = max(0.0, s0 - waiting_m), s0
            pts = [origin + d * s_ + normal * l_ for s_, l_ in
                   ((a, -half), (b, -half), (b, half), (a, half))]  # fmt: skip
            waiting.append(Region(f"{ln['id']}.{c.name}", np.stack(pts), "ground"))
    lines = tuple(
        Line(name, np.asarray(v["a"], np.float64), np.asarray(v["b"], np.float64), "ground", "left")
        for name, v in head.get("lines", {}).items()
    )
    carriage = tuple(
        Region(f"carriageway{i}", np.asarray(p, np.float64), "ground")
        for i, p in enumerate(head.get("carriageways_m", []))
    )
    return CameraGeometry(
        cam=cam,
        lanes=tuple(lanes),
        lines=lines,
        waiting_areas=tuple(waiting),
        carriageways=carriage,
        crossings=crossings,
        calibration=cal,
        location=Location(road=str(head.get("preset", ""))),
        width=int(head.get("width", 0)),
        height=int(head.get("height", 0)),
    )
