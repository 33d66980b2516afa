"""The Litestar application: `create_app(settings)` wires the store, authentication, the access
policy, limits, the live event hub, webhooks and every controller under /api/v1."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.exc import OperationalError

from smartcity.api.hub import BUS, LOCAL, PEER, Hub, LiveEvent
from smartcity.api.policy import PUBLIC, RateLimiter, authorize
from smartcity.api.security import SESSION_COOKIE, Authenticator, AuthMiddleware
from smartcity.api.settings import ApiSettings
from smartcity.api.shared import (
    AUTH_GENERATION_FILE,
    LEADER_FILE,
    LIMITS_FILE,
    PEERS_DIR,
    Leader,
    PeerLink,
    SharedCounter,
    SharedRateLimiter,
)
from smartcity.store import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    Store,
    StoreError,
)

log = logging.getLogger("smartcity.api")

#: Live event types never sent to webhooks (one per camera per second).
WEBHOOK_SKIPPED = frozenset({"camera.health"})
API_TITLE = "smartcity command-center API"
#: How often a process that does not run the webhook dispatcher tries to take the leader lock.
LEADER_POLL_S = 1.0
DOCS_PATH = "/api/docs"


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail}, status_code=status, headers=headers or {}
    )


def _store_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, NotFoundError):
        return _error(404, str(exc))
    if isinstance(exc, ConflictError):
        return _error(409, str(exc))
    if isinstance(exc, InvalidInputError):
        return _error(400, str(exc))
    log.error("store error on %s %s: %s", request.method, request.url.path, exc)
    return _error(503, "the database cannot serve this request now", {"Retry-After": "5"})


def _busy(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A database busy past its time-out: the client may retry (never a 500)."""
    log.warning("database busy on %s %s: %s", request.method, request.url.path, exc)
    return _error(429, "the appliance is busy; retry shortly", {"Retry-After": "2"})


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, HTTPException):
        resp = _error(exc.status_code, exc.detail, dict(exc.headers or {}))
        if exc.extra:
            resp.content["extra"] = exc.extra
        return resp
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, "internal error (logged)")


