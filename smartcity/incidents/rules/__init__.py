"""Incident rules: one module per rule, each a class with one verb, ``update(frame)``.

`RuleSet` builds the configured rules of one camera from its geometry and runs them
(docs/incidents.md). Camera health is wired in by the service (rules/camera_health.py).
"""

from __future__ import annotations

from smartcity.incidents.rules.base import FrameView, Rule, Settings, frame_view
from smartcity.incidents.rules.congestion import Congestion, CongestionSettings
from smartcity.incidents.rules.crash import Crash, CrashSettings
from smartcity.incidents.rules.crowd import Crowd, CrowdSettings
from smartcity.incidents.rules.line_crossing import Crossing, LineCrossing, LineSettings
from smartcity.incidents.rules.loitering import Loitering, LoiteringSettings
from smartcity.incidents.rules.pedestrian_on_carriageway import (
    PedestrianOnCarriageway,
    PedestrianSettings,
)
from smartcity.incidents.rules.ruleset import RULES, RuleOutput, RuleSet, TrafficSample
from smartcity.incidents.rules.speeding import Speeding, SpeedingSettings
from smartcity.incidents.rules.stopped_vehicle import StoppedSettings, StoppedVehicle
from smartcity.incidents.rules.traffic import LaneMeter, LaneSample, level_of_service
from smartcity.incidents.rules.wrong_way import WrongWay, WrongWaySettings
from smartcity.incidents.rules.zone_intrusion import ZoneIntrusion, ZoneSettings

__all__ = [
    "RULES",
    "Congestion",
    "CongestionSettings",
    "Crash",
    "CrashSettings",
    "Crossing",
    "Crowd",
    "CrowdSettings",
    "FrameView",
    "LaneMeter",
    "LaneSample",
    "LineCrossing",
    "LineSettings",
    "Loitering",
    "LoiteringSettings",
    "PedestrianOnCarriageway",
    "PedestrianSettings",
    "Rule",
    "RuleOutput",
    "RuleSet",
    "Settings",
    "Speeding",
    "SpeedingSettings",
    "StoppedSettings",
    "StoppedVehicle",
    "TrafficSample",
    "WrongWay",
    "WrongWaySettings",
    "ZoneIntrusion",
    "ZoneSettings",
    "frame_view",
    "level_of_service",
]
