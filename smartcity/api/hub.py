"""The live event hub: one place where incidents, their changes and camera health meet, fanned
out to WebSocket and SSE connections (each with its own filter and bounded queue) and to
listeners (the webhook dispatcher).

Events come from the bus thread (incident.*, health.*) and from the API's own request handlers
(incident actions); `publish` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("smartcity.api.hub")

#: Event types (docs/api.md, "Live events"); incident events end in the incident's type, e.g.
#: "incident.opened.wrong_way", so that "incident.*.wrong_way" or "incident.opened.*" select.
EVENT_TYPES = (
    "incident.opened.<type>",  # a new incident (from the incidents service, after its commit)
    "incident.updated.<type>",  # the incident fired again (merged) or its details changed
    "incident.closed.<type>",  # resolved by the service (the condition ended)
    "incident.changed.<type>",  # an operator acted (acknowledge, assign, resolve, dismiss ...)
    "camera.state",  # a camera's stream state changed (online, reconnecting, offline ...)
    "camera.health",  # every health message (about one per second per camera)
)


#: LiveEvent.origin: made by this process (an operator's action), heard on the bus (every API
#: process hears those; only the leader queues their webhook deliveries) or from another API
#: process (its operator's action, shared through smartcity.api.shared.PeerLink; that process
#: queued its webhook deliveries).
LOCAL, BUS, PEER = "local", "bus", "peer"


@dataclass(frozen=True)
class LiveEvent:
    type: str
    payload: dict[str, Any]
    camera: str | None = None
    severity: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    origin: str = LOCAL

    def to_wire(self) -> bytes:
        """The event for another API process (`from_wire`)."""
        return json.dumps(
            {"type": self.type, "payload": self.payload, "camera": self.camera,
             "severity": self.severity, "id": self.id, "at": self.at},
            separators=(",", ":"), default=str,
        ).encode()  # fmt: skip

    @staticmethod
    def from_wire(data: bytes) -> LiveEvent:
        """A peer's event (origin PEER); ValueError naming what is wrong."""
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"peer event: not JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError("peer event: not an object")
        for k in ("type", "id", "at"):
            if not isinstance(d.get(k), str) or not d[k]:
                raise ValueError(f"peer event: {k} must be a non-empty string")
        for k in ("camera", "severity"):
            if d.get(k) is not None and not isinstance(d[k], str):
                raise ValueError(f"peer event: {k} must be a string or null")
        if not isinstance(d.get("payload"), dict):
            raise ValueError("peer event: payload must be an object")
        return LiveEvent(d["type"], d["payload"], d.get("camera"), d.get("severity"),
                         id=d["id"], at=d["at"], origin=PEER)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "at": self.at,
            "camera": self.camera,
            "data": self.payload,
        }


@dataclass
class Filter:
    """What one connection wants. Empty tuples mean everything (within `cameras_allowed`)."""

    types: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    cameras_allowed: frozenset[str] | None = None  # the caller's camera scope

    def wants(self, ev: LiveEvent) -> bool:
        if ev.camera is not None and self.cameras_allowed is not None:
            if ev.camera not in self.cameras_allowed:
                return False
        if self.types and not any(fnmatch.fnmatchcase(ev.type, p) for p in self.types):
            return False
        if self.cameras and ev.camera not in self.cameras:
            return False
        if self.severities and ev.severity is not None and ev.severity not in self.severities:
            return False
        return True


class Subscription:
    def __init__(self, hub: Hub, flt: Filter, size: int) -> None:
        self.hub = hub
        self.filter = flt
        self.queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(maxsize=size)
        self.dropped = False  # the client could not keep up: the connection is closed

    def offer(self, ev: LiveEvent) -> None:
        if self.dropped or not self.filter.wants(ev):
            return
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped = True
            self.queue = asyncio.Queue(maxsize=1)
            self.queue.put_nowait(None)

    async def get(self) -> LiveEvent | None:
        return await self.queue.get()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[LiveEvent], Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.published = 0

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()

    def add_listener(self, fn: Callable[[LiveEvent], Any]) -> None:
        """fn(event) is called on the event loop thread for every event; it must not block."""
        self._listeners.append(fn)

    def subscribe(self, flt: Filter) -> Subscription:
        sub = Subscription(self, flt, self.queue_size)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def connections(self) -> int:
        return len(self._subs)

    def publish(self, ev: LiveEvent) -> None:
        """Thread-safe; dropped when the hub has no loop yet (the API is not started)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(ev)
        else:
            try:
                loop.call_soon_threadsafe(self._deliver, ev)
            except RuntimeError:  # loop closed while we were looking
                pass

    def _deliver(self, ev: LiveEvent) -> None:
        self.published += 1
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.offer(ev)
        for fn in self._listeners:
            try:
                fn(ev)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("hub listener failed on %s", ev.type)
