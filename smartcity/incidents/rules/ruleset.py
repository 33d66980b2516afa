"""RuleSet: the configured rules of one camera, run on each frame of its tracks.

```python
geo = parse_camera_geometry("cam1", appliance["cameras"]["cam1"]["geometry"])
rules = RuleSet(geo, appliance["cameras"]["cam1"].get("rules"))   # GeometryError if bad
out = rules.update(frame)          # frame: FrameTracks of cam1, in stream order
out.findings                       # list[Finding] of every rule, this frame
out.traffic.lanes                  # tuple[LaneSample]: per lane vehicles, speed, occupancy, LOS
out.traffic.crossings              # tuple[Crossing]: line crossings this frame
```

Rules config: ``{rule_name: {setting: value}}``, a rule's name mapped to ``false`` turns it
off, ``true`` or ``{}`` keeps its defaults. A rule is on by default when the camera has what it
needs (lines, zones, lanes, a calibration for the rules that measure metres); one named in the
config that cannot run is refused at start naming the camera and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smartcity.incidents.geometry import CameraGeometry, GeometryError
from smartcity.incidents.rules.base import Rule, Settings, frame_view, parse_settings
from smartcity.incidents.rules.congestion import Congestion, CongestionSettings
from smartcity.incidents.rules.crash import Crash, CrashSettings
from smartcity.incidents.rules.crowd import Crowd, CrowdSettings
from smartcity.incidents.rules.line_crossing import Crossing, LineCrossing, LineSettings
from smartcity.incidents.rules.loitering import Loitering, LoiteringSettings
from smartcity.incidents.rules.pedestrian_on_carriageway import (
    PedestrianOnCarriageway,
    PedestrianSettings,
)
from smartcity.incidents.rules.speeding import Speeding, SpeedingSettings
from smartcity.incidents.rules.stopped_vehicle import StoppedSettings, StoppedVehicle
from smartcity.incidents.rules.traffic import LaneMeter, LaneSample
from smartcity.incidents.rules.wrong_way import WrongWay, WrongWaySettings
from smartcity.incidents.rules.zone_intrusion import ZoneIntrusion, ZoneSettings
from smartcity.incidents.types import SEVERITIES, Finding, FrameTracks

#: rule name -> (class, settings class), in the order they run (crash before stopped_vehicle)
RULES: dict[str, tuple[type[Rule], type[Settings]]] = {
    "line_crossing": (LineCrossing, LineSettings),
    "zone_intrusion": (ZoneIntrusion, ZoneSettings),
    "wrong_way": (WrongWay, WrongWaySettings),
    "crash": (Crash, CrashSettings),
    "stopped_vehicle": (StoppedVehicle, StoppedSettings),
    "speeding": (Speeding, SpeedingSettings),
    "congestion": (Congestion, CongestionSettings),
    "crowd": (Crowd, CrowdSettings),
    "loitering": (Loitering, LoiteringSettings),
    "pedestrian_on_carriageway": (PedestrianOnCarriageway, PedestrianSettings),
}


@dataclass(frozen=True)
class TrafficSample:
    """One frame's traffic measurements of one camera (aggregated into minute buckets)."""

    cam: str
    pts: float
    t_ns: int
    lanes: tuple[LaneSample, ...]
    crossings: tuple[Crossing, ...]


@dataclass(frozen=True)
class RuleOutput:
    findings: list[Finding]
    traffic: TrafficSample


def _missing(name: str, geo: CameraGeometry, settings: Settings) -> str | None:
    """Why a rule cannot run on this camera (None: it can)."""
    metres = RULES[name][0].needs_calibration
    if isinstance(settings, CrowdSettings):
        metres = not settings.zones  # a radius in metres, or people counted in zones
    if metres and not geo.calibrated:
        return "needs a calibration (it measures metres or km/h)"
    if name == "line_crossing" and not geo.lines:
        return "needs lines in the geometry"
    if name == "zone_intrusion" and not geo.zones:
        return "needs zones in the geometry"
    if name in ("wrong_way", "speeding", "congestion", "crash") and not geo.lanes:
        return "needs lanes in the geometry"
    if name == "stopped_vehicle" and not (geo.lanes or geo.no_stopping):
        return "needs lanes or no_stopping areas in the geometry"
    if name == "pedestrian_on_carriageway" and not (geo.carriageways or geo.lanes):
        return "needs carriageways or lanes in the geometry"
    return None


