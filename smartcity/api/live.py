"""The API's link to the bus: incidents and camera health into the hub and the metrics, the
latest tracks per camera for the annotated live picture, and the evidence client for snapshots.

The bridge runs one thread with its own SUB socket (ZeroMQ sockets are not shared between
threads); the hub hands its events to the event loop.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Any

from smartcity.api.hub import BUS, Hub, LiveEvent
from smartcity.api.metrics import Metrics
from smartcity.bus import HealthEvent, IncidentEvent, TracksEvent
from smartcity.bus.evidence import EvidenceRouter, EvidenceSource, Snapshot
from smartcity.bus.sockets import subscriber_endpoint
from smartcity.bus.subscriber import Subscriber

log = logging.getLogger("smartcity.api.live")

#: tracks messages kept per camera to match a snapshot's frame
TRACKS_KEPT = 64
_STATE = {"open": "incident.opened", "update": "incident.updated", "closed": "incident.closed"}


class BusBridge:
    def __init__(self, run_dir: str | Path, hub: Hub, metrics: Metrics, store: Any = None) -> None:
        self.run_dir = Path(run_dir)
        self.hub = hub
        self.metrics = metrics
        self.store = store
        self.tracks: dict[str, collections.deque[TracksEvent]] = {}
        self._state: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._gaps: dict[str, int] = {}
        self.received = 0
        self.last_error = ""
        self._evidence: EvidenceSource | None = None
        self._evidence_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="api-bus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._evidence_lock:
            if self._evidence is not None:
                self._evidence.close()
                self._evidence = None

    def status(self) -> dict[str, Any]:
        alive = self._thread is not None and self._thread.is_alive()
        return {
            "state": "running" if alive else "stopped",
            "received": self.received,
            "gaps": sum(self._gaps.values()),
            "last_error": self.last_error,
        }

    def _run(self) -> None:
        try:
            sub = Subscriber(subscriber_endpoint(self.run_dir), ["incident.", "health.", "tracks."])
        except Exception as e:  # noqa: BLE001 - reported in /system/health
            self.last_error = f"{type(e).__name__}: {e}"
            log.error("bus: cannot subscribe in %s: %s", self.run_dir, e)
            return
        with sub:
            while not self._stop.is_set():
                ev = sub.recv(timeout_s=0.2)
                if ev is None:
                    continue
                self.received += 1
                try:
                    self._handle(ev)
                except Exception:  # noqa: BLE001 - one bad event must not stop the bridge
                    log.exception("bus: event %s not handled", type(ev).__name__)
                self._count_gaps(sub)

    def _count_gaps(self, sub: Subscriber) -> None:
        for topic, st in sub.stats.items():
            before = self._gaps.get(topic, 0)
            if st.gaps > before:
                self.metrics.add_gaps(topic, st.gaps - before)
                self._gaps[topic] = st.gaps

    def _handle(self, ev: Any) -> None:
        if isinstance(ev, TracksEvent):
            with self._lock:
                q = self.tracks.get(ev.cam)
                if q is None:
                    q = self.tracks[ev.cam] = collections.deque(maxlen=TRACKS_KEPT)
                q.append(ev)
        elif isinstance(ev, HealthEvent):
            import msgspec

            fields = msgspec.structs.asdict(ev)
            fields["_at"] = time.time()
            self.metrics.observe_health(ev.cam, fields)
            health = {k: v for k, v in fields.items() if not k.startswith("_")}
            self.hub.publish(LiveEvent("camera.health", health, camera=ev.cam, origin=BUS))
            if self._state.get(ev.cam) != ev.state:
                prev = self._state.get(ev.cam)
                self._state[ev.cam] = ev.state
                self.hub.publish(
                    LiveEvent(
                        "camera.state",
                        {"state": ev.state, "previous": prev, "last_error": ev.last_error},
                        camera=ev.cam,
                        origin=BUS,
                    )
                )
        elif isinstance(ev, IncidentEvent):
            kind = _STATE.get(ev.state, "incident.updated")
            if kind == "incident.opened":
                self.metrics.add_incident(ev.type)
            kind = f"{kind}.{ev.type}"
            payload: dict[str, Any] = {
                "id": ev.id,
                "type": ev.type,
                "camera_id": ev.cam,
                "state": ev.state,
                "track_ids": list(ev.track_ids),
                "score": ev.score,
                "details": dict(ev.details),
            }
            severity = None
            if self.store is not None:
                try:
                    rec = self.store.incidents.get(ev.id)
                    severity = rec.severity
                    payload.update(
                        state=rec.state,
                        severity=rec.severity,
                        opened_at=rec.opened_at.isoformat(),
                        count=rec.count,
                    )
                except LookupError:
                    pass
            self.hub.publish(LiveEvent(kind, payload, camera=ev.cam, severity=severity, origin=BUS))

    # ------------------------------------------------------------------ live view
    def latest_tracks(self, cam: str, pts: float | None) -> TracksEvent | None:
        with self._lock:
            q = list(self.tracks.get(cam, ()))
        if not q:
            return None
        if pts is None:
            return q[-1]
        return min(q, key=lambda t: abs(float(t.pts) - pts))

    def snapshot(self, cam: str, timeout_s: float) -> Snapshot:
        """The engine's latest analysed frame of `cam` (EvidenceError when it cannot)."""
        with self._evidence_lock:
            if self._evidence is None:
                self._evidence = EvidenceRouter(self.run_dir)
            return self._evidence.snapshot(cam, timeout_s=timeout_s)


def bus_bridge(run_dir: str | Path, hub: Hub, metrics: Metrics, store: Any = None) -> BusBridge:
    return BusBridge(run_dir, hub, metrics, store)
