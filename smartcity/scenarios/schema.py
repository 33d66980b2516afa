"""Scenario files (YAML): the schema, its checks, and the typed scenario they produce.

A bad file raises ``ScenarioError`` whose message starts with the path of the field at fault,
e.g. ``objects[2].speed_kmh: must be a number >= 0``. docs/scenarios.md lists every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smartcity.classes import APPLIANCE_CLASSES
from smartcity.scenarios.camera import RESOLUTIONS
from smartcity.scenarios.world import PRESETS, turn_problem

CLASSES = APPLIANCE_CLASSES
VEHICLES = ("bicycle", "motorcycle", "car", "bus", "truck")
INCIDENT_TYPES = (
    "wrong_way",
    "stopped_vehicle",
    "speeding",
    "congestion",
    "crowd",
    "loitering",
    "pedestrian_on_carriageway",
    "crash",
)
CAMERA_FIELDS = ("x_m", "y_m", "height_m", "yaw_deg", "pitch_deg", "roll_deg", "focal_mm")
_MISSING: Any = object()


class ScenarioError(ValueError):
    """A scenario file that does not follow the schema; the message names the field."""


@dataclass(frozen=True)
class Effects:
    noise: float = 0.0  # sensor noise, sigma in grey levels (0..50)
    brightness_drift: float = 0.0  # relative amplitude of the slow gain drift (0..0.5)
    rain: float = 0.0  # rain streak density (0..1)
    night: bool = False
    shake_px: float = 0.0  # camera shake amplitude in pixels at 1280x720 (0..20)
    crf: int = 23  # libx264 constant rate factor (0..51): compression strength
    gop: int = 0  # key frame interval in frames; 0: two seconds


@dataclass(frozen=True)
class Action:
    at_s: float
    speed_kmh: float | None = None
    stop: bool = False
    decel_mps2: float = 3.0
    change_lane: str | int | None = None
    duration_s: float = 3.0


@dataclass(frozen=True)
class ObjectSpec:
    cls: str
    id: int | None = None
    enter_s: float = 0.0
    speed_kmh: float | None = None
    lane: str | int | None = None
    start_m: float | None = None
    against_lane: bool = False
    ignore_obstacles: bool = False
    actions: tuple[Action, ...] = ()
    path: tuple[tuple[float, float, float], ...] = ()  # (x, y, wait_s)
    leave_at_end: bool = False
    wander_centre: tuple[float, float] | None = None
    wander_radius_m: float = 4.0
    wander_for_s: float = 60.0
    colour: tuple[int, int, int] | None = None
    turn_to: str | int | None = None  # a lane that crosses `lane`: turn onto it on an arc


@dataclass(frozen=True)
class Flow:
    lanes: tuple[str | int, ...]
    per_minute: float
    classes: tuple[tuple[str, float], ...]
    speed_kmh: tuple[float, float]
    from_s: float = 0.0
    to_s: float = 1e9


@dataclass(frozen=True)
class Hold:
    lane: str | int
    at_m: float
    from_s: float
    to_s: float


@dataclass(frozen=True)
class Crowd:
    count: int
    centre: tuple[float, float]
    radius_m: float
    from_radius_m: float
    enter_s: float
    gather_s: float
    disperse_s: float


@dataclass(frozen=True)
class TruthParams:
    """Thresholds that turn scripted motion into expected incidents (docs/scenarios.md)."""

    max_range_m: float = 150.0
    wrong_way_min_m: float = 15.0
    stopped_max_kmh: float = 2.0
    stopped_min_s: float = 8.0
    speeding_margin_kmh: float = 10.0
    speeding_min_s: float = 1.0
    congestion_max_kmh: float = 10.0
    congestion_min_vehicles: int = 5
    congestion_min_s: float = 10.0
    crowd_min_people: int = 8
    crowd_radius_m: float = 4.0
    crowd_min_s: float = 4.0
    loiter_radius_m: float = 6.0
    loiter_min_s: float = 30.0
    on_carriageway_min_s: float = 2.0
    tolerance_s: float = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    preset: str
    seconds: float = 20.0
    fps: float = 25.0
    seed: int = 0
    resolution: str = "1280x720"
    camera: tuple[tuple[str, float], ...] = ()
    effects: Effects = field(default_factory=Effects)
    objects: tuple[ObjectSpec, ...] = ()
    traffic: tuple[Flow, ...] = ()
    holds: tuple[Hold, ...] = ()
    crowds: tuple[Crowd, ...] = ()
    lines: tuple[tuple[str, tuple[tuple[float, float], tuple[float, float]]], ...] = ()
    truth: TruthParams = field(default_factory=TruthParams)
    expect: tuple[tuple[str, int], ...] = ()
    source: str = ""


# --------------------------------------------------------------------------- reading helpers


class _Map:
    """Typed access to one mapping of the file, with the field's path in every error."""

    def __init__(self, data: Any, path: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{path or 'scenario'}: must be a mapping")
        self.data = data
        self.path = path
        for key in data:
            if key not in allowed:
                raise ScenarioError(
                    f"{self.at(str(key))}: unknown field (allowed: {', '.join(allowed)})"
                )

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise ScenarioError(f"{self.at(key)}: required field is missing")
            return default
        return self.data[key]

    def num(
        self,
        key: str,
        default: Any = _MISSING,
        lo: float | None = None,
        hi: float | None = None,
        integer: bool = False,
    ) -> Any:
        v = self.get(key, default)
        if v is default and key not in self.data:
            return v
        return number(v, self.at(key), lo, hi, integer)

    def string(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> Any:
        v = self.get(key, default)
        if key not in self.data:
            return v
        if not isinstance(v, str) or not v:
            raise ScenarioError(f"{self.at(key)}: must be a non-empty string")
        if choices and v not in choices:
            raise ScenarioError(f"{self.at(key)}: must be one of {', '.join(choices)}")
        return v

    def boolean(self, key: str, default: bool = False) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise ScenarioError(f"{self.at(key)}: must be true or false")
        return v

    def seq(self, key: str) -> list[Any]:
        v = self.get(key, [])
        if not isinstance(v, list):
            raise ScenarioError(f"{self.at(key)}: must be a list")
        return v


def number(
    v: Any, path: str, lo: float | None = None, hi: float | None = None, integer: bool = False
) -> Any:
    kind = "an integer" if integer else "a number"
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or v != v:
        bounds = _bounds(lo, hi)
        raise ScenarioError(f"{path}: must be {kind}{bounds}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ScenarioError(f"{path}: must be {kind}{_bounds(lo, hi)}")
    return int(v) if integer else float(v)


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f" >= {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""


def _point(v: Any, path: str, n: int = 2) -> tuple[float, ...]:
    if not isinstance(v, list) or len(v) != n:
        raise ScenarioError(f"{path}: must be a list of {n} numbers")
    return tuple(number(x, f"{path}[{i}]") for i, x in enumerate(v))


def _lane_ref(v: Any, path: str, lanes: list[str]) -> str | int:
    if isinstance(v, bool):
        raise ScenarioError(f"{path}: must be a lane id ({', '.join(lanes)}) or index")
    if isinstance(v, int):
        if not 0 <= v < len(lanes):
            raise ScenarioError(f"{path}: lane index must be in [0, {len(lanes) - 1}]")
        return lanes[v]
    if isinstance(v, str) and v in lanes:
        return v
    raise ScenarioError(f"{path}: must be a lane id ({', '.join(lanes)}) or index")


# --------------------------------------------------------------------------- sections

_TOP = (
    "name",
    "description",
    "preset",
    "seconds",
    "fps",
    "seed",
    "resolution",
    "camera",
    "effects",
    "objects",
    "traffic",
    "holds",
    "crowds",
    "lines",
    "truth",
    "expect",
)
_OBJECT = (
    "id",
    "class",
    "enter_s",
    "speed_kmh",
    "lane",
    "start_m",
    "against_lane",
    "ignore_obstacles",
    "actions",
    "path",
    "leave_at_end",
    "wander",
    "colour",
    "turn_to",
)


def _effects(data: Any) -> Effects:
    m = _Map(
        data, "effects", ("noise", "brightness_drift", "rain", "night", "shake_px", "crf", "gop")
    )
    return Effects(
        noise=m.num("noise", 0.0, 0, 50),
        brightness_drift=m.num("brightness_drift", 0.0, 0, 0.5),
        rain=m.num("rain", 0.0, 0, 1),
        night=m.boolean("night"),
        shake_px=m.num("shake_px", 0.0, 0, 20),
        crf=m.num("crf", 23, 0, 51, integer=True),
        gop=m.num("gop", 0, 0, 600, integer=True),
    )


def _action(data: Any, path: str, lanes: list[str]) -> Action:
    m = _Map(data, path, ("at_s", "speed_kmh", "stop", "decel_mps2", "change_lane", "duration_s"))
    kinds = [k for k in ("speed_kmh", "stop", "change_lane") if m.has(k)]
    if len(kinds) != 1:
        raise ScenarioError(f"{path}: needs exactly one of speed_kmh, stop, change_lane")
    return Action(
        at_s=m.num("at_s", lo=0),
        speed_kmh=m.num("speed_kmh", None, 0, 400),
        stop=m.boolean("stop"),
        decel_mps2=m.num("decel_mps2", 3.0, 0.1, 12),
        change_lane=(
            _lane_ref(m.get("change_lane"), m.at("change_lane"), lanes)
            if m.has("change_lane")
            else None
        ),
        duration_s=m.num("duration_s", 3.0, 0.5, 30),
    )


def _object(data: Any, path: str, lanes: list[str]) -> ObjectSpec:
    m = _Map(data, path, _OBJECT)
    cls = m.string("class", choices=CLASSES)
    modes = [k for k in ("lane", "path", "wander") if m.has(k)]
    if len(modes) != 1:
        raise ScenarioError(f"{path}: needs exactly one of lane, path, wander")
    default_speed = 5.0 if cls == "person" else None
    speed = m.num("speed_kmh", default_speed, 0, 400)
    lane = path_pts = wander = None
    if m.has("lane"):
        lane = _lane_ref(m.get("lane"), m.at("lane"), lanes)
        if speed is None:
            raise ScenarioError(f"{m.at('speed_kmh')}: required for an object on a lane")
    elif m.has("path"):
        pts = m.seq("path")
        if len(pts) < 1:
            raise ScenarioError(f"{m.at('path')}: needs at least one point")
        parsed = []
        for i, p in enumerate(pts):
            pp = m.at("path") + f"[{i}]"
            if not isinstance(p, list) or len(p) not in (2, 3):
                raise ScenarioError(f"{pp}: must be [x, y] or [x, y, wait_s]")
            x, y = number(p[0], f"{pp}[0]"), number(p[1], f"{pp}[1]")
            w = number(p[2], f"{pp}[2]", lo=0) if len(p) == 3 else 0.0
            parsed.append((x, y, w))
        path_pts = tuple(parsed)
    else:
        w = _Map(m.get("wander"), m.at("wander"), ("centre", "radius_m", "for_s"))
        wander = (
            _point(w.get("centre"), w.at("centre")),
            w.num("radius_m", 4.0, 0.5, 50),
            w.num("for_s", 60.0, 1, 3600),
        )
    if (path_pts or wander) and speed is None:
        speed = 5.0
    colour = None
    if m.has("colour"):
        c = m.get("colour")
        if not isinstance(c, list) or len(c) != 3:
            raise ScenarioError(f"{m.at('colour')}: must be [b, g, r] with values 0..255")
        colour = tuple(number(x, m.at("colour") + f"[{i}]", 0, 255, True) for i, x in enumerate(c))
    acts = tuple(
        _action(a, m.at("actions") + f"[{i}]", lanes) for i, a in enumerate(m.seq("actions"))
    )
    if acts and lane is None:
        raise ScenarioError(f"{m.at('actions')}: only objects on a lane take actions")
    turn_to = None
    if m.has("turn_to"):
        turn_to = _lane_ref(m.get("turn_to"), m.at("turn_to"), lanes)
        if lane is None or m.boolean("against_lane"):
            raise ScenarioError(
                f"{m.at('turn_to')}: only objects driving with their lane's direction turn"
            )
        if any(a.change_lane is not None for a in acts):
            raise ScenarioError(f"{m.at('turn_to')}: a turning object cannot also change lane")
    return ObjectSpec(
        cls=cls,
        id=m.num("id", None, 1, 10**6, integer=True),
        enter_s=m.num("enter_s", 0.0, 0),
        speed_kmh=speed,
        lane=lane,
        start_m=m.num("start_m", None),
        against_lane=m.boolean("against_lane"),
        ignore_obstacles=m.boolean("ignore_obstacles"),
        actions=tuple(sorted(acts, key=lambda a: a.at_s)),
        path=path_pts or (),
        leave_at_end=m.boolean("leave_at_end"),
        wander_centre=wander[0] if wander else None,  # type: ignore[arg-type]
        wander_radius_m=wander[1] if wander else 4.0,
        wander_for_s=wander[2] if wander else 60.0,
        colour=colour,  # type: ignore[arg-type]
        turn_to=turn_to,
    )


def _flow(data: Any, path: str, lanes: list[str]) -> Flow:
    m = _Map(data, path, ("lanes", "per_minute", "classes", "speed_kmh", "from_s", "to_s"))
    refs = m.get("lanes", "all")
    if refs == "all":
        lane_refs: tuple[str | int, ...] = tuple(lanes)
    else:
        if not isinstance(refs, list) or not refs:
            raise ScenarioError(f"{m.at('lanes')}: must be 'all' or a non-empty list of lanes")
        lane_refs = tuple(_lane_ref(r, m.at("lanes") + f"[{i}]", lanes) for i, r in enumerate(refs))
    cls_data = m.get("classes", {"car": 0.8, "truck": 0.08, "bus": 0.04, "motorcycle": 0.08})
    if not isinstance(cls_data, dict) or not cls_data:
        raise ScenarioError(f"{m.at('classes')}: must be a mapping of class to weight")
    classes = []
    for k, v in cls_data.items():
        if k not in VEHICLES:
            raise ScenarioError(f"{m.at('classes')}.{k}: must be one of {', '.join(VEHICLES)}")
        classes.append((str(k), number(v, f"{m.at('classes')}.{k}", lo=0)))
    speed = m.get("speed_kmh", [35, 45])
    lo, hi = _point(speed, m.at("speed_kmh"))
    if not 0 < lo <= hi:
        raise ScenarioError(f"{m.at('speed_kmh')}: must be [low, high] with 0 < low <= high")
    return Flow(
        lanes=lane_refs,
        per_minute=m.num("per_minute", lo=0, hi=120),
        classes=tuple(classes),
        speed_kmh=(lo, hi),
        from_s=m.num("from_s", 0.0, 0),
        to_s=m.num("to_s", 1e9, 0),
    )


def _hold(data: Any, path: str, lanes: list[str]) -> Hold:
    m = _Map(data, path, ("lane", "at_m", "from_s", "to_s"))
    return Hold(
        lane=_lane_ref(m.get("lane"), m.at("lane"), lanes),
        at_m=m.num("at_m", lo=0),
        from_s=m.num("from_s", 0.0, 0),
        to_s=m.num("to_s", 1e9, 0),
    )


def _crowd(data: Any, path: str) -> Crowd:
    m = _Map(
        data,
        path,
        ("count", "centre", "radius_m", "from_radius_m", "enter_s", "gather_s", "disperse_s"),
    )
    c = Crowd(
        count=m.num("count", lo=1, hi=200, integer=True),
        centre=_point(m.get("centre"), m.at("centre")),  # type: ignore[arg-type]
        radius_m=m.num("radius_m", 2.5, 0.5, 30),
        from_radius_m=m.num("from_radius_m", 20.0, 1, 200),
        enter_s=m.num("enter_s", 0.0, 0),
        gather_s=m.num("gather_s", lo=0),
        disperse_s=m.num("disperse_s", 1e9, 0),
    )
    if c.disperse_s <= c.gather_s:
        raise ScenarioError(f"{m.at('disperse_s')}: must be later than gather_s")
    return c


def _truth(data: Any) -> TruthParams:
    names = tuple(TruthParams.__dataclass_fields__)
    m = _Map(data, "truth", names)
    base = TruthParams()
    vals: dict[str, Any] = {}
    for n in names:
        cur = getattr(base, n)
        vals[n] = m.num(n, cur, lo=0, integer=isinstance(cur, int))
    return TruthParams(**vals)


def parse_scenario(data: Any, source: str = "") -> Scenario:
    """Checks one scenario (the YAML document as Python data) and returns it typed."""
    m = _Map(data, "", _TOP)
    preset = m.string("preset", choices=tuple(PRESETS))
    scene = PRESETS[preset]()
    lanes = scene.lane_ids()
    name = m.string("name")
    if not all(c.isalnum() or c in "_-" for c in name):
        raise ScenarioError("name: letters, digits, '_' and '-' only")
    cam = _Map(m.get("camera", {}), "camera", CAMERA_FIELDS)
    camera = tuple((k, cam.num(k, lo=0.5 if k == "focal_mm" else None)) for k in cam.data)
    if "height_m" in cam.data and cam.data["height_m"] <= 0.5:
        raise ScenarioError("camera.height_m: must be a number > 0.5")
    objects = tuple(_object(o, f"objects[{i}]", lanes) for i, o in enumerate(m.seq("objects")))
    for i, o in enumerate(objects):
        if o.turn_to is not None:
            why = turn_problem(scene, str(o.lane), str(o.turn_to))
            if why:
                raise ScenarioError(f"objects[{i}].turn_to: {why}")
    ids = [o.id for o in objects if o.id is not None]
    for i, o in enumerate(objects):
        if o.id is not None and ids.count(o.id) > 1:
            raise ScenarioError(f"objects[{i}].id: {o.id} is used twice")
    lines = []
    lm = _Map(m.get("lines", {}), "lines", tuple(str(k) for k in m.get("lines", {}) or {}))
    for k, v in lm.data.items():
        if not isinstance(v, list) or len(v) != 2:
            raise ScenarioError(f"lines.{k}: must be [[x0, y0], [x1, y1]]")
        a = _point(v[0], f"lines.{k}[0]")
        b = _point(v[1], f"lines.{k}[1]")
        lines.append((str(k), ((a[0], a[1]), (b[0], b[1]))))
    expect_data = m.get("expect", {})
    if not isinstance(expect_data, dict):
        raise ScenarioError("expect: must be a mapping of incident type to count")
    expect = []
    for k, v in expect_data.items():
        if k not in INCIDENT_TYPES:
            raise ScenarioError(f"expect.{k}: must be one of {', '.join(INCIDENT_TYPES)}")
        expect.append((str(k), number(v, f"expect.{k}", 0, 1000, True)))
    return Scenario(
        name=name,
        description=m.string("description", ""),
        preset=preset,
        seconds=m.num("seconds", 20.0, 0.1, 3600),
        fps=m.num("fps", 25.0, 1, 120),
        seed=m.num("seed", 0, 0, 2**31 - 1, integer=True),
        resolution=m.string("resolution", "1280x720", choices=tuple(RESOLUTIONS)),
        camera=camera,
        effects=_effects(m.get("effects", {})),
        objects=objects,
        traffic=tuple(_flow(f, f"traffic[{i}]", lanes) for i, f in enumerate(m.seq("traffic"))),
        holds=tuple(_hold(h, f"holds[{i}]", lanes) for i, h in enumerate(m.seq("holds"))),
        crowds=tuple(_crowd(c, f"crowds[{i}]") for i, c in enumerate(m.seq("crowds"))),
        lines=tuple(lines),
        truth=_truth(m.get("truth", {})),
        expect=tuple(expect),
        source=source,
    )


def load_scenario_file(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError(f"{p.name}: not valid YAML: {e}") from e
    return parse_scenario(data, source=str(p))


def load_scenario_text(text: str) -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(f"not valid YAML: {e}") from e
    return parse_scenario(data)