class RuleSet:
    """The rules of one camera. ``skipped`` says which default rules could not run and why."""

    def __init__(self, geometry: CameraGeometry, config: Mapping[str, Any] | None = None) -> None:
        self.geometry = geometry
        self.cam = geometry.cam
        base = f"cameras.{self.cam}.rules"
        config = config or {}
        if not isinstance(config, Mapping):
            raise GeometryError(base, f"must be a mapping, got {type(config).__name__}")
        for k in config:
            if k not in RULES:
                raise GeometryError(f"{base}.{k}", f"unknown rule (one of {', '.join(RULES)})")
        self.settings: dict[str, Settings] = {}
        self.skipped: dict[str, str] = {}
        for name, (_cls, scls) in RULES.items():
            path = f"{base}.{name}"
            s = parse_settings(scls, config.get(name), path)
            sev = getattr(s, "severity", "medium")
            if sev not in SEVERITIES:
                raise GeometryError(f"{path}.severity", f"must be one of {', '.join(SEVERITIES)}")
            if not s.enabled:
                self.skipped[name] = "disabled"
                continue
            why = _missing(name, geometry, s)
            if why is not None:
                if name in config:
                    raise GeometryError(path, why)
                self.skipped[name] = why
                continue
            self.settings[name] = s
        self._build()

    def _build(self) -> None:
        self.rules: dict[str, Rule] = {
            name: RULES[name][0](self.geometry, s)  # type: ignore[call-arg]
            for name, s in self.settings.items()
        }
        crash, stopped = self.rules.get("crash"), self.rules.get("stopped_vehicle")
        if isinstance(crash, Crash) and isinstance(stopped, StoppedVehicle):
            stopped.crashed = lambda: crash.crashed_ids
        cong = self.rules.get("congestion")
        self._meter = None if isinstance(cong, Congestion) else LaneMeter(self.geometry)
        self._last: FrameTracks | None = None

    def reset(self) -> None:
        """Forgets every track and count (a stream restarted)."""
        self._build()

    @property
    def line_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Running totals ``[line][in|out][class name]`` since start (or reset)."""
        r = self.rules.get("line_crossing")
        return r.counts if isinstance(r, LineCrossing) else {}

    def finish(self, frame: FrameTracks | None = None) -> RuleOutput:
        """The stream ended at ``frame`` (default: the last one given to `update`; nothing to
        do before the first): line crossings not settled yet count now, as if each track had
        vanished where it was. Called at the end of a stream, when a camera leaves or its rules
        are replaced, at a stop, and by `update` itself when stream time goes back."""
        frame = frame if frame is not None else self._last  # (a frame with no tracks is falsy)
        if frame is None:
            return RuleOutput([], TrafficSample(self.cam, 0.0, 0, (), ()))
        line = self.rules.get("line_crossing")
        if not isinstance(line, LineCrossing):
            return RuleOutput([], TrafficSample(self.cam, frame.pts, frame.t_ns, (), ()))
        findings = line.flush(frame)
        traffic = TrafficSample(self.cam, frame.pts, frame.t_ns, (), tuple(line.events))
        return RuleOutput(findings, traffic)

    def update(self, frame: FrameTracks) -> RuleOutput:
        if frame.cam != self.cam:
            raise ValueError(f"frame of camera {frame.cam!r} given to the rules of {self.cam!r}")
        early: tuple[Crossing, ...] = ()
        findings: list[Finding] = []
        if self._last is not None and frame.pts < self._last.pts:
            # stream time went back, a restarted stream: what was pending counts, then forget
            done = self.finish()
            findings, early = list(done.findings), tuple(done.traffic.crossings)
            self.reset()
        self._last = frame
        for rule in self.rules.values():
            findings.extend(rule.update(frame))
        cong = self.rules.get("congestion")
        if isinstance(cong, Congestion):
            lanes = cong.samples
        else:
            assert self._meter is not None
            lanes = self._meter.sample(frame_view(frame, self.geometry))
        line = self.rules.get("line_crossing")
        crossings = line.events if isinstance(line, LineCrossing) else []
        traffic = TrafficSample(self.cam, frame.pts, frame.t_ns, tuple(lanes), (*early, *crossings))
        return RuleOutput(findings, traffic)
