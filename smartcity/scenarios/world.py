"""The world on the ground plane: lanes, carriageways, markings, pavements, and scene presets.

Every preset is built from straight roads. A lane has a start point in its driving direction, a
unit direction and a length; positions along it are metres from the start (``s``), offsets
across it are metres to the left of the driving direction (``lateral``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from smartcity.scenarios.camera import Camera, FloatArray

BGR = tuple[int, int, int]

ASPHALT: BGR = (74, 74, 78)
ASPHALT_SHOULDER: BGR = (84, 86, 88)
PAVEMENT: BGR = (150, 152, 148)
TILES: BGR = (160, 166, 172)
KERB: BGR = (190, 190, 188)
GRASS: BGR = (62, 112, 78)
MARKING: BGR = (225, 228, 228)
YELLOW: BGR = (40, 190, 225)
SKY: BGR = (228, 200, 160)
BARRIER: BGR = (170, 172, 170)
POLE: BGR = (110, 112, 112)


@dataclass(frozen=True)
class Lane:
    id: str
    road: str
    origin: tuple[float, float]
    direction: tuple[float, float]
    length_m: float
    width_m: float
    speed_limit_kmh: float

    @property
    def heading_deg(self) -> float:
        return math.degrees(math.atan2(self.direction[0], self.direction[1])) % 360.0

    @property
    def normal(self) -> tuple[float, float]:
        """Unit vector to the left of the driving direction."""
        return (-self.direction[1], self.direction[0])

    def point(self, s: float, lateral: float = 0.0) -> tuple[float, float]:
        (ox, oy), (dx, dy), (nx, ny) = self.origin, self.direction, self.normal
        return (ox + s * dx + lateral * nx, oy + s * dy + lateral * ny)

    def polygon(self) -> FloatArray:
        w = self.width_m / 2
        return np.array(
            [
                self.point(0, -w),
                self.point(self.length_m, -w),
                self.point(self.length_m, w),
                self.point(0, w),
            ]
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "road": self.road,
            "origin_m": list(self.origin),
            "direction": list(self.direction),
            "heading_deg": round(self.heading_deg, 3),
            "length_m": self.length_m,
            "width_m": self.width_m,
            "speed_limit_kmh": self.speed_limit_kmh,
            "polygon_m": np.round(self.polygon(), 4).tolist(),
        }


@dataclass(frozen=True)
class GroundPoly:
    """A flat polygon on the ground (drawn in list order) with its day colour."""

    pts: FloatArray
    colour: BGR
    z: float = 0.0


@dataclass(frozen=True)
class StaticBox:
    """A static 3D box (barrier, pole) drawn into the background."""

    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float
    colour: BGR


@dataclass
class Scene:
    name: str
    description: str
    camera: Camera
    lanes: list[Lane]
    ground: list[GroundPoly] = field(default_factory=list)
    boxes: list[StaticBox] = field(default_factory=list)
    carriageways: list[FloatArray] = field(default_factory=list)
    crossings: list[FloatArray] = field(default_factory=list)
    walk_areas: list[FloatArray] = field(default_factory=list)
    lines: dict[str, tuple[tuple[float, float], tuple[float, float]]] = field(default_factory=dict)
    lamps: list[tuple[float, float]] = field(default_factory=list)

    def lane(self, ref: str | int) -> Lane:
        if isinstance(ref, int):
            return self.lanes[ref]
        for lane in self.lanes:
            if lane.id == ref:
                return lane
        raise KeyError(ref)

    def lane_ids(self) -> list[str]:
        return [lane.id for lane in self.lanes]


def rect(x0: float, x1: float, y0: float, y1: float) -> FloatArray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def point_in_polys(pts: FloatArray, polys: list[FloatArray]) -> np.ndarray:
    """(N, 2) points inside any of the convex polygons (any winding): bool (N,)."""
    inside = np.zeros(len(pts), dtype=bool)
    for poly in polys:
        n = len(poly)
        signs = []
        for i in range(n):
            a, b = poly[i], poly[(i + 1) % n]
            signs.append((b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0]))
        s = np.stack(signs)
        inside |= np.all(s >= 0, axis=0) | np.all(s <= 0, axis=0)
    return inside


# --------------------------------------------------------------------------- road builder


@dataclass
class _NSRoad:
    """A north-south road; lanes to the east drive north (+y), lanes to the west south."""

    name: str
    y0: float
    y1: float
    north: int
    south: int
    lane_w: float = 3.5
    median_w: float = 0.0
    shoulder_w: float = 0.0
    kerb_w: float = 0.2
    pavement_w: float = 3.0
    limit: float = 50.0
    crossing: tuple[float, float] | None = None
    barrier: bool = False


def _dashes(x: float, y0: float, y1: float, w: float, dash: float, gap: float) -> list[FloatArray]:
    out = []
    y = y0
    while y < y1:
        out.append(rect(x - w / 2, x + w / 2, y, min(y + dash, y1)))
        y += dash + gap
    return out


def _build_ns_road(scene: Scene, r: _NSRoad) -> None:
    half_med = r.median_w / 2
    east_in = half_med
    east_out = half_med + r.north * r.lane_w + r.shoulder_w
    west_out = -(half_med + r.south * r.lane_w + r.shoulder_w)
    length = r.y1 - r.y0
    g = scene.ground
    # pavements and kerbs
    for sgn, edge in ((1, east_out), (-1, west_out)):
        outer = edge + sgn * (r.kerb_w + r.pavement_w)
        kerb = edge + sgn * r.kerb_w
        g.append(GroundPoly(rect(min(kerb, outer), max(kerb, outer), r.y0, r.y1), PAVEMENT))
        g.append(GroundPoly(rect(min(edge, kerb), max(edge, kerb), r.y0, r.y1), KERB))
        scene.walk_areas.append(rect(min(kerb, outer), max(kerb, outer), r.y0, r.y1))
    # carriageway(s)
    carriageways = []
    if r.north:
        carriageways.append(rect(east_in, east_out, r.y0, r.y1))
    if r.south:
        carriageways.append(rect(west_out, -half_med, r.y0, r.y1))
    for cw in carriageways:
        g.append(GroundPoly(cw, ASPHALT))
        scene.carriageways.append(cw)
    if r.shoulder_w:
        for x0, x1 in (
            (east_out - r.shoulder_w, east_out),
            (west_out, west_out + r.shoulder_w),
        ):
            g.append(GroundPoly(rect(x0, x1, r.y0, r.y1), ASPHALT_SHOULDER))
    if r.median_w:
        if r.barrier:
            g.append(GroundPoly(rect(-half_med, half_med, r.y0, r.y1), ASPHALT_SHOULDER))
            scene.boxes.append(StaticBox(-0.3, 0.3, r.y0, r.y1, 0.0, 0.85, BARRIER))
        else:
            g.append(GroundPoly(rect(-half_med, half_med, r.y0, r.y1), KERB))
            g.append(GroundPoly(rect(-half_med + 0.2, half_med - 0.2, r.y0, r.y1), GRASS))
    # lanes: east side northbound (lane 0 next to the centre), west side southbound
    for i in range(r.north):
        x = east_in + (i + 0.5) * r.lane_w
        scene.lanes.append(
            Lane(f"{r.name}.n{i}", r.name, (x, r.y0), (0.0, 1.0), length, r.lane_w, r.limit)
        )
    for i in range(r.south):
        x = -half_med - (i + 0.5) * r.lane_w
        scene.lanes.append(
            Lane(f"{r.name}.s{i}", r.name, (x, r.y1), (0.0, -1.0), length, r.lane_w, r.limit)
        )
    # markings
    dash, gap = (4.0, 8.0) if r.limit >= 80 else (3.0, 6.0)
    cross = r.crossing
    segments = [(r.y0, r.y1)] if cross is None else [(r.y0, cross[0] - 3.0), (cross[1] + 3.0, r.y1)]
    marks: list[FloatArray] = []
    for ya, yb in segments:
        for i in range(1, r.north):
            marks += _dashes(east_in + i * r.lane_w, ya, yb, 0.15, dash, gap)
        for i in range(1, r.south):
            marks += _dashes(-half_med - i * r.lane_w, ya, yb, 0.15, dash, gap)
        if r.median_w == 0 and r.north and r.south:
            marks += _dashes(0.0, ya, yb, 0.15, 3.0, 3.0)
    if r.shoulder_w:
        for x in (east_out - r.shoulder_w, west_out + r.shoulder_w):
            marks.append(rect(x - 0.1, x + 0.1, r.y0, r.y1))
    elif r.median_w:
        for x in (half_med + 0.25, -half_med - 0.25):
            marks.append(rect(x - 0.06, x + 0.06, r.y0, r.y1))
    if cross is not None:
        c0, c1 = cross
        # zebra stripes along the road, 0.5 m wide, 0.5 m apart, across the carriageways
        x = west_out + 0.25
        while x + 0.5 <= east_out:
            if not (-half_med < x + 0.25 < half_med):
                marks.append(rect(x, x + 0.5, c0, c1))
            x += 1.0
        scene.crossings.append(rect(west_out, east_out, c0, c1))
        # stop lines 2 m before the crossing in each driving direction
        if r.north:
            marks.append(rect(east_in, east_out - r.shoulder_w, c0 - 2.3, c0 - 2.0))
        if r.south:
            marks.append(rect(west_out + r.shoulder_w, -half_med, c1 + 2.0, c1 + 2.3))
    for m in marks:
        g.append(GroundPoly(m, MARKING))


def _lamp_row(scene: Scene, x: float, y0: float, y1: float, step: float) -> None:
    y = y0
    while y <= y1:
        scene.lamps.append((x, y))
        scene.boxes.append(StaticBox(x - 0.08, x + 0.08, y - 0.08, y + 0.08, 0.0, 7.0, POLE))
        y += step


def _grass(scene: Scene, x0: float, x1: float, y0: float, y1: float) -> None:
    scene.ground.insert(0, GroundPoly(rect(x0, x1, y0, y1), GRASS))


# --------------------------------------------------------------------------- presets


def urban_straight() -> Scene:
    s = Scene(
        "urban_straight",
        "Two-lane urban street, one lane each way, pavements, a zebra crossing with stop lines",
        Camera(x_m=6.5, y_m=0.0, height_m=7.0, yaw_deg=-9.0, pitch_deg=14.0, focal_mm=4.5),
        [],
    )
    _grass(s, -400, 400, -60, 900)
    road = _NSRoad("main", -40.0, 400.0, 1, 1, pavement_w=3.5, limit=50, crossing=(36.0, 40.0))
    _build_ns_road(s, road)
    _lamp_row(s, -7.4, 10.0, 200.0, 30.0)
    s.lines["main"] = ((-3.5, 24.0), (3.5, 24.0))
    return s


def arterial() -> Scene:
    s = Scene(
        "arterial",
        "Four-lane arterial, two lanes each way, planted median, crossing with stop lines",
        Camera(x_m=12.5, y_m=0.0, height_m=10.0, yaw_deg=-12.0, pitch_deg=15.0, focal_mm=4.5),
        [],
    )
    _grass(s, -400, 400, -60, 900)
    road = _NSRoad(
        "main", -40.0, 450.0, 2, 2, median_w=2.0, pavement_w=4.0, limit=60, crossing=(50.0, 54.0)
    )
    _build_ns_road(s, road)
    _lamp_row(s, 9.6, 10.0, 250.0, 35.0)
    _lamp_row(s, -9.6, 27.0, 250.0, 35.0)
    s.lines["main"] = ((-8.0, 34.0), (8.0, 34.0))
    return s


def highway() -> Scene:
    s = Scene(
        "highway",
        "Toll-road style highway, three lanes each way, hard shoulders, central barrier; "
        "camera on a gantry over the central reservation",
        Camera(x_m=0.0, y_m=0.0, height_m=12.0, yaw_deg=0.0, pitch_deg=11.0, focal_mm=6.0),
        [],
    )
    _grass(s, -600, 600, -60, 1500)
    road = _NSRoad(
        "main",
        -60.0,
        900.0,
        3,
        3,
        lane_w=3.75,
        median_w=2.0,
        shoulder_w=3.0,
        kerb_w=0.3,
        pavement_w=1.5,
        limit=100,
        barrier=True,
    )
    _build_ns_road(s, road)
    s.lines["main"] = ((-15.25, 70.0), (15.25, 70.0))
    return s


def pedestrian_square() -> Scene:
    s = Scene(
        "pedestrian_square",
        "Paved pedestrian square in front of a one-way street with a zebra crossing",
        Camera(x_m=0.0, y_m=-8.0, height_m=6.0, yaw_deg=0.0, pitch_deg=17.0, focal_mm=4.0),
        [],
    )
    _grass(s, -400, 400, -60, 900)
    g = s.ground
    g.append(GroundPoly(rect(-40, 40, -20, 60), TILES))
    s.walk_areas.append(rect(-40, 40, -20, 60))
    lines: list[FloatArray] = []
    for x in np.arange(-40.0, 40.1, 4.0):
        lines.append(rect(x - 0.04, x + 0.04, -20, 60))
    for y in np.arange(-20.0, 60.1, 4.0):
        lines.append(rect(-40, 40, y - 0.04, y + 0.04))
    for ln in lines:
        g.append(GroundPoly(ln, PAVEMENT))
    # planter boxes
    s.boxes.append(StaticBox(-14, -10, 30, 32, 0.0, 0.5, KERB))
    s.boxes.append(StaticBox(10, 14, 30, 32, 0.0, 0.5, KERB))
    # east-west one-way street beyond the square: two lanes driving east
    g.append(GroundPoly(rect(-200, 200, 60, 60.2), KERB))
    cw = rect(-200, 200, 60.2, 67.2)
    g.append(GroundPoly(cw, ASPHALT))
    s.carriageways.append(cw)
    g.append(GroundPoly(rect(-200, 200, 67.2, 67.4), KERB))
    g.append(GroundPoly(rect(-200, 200, 67.4, 71.0), PAVEMENT))
    s.walk_areas.append(rect(-200, 200, 67.4, 71.0))
    for i, y in enumerate((61.95, 65.45)):
        s.lanes.append(Lane(f"street.e{i}", "street", (-200.0, y), (1.0, 0.0), 400.0, 3.5, 30.0))
    x = -200.0
    while x < 200:
        if not -6 < x < 6:
            g.append(GroundPoly(rect(x, x + 3, 63.625, 63.775), MARKING))
        x += 9.0
    x = -2.75
    while x < 2.8:
        g.append(GroundPoly(rect(x, x + 0.5, 60.45, 66.95), MARKING))
        x += 1.0
    s.crossings.append(rect(-3.0, 3.0, 60.2, 67.2))
    g.append(GroundPoly(rect(-5.3, -5.0, 60.2, 67.2), MARKING))  # stop line
    _lamp_row(s, -20.0, 0.0, 50.0, 25.0)
    _lamp_row(s, 20.0, 0.0, 50.0, 25.0)
    s.lines["square"] = ((-12.0, 24.0), (12.0, 24.0))
    s.lines["crossing"] = ((-3.0, 63.7), (3.0, 63.7))
    return s


PRESETS: dict[str, Callable[[], Scene]] = {
    "urban_straight": urban_straight,
    "arterial": arterial,
    "highway": highway,
    "pedestrian_square": pedestrian_square,
}


def make_scene(preset: str) -> Scene:
    return PRESETS[preset]()
