"""Findings -> incidents: de-duplication, merging within a cool-down, store first, then the bus.

`IncidentManager.handle(finding)` decides what a rule's finding means for the store:

- no active incident for (camera, rule, key): **open** one (state open, count 1), committed to
  the store, then published as `incident.<type>` with state `open`, then evidence is asked for
  (`on_open`);
- an active one whose condition goes on: **update** it (last seen pts, track ids, severity,
  details) at most every `update_every_s` of stream time or when its tracks or severity change;
- an active one whose condition had ended (a closed finding) and fires again: **merge** (the
  store counts the firings). An incident stays active until an operator resolves or dismisses
  it, so a rule firing again for the same key never opens a second one;
- a closed finding: the condition **ended**. Types in `auto_resolve` (congestion, camera
  health: conditions, not events) are resolved by the system once `cooldown_s` of the camera's
  stream time has passed without a new firing (`advance`); a firing within the cool-down merges
  into the same incident instead. Other types wait for an operator.
- a key an operator dismissed is not opened again within its cool-down (a false alarm on the
  same track would otherwise come straight back).

System incidents (disk full, evidence failures that need a person) belong to the reserved
camera `appliance` (`ensure_system_camera`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smartcity.bus.events import IncidentEvent
from smartcity.incidents.types import SEVERITIES, Finding
from smartcity.store import (
    DuplicateError,
    IncidentRecord,
    InvalidTransitionError,
    Store,
    utc_from_ns,
)

log = logging.getLogger("smartcity.incidents")

SYSTEM_CAMERA = "appliance"
SYSTEM_TYPE = "system"
#: Incident types the system resolves itself once the condition has ended for the cool-down.
AUTO_RESOLVE = frozenset({"congestion", "camera_health", "crowd", SYSTEM_TYPE})


class LifecycleConfigError(ValueError):
    """A bad lifecycle setting; the message names the field."""


@dataclass(frozen=True)
class LifecycleSettings:
    cooldown_s: float = 60.0  # stream seconds; per type in `cooldowns`
    cooldowns: Mapping[str, float] = field(default_factory=dict)
    update_every_s: float = 5.0  # an ongoing incident is written and published at most this often
    auto_resolve: frozenset[str] = AUTO_RESOLVE

    def cooldown(self, rule: str) -> float:
        return float(self.cooldowns.get(rule, self.cooldown_s))

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any] | None, where: str = "lifecycle"
    ) -> LifecycleSettings:
        data = dict(data or {})
        unknown = set(data) - {"cooldown_s", "cooldowns", "update_every_s", "auto_resolve"}
        if unknown:
            raise LifecycleConfigError(f"{where}.{sorted(unknown)[0]}: unknown field")

        def number(key: str, v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 86400:
                raise LifecycleConfigError(f"{where}.{key}: must be a number in [0, 86400]")
            return float(v)

        cds = data.get("cooldowns", {}) or {}
        if not isinstance(cds, Mapping):
            raise LifecycleConfigError(f"{where}.cooldowns: must map incident types to seconds")
        auto = data.get("auto_resolve", sorted(AUTO_RESOLVE))
        if not isinstance(auto, list) or not all(isinstance(a, str) for a in auto):
            raise LifecycleConfigError(f"{where}.auto_resolve: must be a list of incident types")
        return cls(
            cooldown_s=number("cooldown_s", data.get("cooldown_s", 60.0)),
            cooldowns={str(k): number(f"cooldowns.{k}", v) for k, v in cds.items()},
            update_every_s=number("update_every_s", data.get("update_every_s", 5.0)),
            auto_resolve=frozenset(auto),
        )


def priority_of(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 2


def ensure_system_camera(store: Store) -> None:
    """The reserved camera row that system incidents belong to (disabled; never streamed)."""
    if not store.cameras.exists(SYSTEM_CAMERA):
        try:
            store.cameras.add(
                SYSTEM_CAMERA, "The appliance (system incidents)", "internal:appliance",
                enabled=False,
            )  # fmt: skip
        except DuplicateError:
            pass  # another service made it meanwhile


@dataclass
class _Live:
    id: str
    opened_ns: int
    last_write_pts: float
    severity: str
    track_ids: set[int]
    ended_pts: float | None = None
    last_seen_pts: float = 0.0


def _scalar_details(d: Mapping[str, Any]) -> dict[str, str | int | float | bool | None]:
    out: dict[str, str | int | float | bool | None] = {}
    for k, v in d.items():
        if v is None or isinstance(v, str | int | bool):
            out[str(k)] = v
        elif isinstance(v, float):
            out[str(k)] = v if math.isfinite(v) else None
        else:
            out[str(k)] = str(v)
    return out


class IncidentManager:
    """Turns findings into incidents in the store and on the bus (one per service)."""

    def __init__(
        self,
        store: Store,
        publish: Callable[[IncidentEvent], object] | None = None,
        settings: LifecycleSettings | None = None,
        on_open: Callable[[IncidentRecord, Finding], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or LifecycleSettings()
        self._publish = publish
        self._on_open = on_open
        self._live: dict[tuple[str, str, str], _Live] = {}
        self._dismissed: dict[tuple[str, str, str], float] = {}  # key -> pts it was found closed
        self.counts = {"opened": 0, "updated": 0, "merged": 0, "ended": 0, "resolved": 0}

    # ---------------------------------------------------------------- findings
    def handle(self, f: Finding) -> str | None:
        """Apply one finding; returns what happened (opened, updated, merged, ended, resolved,
        suppressed) or None when nothing was written."""
        k = (f.cam, f.rule, f.key)
        live = self._live.get(k) or self._adopt(k, f)
        if f.closed:
            if live is None or live.ended_pts is not None:
                return None
            live.ended_pts = f.pts
            return self._write(k, live, f, "update", "ended", ended=True)
        if live is None:
            until = self._dismissed.get(k)
            if until is not None and f.pts < until:
                return "suppressed"
            self._dismissed.pop(k, None)
            return self._open(k, f)
        live.last_seen_pts = f.pts
        if live.ended_pts is not None:
            live.ended_pts = None
            return self._write(k, live, f, "merge", "merged")
        new_tracks = not set(f.track_ids) <= live.track_ids
        worse = priority_of(f.severity) > priority_of(live.severity)
        if new_tracks or worse or f.pts - live.last_write_pts >= self.settings.update_every_s:
            return self._write(k, live, f, "update", "updated")
        return None

    def advance(self, cam: str, pts: float, t_ns: int) -> list[str]:
        """The camera's stream reached pts: resolve auto-resolve incidents whose condition ended
        more than their cool-down ago; forget quiet live entries (they stay active in the store
        and are found again there). Returns the ids resolved."""
        done = []
        for k, live in list(self._live.items()):
            if k[0] != cam:
                continue
            cooldown = self.settings.cooldown(k[1])
            if live.ended_pts is not None and pts - live.ended_pts > cooldown:
                if k[1] in self.settings.auto_resolve:
                    if self._resolve(k, live, t_ns, "the condition ended"):
                        done.append(live.id)
                else:
                    del self._live[k]
            elif live.ended_pts is None and pts - live.last_seen_pts > max(cooldown, 300.0):
                del self._live[k]
        for k, until in list(self._dismissed.items()):
            if k[0] == cam and pts >= until:
                del self._dismissed[k]
        return done

    def raise_system(
        self,
        key: str,
        message: str,
        t_ns: int,
        severity: str = "high",
        details: Mapping[str, Any] | None = None,
        closed: bool = False,
    ) -> str | None:
        """A system incident (disk full, ...), keyed so that it is raised once while it lasts.
        Its stream clock is the wall clock in seconds."""
        ensure_system_camera(self.store)
        return self.handle(
            Finding(
                rule=SYSTEM_TYPE,
                cam=SYSTEM_CAMERA,
                key=key,
                pts=t_ns / 1e9,
                t_ns=t_ns,
                severity=severity,
                closed=closed,
                details={"message": message, **dict(details or {})},
            )
        )

    # ---------------------------------------------------------------- internals
    def _adopt(self, k: tuple[str, str, str], f: Finding) -> _Live | None:
        rec = self.store.incidents.find_active(*k)
        if rec is None:
            return None
        live = _Live(
            id=rec.id,
            opened_ns=int(rec.opened_at.timestamp() * 1e9),
            last_write_pts=rec.last_pts if rec.last_pts is not None else f.pts,
            severity=rec.severity,
            track_ids=set(rec.track_ids),
            last_seen_pts=f.pts,
        )
        self._live[k] = live
        return live

    def _open(self, k: tuple[str, str, str], f: Finding) -> str | None:
        try:
            rec = self.store.incidents.create(
                type=f.rule,
                camera_id=f.cam,
                key=f.key,
                at=utc_from_ns(f.t_ns),
                pts=f.pts,
                severity=f.severity,
                priority=priority_of(f.severity),
                score=f.score,
                track_ids=f.track_ids,
                details=dict(f.details),
                actor=f.rule,
            )
        except DuplicateError:  # another writer opened it meanwhile: join it
            live = self._adopt(k, f)
            return self._write(k, live, f, "merge", "merged") if live else None
        self._live[k] = _Live(
            id=rec.id,
            opened_ns=f.t_ns,
            last_write_pts=f.pts,
            severity=f.severity,
            track_ids=set(f.track_ids),
            last_seen_pts=f.pts,
        )
        self.counts["opened"] += 1
        self._emit(rec, "open", f.t_ns)
        if self._on_open is not None:
            try:
                self._on_open(rec, f)
            except Exception:  # evidence must never stop the incident flow
                log.exception("evidence request for incident %s failed", rec.id)
        return "opened"

    def _write(
        self,
        k: tuple[str, str, str],
        live: _Live,
        f: Finding,
        how: str,
        what: str,
        ended: bool = False,
    ) -> str | None:
        details = dict(f.details)
        if ended:
            details["condition_ended_pts"] = f.pts
        call = self.store.incidents.merge if how == "merge" else self.store.incidents.update
        try:
            rec = call(
                live.id,
                at=utc_from_ns(f.t_ns),
                pts=f.pts,
                track_ids=f.track_ids,
                severity=f.severity
                if priority_of(f.severity) > priority_of(live.severity)
                else None,
                score=f.score,
                details=details,
                actor=f.rule,
            )
        except InvalidTransitionError:
            # An operator closed it meanwhile: forget it; a dismissed key stays quiet for the
            # cool-down, anything else may open a new incident.
            self._live.pop(k, None)
            state = self.store.incidents.get(live.id).state
            if state == "dismissed":
                self._dismissed[k] = f.pts + self.settings.cooldown(f.rule)
                return "suppressed"
            return None if f.closed else self._open(k, f)
        live.last_write_pts = f.pts
        live.severity = rec.severity
        live.track_ids.update(f.track_ids)
        self.counts[what] += 1
        self._emit(rec, "update", f.t_ns, {"change": what})
        return what

    def _resolve(self, k: tuple[str, str, str], live: _Live, t_ns: int, text: str) -> bool:
        self._live.pop(k, None)
        try:
            rec = self.store.incidents.resolve(
                live.id, actor="system", at=utc_from_ns(t_ns), text=text
            )
        except InvalidTransitionError:
            return False  # an operator closed it first
        self.counts["resolved"] += 1
        self._emit(rec, "closed", t_ns)
        return True

    def _emit(
        self, rec: IncidentRecord, state: str, t_ns: int, extra: Mapping[str, Any] | None = None
    ) -> None:
        if self._publish is None:
            return
        details = _scalar_details({**rec.details, **dict(extra or {})})
        details.update(severity=rec.severity, count=rec.count, incident_state=rec.state)
        self._publish(
            IncidentEvent(
                type=rec.type,
                seq=0,
                id=rec.id,
                cam=rec.camera_id,
                state=state,
                t_ns=t_ns,
                track_ids=tuple(rec.track_ids),
                score=rec.score,
                details=details,
            )
        )
