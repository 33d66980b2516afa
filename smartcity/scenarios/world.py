"""The world on the ground plane: lanes, carriageways, markings, pavements, and scene presets.

Every preset is built from straight roads. A lane has a start point in its driving direction, a
unit direction and a length; positions along it are metres from the start (``s``), offsets
across it are metres to the left of the driving direction (``lateral``). In the junction two
roads cross: their lanes overlap in the junction box, and turning vehicles go from one lane to
the other on an arc (``motion``).
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
    #: where a vehicle's front stops at each lane's stop line (metres along the lane): the
    #: ``at_m`` of a hold that is a red light there
    stop_lines: dict[str, float] = field(default_factory=dict)
    #: radius of the kerb at the corners of a junction: right turns follow it
    corner_radius_m: float = 0.0

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


# --------------------------------------------------------------------------- turns

TURN_LATERAL_MPS2 = 3.0  # lateral acceleration a turning vehicle keeps to: its speed on the arc


@dataclass(frozen=True)
class Turn:
    """A path that follows one lane, turns on a circular arc and goes on along a crossing lane.

    The arc is tangent to both lanes' centre lines. Its tangent length (from where the centre
    lines cross) is the distance from where the first lane enters the other road's carriageway
    to that crossing point, plus the scene's corner radius for a right turn: a left turn sweeps
    through the junction box, a right turn follows the kerb of the corner.
    """

    first: Lane
    second: Lane
    s_start: float  # metres along `first` where the arc begins
    radius: float
    angle: float  # signed turn, radians: + left (counter-clockwise), - right
    u_end: float  # metres along `second` where the arc ends
    centre: tuple[float, float]

    @property
    def arc_m(self) -> float:
        return self.radius * abs(self.angle)

    @property
    def length_m(self) -> float:
        """Length of the whole path, from the first lane's start to the second lane's end."""
        return self.s_start + self.arc_m + self.second.length_m - self.u_end

    @property
    def speed_ms(self) -> float:
        """Speed on the arc: the lateral acceleration kept to TURN_LATERAL_MPS2."""
        return math.sqrt(TURN_LATERAL_MPS2 * self.radius)

    def pose(self, s: float) -> tuple[FloatArray, FloatArray]:
        """Point and unit direction at `s` metres along the path."""
        if s <= self.s_start:
            return np.array(self.first.point(s)), np.array(self.first.direction)
        if s >= self.s_start + self.arc_m:
            u = self.u_end + s - self.s_start - self.arc_m
            return np.array(self.second.point(u)), np.array(self.second.direction)
        phi = math.copysign((s - self.s_start) / self.radius, self.angle)
        c, sn = math.cos(phi), math.sin(phi)
        p1 = np.array(self.first.point(self.s_start)) - self.centre
        d = self.first.direction
        return (
            np.array([c * p1[0] - sn * p1[1], sn * p1[0] + c * p1[1]]) + self.centre,
            np.array([c * d[0] - sn * d[1], sn * d[0] + c * d[1]]),
        )


def _crossing(a: Lane, b: Lane) -> tuple[float, float] | None:
    """Metres along a and along b where their centre lines cross (None: parallel)."""
    da, db = np.array(a.direction), np.array(b.direction)
    m = np.column_stack([da, -db])
    if abs(float(np.linalg.det(m))) < 1e-9:
        return None
    sa, ub = np.linalg.solve(m, np.array(b.origin) - np.array(a.origin))
    return float(sa), float(ub)


def turn_problem(scene: Scene, first: str, second: str) -> str:
    """Why a vehicle on lane `first` cannot turn onto `second` ('' if it can)."""
    try:
        turn_geometry(scene, first, second)
    except ValueError as e:
        return str(e)
    return ""


def turn_geometry(scene: Scene, first: str, second: str) -> Turn:
    """The turn from lane `first` onto the crossing lane `second` (ValueError if none)."""
    a, b = scene.lane(first), scene.lane(second)
    if a.road == b.road:
        raise ValueError(f"{b.id} is on the same road as {a.id}: turns go onto another road")
    cross = float(a.direction[0] * b.direction[1] - a.direction[1] * b.direction[0])
    dot = float(a.direction[0] * b.direction[0] + a.direction[1] * b.direction[1])
    hit = _crossing(a, b)
    if hit is None or abs(cross) < 0.5:
        raise ValueError(f"{b.id} does not cross {a.id} at 30 degrees or more")
    sx, ux = hit
    # where the first lane's centre line enters the other road's lanes
    entry = sx
    for lane in scene.lanes:
        if lane.road != b.road:
            continue
        k = float(np.dot(a.direction, lane.normal))
        if abs(k) < 1e-9:
            continue
        off = float(np.dot(np.array(a.origin) - np.array(lane.origin), lane.normal))
        entry = min(entry, (-lane.width_m / 2 - off) / k, (lane.width_m / 2 - off) / k)
    angle = math.atan2(cross, dot)
    tangent = sx - entry + (scene.corner_radius_m if angle < 0 else 0.0)
    radius = tangent / math.tan(abs(angle) / 2)
    s_start, u_end = sx - tangent, ux + tangent
    if tangent <= 0 or s_start < 0 or sx > a.length_m or ux < 0 or u_end > b.length_m:
        raise ValueError(f"{b.id} does not cross {a.id} where both lanes are")
    p1 = np.array(a.point(s_start))
    side = np.array(a.normal) if angle > 0 else -np.array(a.normal)
    centre = p1 + radius * side
    return Turn(a, b, s_start, radius, angle, u_end, (float(centre[0]), float(centre[1])))


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


def _sector(c: tuple[float, float], r: float, a0: float, a1: float, n: int = 12) -> FloatArray:
    """A circular sector (convex fan from the centre) between angles a0 and a1 (radians)."""
    a = np.linspace(a0, a1, n + 1)
    arc = np.column_stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)])
    return np.vstack([np.array([c]), arc])


def junction() -> Scene:
    """Two two-lane streets crossing at right angles, with rounded kerbs at the corners.

    ``main`` runs north-south (``main.n0`` at x 1.75 north, ``main.s0`` at x -1.75 south),
    ``cross`` east-west (``cross.e0`` at y -1.75 east, ``cross.w0`` at y 1.75 west); the box is
    x, y in [-3.5, 3.5]. On each approach a zebra crossing 10-14 m from the centre and a stop
    line 2 m before it (the front of a waiting vehicle at 16.3 m). The camera stands on a 12 m
    pole behind the south-west corner and looks north-east over the box.
    """
    s = Scene(
        "junction",
        "Crossroads of two two-lane streets, zebra crossings and stop lines on every approach, "
        "rounded kerbs; camera on a pole behind the south-west corner",
        Camera(x_m=-16.0, y_m=-16.0, height_m=12.0, yaw_deg=45.0, pitch_deg=28.0, focal_mm=3.0),
        [],
        corner_radius_m=5.0,
    )
    lo, hi = -60.0, 200.0  # both roads run from lo to hi (metres from the centre)
    hw, lane_w, kerb_w, pave_w = 3.5, 3.5, 0.2, 4.8  # the pavements end where corners begin
    rc = s.corner_radius_m
    zebra = (10.0, 14.0)  # from the centre, on every approach
    stop = zebra[1] + 2.0  # stop line 2 m before the zebra, 0.3 m wide
    limit = 50.0
    _grass(s, -400, 400, -400, 600)
    g = s.ground
    out = hw + kerb_w + pave_w
    # pavements: along both roads on both sides, up to the other road (corners paved twice)
    for sx in (-1, 1):
        x0, x1 = sorted((sx * hw, sx * out))
        for a0, a1 in ((lo, -hw), (hw, hi)):
            for area in (rect(x0, x1, a0, a1), rect(a0, a1, x0, x1)):
                g.append(GroundPoly(area, PAVEMENT))
                s.walk_areas.append(area)
    # kerbs along the straight edges, up to where the corners' curves begin
    for sx in (-1, 1):
        k0, k1 = sorted((sx * hw, sx * (hw + kerb_w)))
        for a0, a1 in ((lo, -hw - rc), (hw + rc, hi)):
            g.append(GroundPoly(rect(k0, k1, a0, a1), KERB))
            g.append(GroundPoly(rect(a0, a1, k0, k1), KERB))
    # carriageways
    ns, ew = rect(-hw, hw, lo, hi), rect(lo, hi, -hw, hw)
    for cw in (ns, ew):
        g.append(GroundPoly(cw, ASPHALT))
        s.carriageways.append(cw)
    # rounded corners: asphalt square, kerb sector, pavement sector
    for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        c = (sx * (hw + rc), sy * (hw + rc))
        g.append(GroundPoly(rect(*sorted((sx * hw, c[0])), *sorted((sy * hw, c[1]))), ASPHALT))
        # the sector that faces the box: from pointing -sx along x to pointing -sy along y
        a0 = math.atan2(0.0, -sx)
        a1 = math.atan2(-sy, 0.0)
        if a1 - a0 > math.pi:
            a1 -= 2 * math.pi
        elif a0 - a1 > math.pi:
            a0 -= 2 * math.pi
        g.append(GroundPoly(_sector(c, rc, a0, a1), KERB))
        g.append(GroundPoly(_sector(c, rc - kerb_w, a0, a1), PAVEMENT))
    # lanes through the box
    length = hi - lo
    s.lanes += [
        Lane("main.n0", "main", (lane_w / 2, lo), (0.0, 1.0), length, lane_w, limit),
        Lane("main.s0", "main", (-lane_w / 2, hi), (0.0, -1.0), length, lane_w, limit),
        Lane("cross.e0", "cross", (lo, -lane_w / 2), (1.0, 0.0), length, lane_w, limit),
        Lane("cross.w0", "cross", (hi, lane_w / 2), (-1.0, 0.0), length, lane_w, limit),
    ]
    for lane in s.lanes:  # the near edge of the stop line, where the front of a car waits
        start = lo if lane.origin[0] + lane.origin[1] < 0 else hi  # coordinate of the origin
        s.stop_lines[lane.id] = round(abs(start) - stop - 0.3, 3)
    # markings in the north-south road's coordinates; the east-west road's are the same turned
    # clockwise by 90 degrees, (x, y) -> (y, -x), which keeps traffic on the right
    marks: list[FloatArray] = []
    for a, b in ((lo, -stop - 1.0), (stop + 1.0, hi)):
        marks += _dashes(0.0, a, b, 0.15, 3.0, 3.0)  # centre line
    for sy in (-1, 1):
        y0, y1 = sorted((sy * zebra[0], sy * zebra[1]))
        x = -hw + 0.25
        while x + 0.5 <= hw:
            marks.append(rect(x, x + 0.5, y0, y1))
            x += 1.0
        # solid centre line from the stop line to the zebra, stop line on the incoming lane
        marks.append(rect(-0.075, 0.075, *sorted((sy * zebra[1], sy * (stop + 1.0)))))
        xs = (0.0, hw) if sy < 0 else (-hw, 0.0)
        marks.append(rect(xs[0], xs[1], *sorted((sy * stop, sy * (stop + 0.3)))))
        s.crossings.append(rect(-hw, hw, y0, y1))
        s.crossings.append(rect(y0, y1, -hw, hw))
    for m in marks:
        g.append(GroundPoly(m, MARKING))
        g.append(GroundPoly(np.column_stack([m[:, 1], -m[:, 0]]), MARKING))
    for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1)):  # a lamp past each zebra
        for x, y in ((sx * (hw + 1.0), sy * 18.0), (sy * 18.0, -sx * (hw + 1.0))):
            s.lamps.append((x, y))
            s.boxes.append(StaticBox(x - 0.08, x + 0.08, y - 0.08, y + 0.08, 0.0, 7.0, POLE))
    # counting lines beyond the queues at the far stop lines
    s.lines["main"] = ((-hw, 40.0), (hw, 40.0))
    s.lines["cross"] = ((40.0, hw), (40.0, -hw))  # forward: eastbound
    return s


PRESETS: dict[str, Callable[[], Scene]] = {
    "urban_straight": urban_straight,
    "arterial": arterial,
    "highway": highway,
    "pedestrian_square": pedestrian_square,
    "junction": junction,
}


def make_scene(preset: str) -> Scene:
    return PRESETS[preset]()