class InFlight:
    """The count of HTTP requests being served, shared by every route's middleware stack
    (Litestar builds one stack per route)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


class OverloadMiddleware:
    """At most `limit` HTTP requests served at once over the whole app; the rest get 429 at
    once instead of queueing (a command center's console retries; a stuck queue helps no one)."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.shared = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        shared = self.shared
        if shared.count >= shared.limit:
            start: Any = {
                "type": "http.response.start",
                "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
            }
            body: Any = {
                "type": "http.response.body",
                "body": b'{"status_code":429,"detail":"too many requests in flight"}',
            }
            await send(start)
            await send(body)
            return
        shared.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            shared.count -= 1


class ConfigNotifier:
    """Publishes `config.changed` (cams, reason) on the bus after a camera change, so that the
    engine and the incidents service reload. Thread-safe (one lock around the socket)."""

    def __init__(self, run_dir: str) -> None:
        import threading

        from smartcity.bus import Publisher
        from smartcity.bus.sockets import publisher_endpoint

        self._pub = Publisher(publisher_endpoint(run_dir))
        self._lock = threading.Lock()

    def __call__(self, cams: list[str], reason: str) -> None:
        import time

        from smartcity.bus import ConfigChangedEvent

        with self._lock:
            seq = self._pub.next_seq("config.changed")
            self._pub.publish(
                ConfigChangedEvent(seq=seq, t_ns=time.time_ns(), cams=tuple(cams), reason=reason)
            )

    def close(self) -> None:
        with self._lock:
            self._pub.close()


def create_app(
    settings: ApiSettings | None = None,
    *,
    store: Store | None = None,
    hub: Hub | None = None,
    start_bus: bool = True,
    shared_dir: str | os.PathLike[str] | None = None,
) -> Litestar:
    """The API. `store` defaults to Store.open(settings.db_url, data_dir=settings.data_dir);
    with `start_bus` and settings.run_dir the hub subscribes to the bus (incidents, health).

    `shared_dir`: where the API processes serving one store on this machine coordinate
    (`smartcity api` gives the data directory; smartcity/api/shared.py): only the process
    holding the leader lock there runs the webhook dispatcher and queues the deliveries of bus
    events; the login and API key rate limits and the end of cached credentials hold across the
    processes. None: this process alone (it leads; limits in its memory)."""
    from smartcity.api.domain import route_handlers
    from smartcity.api.domain.incidents.pages import IncidentPages
    from smartcity.api.metrics import Metrics, MetricsMiddleware
    from smartcity.api.resources import CpuUse
    from smartcity.api.webhooks import WebhookDispatcher

    settings = (settings or ApiSettings()).checked()
    own_store = store is None
    if store is None:
        store = Store.open(settings.db_url, data_dir=settings.data_dir)
    hub = hub or Hub(queue_size=settings.ws_queue)
    metrics = Metrics()
    dispatcher = WebhookDispatcher(
        store,
        timeout_s=settings.webhook_timeout_s,
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s,
    )

    leader: Leader | None = None
    peers_dir: Path | None = None
    generation: SharedCounter | None = None
    key_limiter: RateLimiter | SharedRateLimiter
    login_limiter: RateLimiter | SharedRateLimiter
    if shared_dir is not None:
        shared = Path(shared_dir)
        shared.mkdir(parents=True, exist_ok=True)
        leader = Leader(shared / LEADER_FILE)
        peers_dir = shared / PEERS_DIR
        generation = SharedCounter(shared / AUTH_GENERATION_FILE)
        key_limiter = login_limiter = SharedRateLimiter(shared / LIMITS_FILE)
    else:
        key_limiter, login_limiter = RateLimiter(), RateLimiter()

    def webhooks_status() -> dict[str, Any]:
        if leader is None or leader.held:
            where: dict[str, Any] = {"state": "running", "dispatcher_pid": os.getpid()}
        else:  # another process leads, or is about to (it polls the lock every second)
            pid = leader.holder()
            where = {"state": "running" if pid else "starting", "dispatcher_pid": pid}
        return {**where, "deliveries": store.webhooks.counts()}

    state = State(
        {
            "settings": settings,
            "store": store,
            "authenticator": Authenticator(store, generation),
            "incident_pages": IncidentPages(store),  # GET /incidents: JSON from the rows
            "key_limiter": key_limiter,
            "login_limiter": login_limiter,
            "hub": hub,
            "metrics": metrics,
            "webhooks": dispatcher,
            "webhooks_status": webhooks_status,
            "ws_counts": {},
            "bus_bridge": None,
            "config_notifier": None,
            "cpu_use": CpuUse(),  # GET /system/resources: CPU use since the previous request
        }
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from smartcity.api.live import bus_bridge

        hub.bind_loop()
        loop = asyncio.get_running_loop()

        def to_webhooks(ev: LiveEvent) -> None:
            if ev.type in WEBHOOK_SKIPPED:
                return
            if ev.origin == BUS and leader is not None and not leader.held:
                return  # every API process hears the bus: the leader alone queues deliveries
            if ev.origin == PEER:
                return  # the process that made it queued its deliveries
            loop.run_in_executor(
                None,
                functools.partial(
                    dispatcher.submit, ev.type, ev.as_dict(), camera=ev.camera, event_id=ev.id
                ),
            )

        async def lead() -> None:
            """The webhook dispatcher runs in one process: the one holding the leader lock."""
            if leader is not None:
                while not leader.try_take():
                    await asyncio.sleep(LEADER_POLL_S)
                log.info("this API process (pid %d) runs the webhook dispatcher", os.getpid())
            await dispatcher.run()

        hub.add_listener(to_webhooks)
        peers = None
        if peers_dir is not None and settings.workers > 1:
            try:
                peers = PeerLink(peers_dir)
            except OSError as e:  # e.g. a socket path over the 107 bytes AF_UNIX allows
                log.warning("operator actions stay in this process's live feed: %s: %s",
                            peers_dir, e)  # fmt: skip
        if peers is not None:
            link = peers

            def to_peers(ev: LiveEvent) -> None:
                if ev.origin == LOCAL:  # an operator's action here: the other processes' feeds
                    try:
                        link.send(ev.to_wire())
                    except ValueError:
                        log.warning("live event %s too large for the other API processes", ev.type)

            def from_peers() -> None:
                for data in link.receive():
                    try:
                        hub.publish(LiveEvent.from_wire(data))
                    except ValueError as e:
                        log.warning("%s", e)

            hub.add_listener(to_peers)
            loop.add_reader(link.fileno(), from_peers)
        task = asyncio.create_task(lead(), name="webhooks")
        bridge = notifier = None
        if start_bus and settings.run_dir:
            bridge = bus_bridge(settings.run_dir, hub, metrics, store)
            bridge.start()
            notifier = ConfigNotifier(settings.run_dir)
            app.state.bus_bridge = bridge
            app.state.config_notifier = notifier
        try:
            yield
        finally:
            if bridge is not None:
                bridge.stop()
            if notifier is not None:
                notifier.close()
            await dispatcher.stop()
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001, S110 - cancelled on shutdown
                pass
            if leader is not None:
                leader.release()
            if peers is not None:
                loop.remove_reader(peers.fileno())
                peers.close()
            if generation is not None:
                generation.close()
            if isinstance(key_limiter, SharedRateLimiter):  # login_limiter: the same one
                key_limiter.close()
            if own_store:
                store.close()

    openapi = OpenAPIConfig(
        title=API_TITLE,
        version="1",
        path=DOCS_PATH,
        render_plugins=[JsonRenderPlugin(path="/openapi.json"), YamlRenderPlugin()],
        openapi_router=Router(
            path=DOCS_PATH, route_handlers=[], opt={"perm": PUBLIC}, include_in_schema=False
        ),
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
                "cookie": SecurityScheme(
                    type="apiKey", name=SESSION_COOKIE, security_scheme_in="cookie"
                ),
            }
        ),
        security=[{"bearer": []}, {"cookie": []}],
    )

    app = Litestar(
        route_handlers=route_handlers(),
        guards=[authorize],
        middleware=[
            DefineMiddleware(OverloadMiddleware, in_flight=InFlight(settings.max_in_flight)),
            DefineMiddleware(MetricsMiddleware, metrics=metrics),
            DefineMiddleware(AuthMiddleware),
        ],
        exception_handlers={
            StoreError: _store_error,
            OperationalError: _busy,
            HTTPException: _unexpected,
            Exception: _unexpected,
        },
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        state=state,
    )
    return app
