"""Zone intrusion: a track of a class the zone forbids (or does not allow) stays inside the zone
for the zone's ``min_dwell_s``; closed when it leaves or vanishes. Zones come from the camera's
geometry (``zones``: polygon, allowed / forbidden classes, min_dwell_s)."""

from __future__ import annotations

from dataclasses import dataclass, field

from smartcity.incidents.geometry import CameraGeometry
from smartcity.incidents.rules.base import Rule, Settings, TrackStates, class_name, frame_view
from smartcity.incidents.types import Finding, FrameTracks


@dataclass(frozen=True)
class ZoneSettings(Settings):
    leave_s: float = 1.0  # outside this long: the intrusion is over
    forget_s: float = 3.0
    severity: str = "high"


@dataclass
class _InZone:
    since: dict[str, float] = field(default_factory=dict)  # zone -> first pts inside
    outside: dict[str, float] = field(default_factory=dict)  # zone -> first pts outside again
    open: set[str] = field(default_factory=set)


class ZoneIntrusion(Rule):
    name = "zone_intrusion"
    s: ZoneSettings

    def __init__(self, geometry: CameraGeometry, settings: ZoneSettings | None = None) -> None:
        super().__init__(geometry)
        self.s = settings or ZoneSettings()
        self.states: TrackStates[_InZone] = TrackStates(_InZone, self.s.forget_s)

    def _close(self, frame: FrameTracks, tid: int, zone: str) -> Finding:
        return self.finding(frame, f"zone:{zone}:track:{tid}", (tid,), closed=True,
                            severity=self.s.severity, details={"zone": zone})  # fmt: skip

    def _update(self, frame: FrameTracks) -> list[Finding]:
        v = frame_view(frame, self.geometry)
        out: list[Finding] = []
        for zone in self.geometry.zones:
            inside = zone.contains(v.px, v.ground)
            for i, tid in enumerate(v.ids.tolist()):
                if not zone.is_forbidden(int(v.cls[i])):
                    continue
                st = self.states.get(tid, frame.pts)
                if inside[i]:
                    st.outside.pop(zone.name, None)
                    t0 = st.since.setdefault(zone.name, frame.pts)
                    if zone.name not in st.open and frame.pts - t0 >= zone.min_dwell_s:
                        st.open.add(zone.name)
                        out.append(
                            self.finding(
                                frame, f"zone:{zone.name}:track:{tid}", (tid,),
                                severity=self.s.severity,
                                details={"zone": zone.name, "class": class_name(int(v.cls[i])),
                                         "dwell_s": round(frame.pts - t0, 2)},
                            )
                        )  # fmt: skip
                elif zone.name in st.since:
                    t_out = st.outside.setdefault(zone.name, frame.pts)
                    if frame.pts - t_out >= self.s.leave_s:
                        del st.since[zone.name]
                        if zone.name in st.open:
                            st.open.discard(zone.name)
                            out.append(self._close(frame, tid, zone.name))
        for tid, st in self.states.prune(frame.pts):
            out.extend(self._close(frame, tid, z) for z in sorted(st.open))
        return out
