"""Limits: body size (413), too many requests in flight (429, never a queue or a 5xx), live
connections per user (WebSocket close 1013)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from litestar.exceptions import WebSocketDisconnect

from smartcity.api.app import InFlight, OverloadMiddleware
from tests.support.api import make_api


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    for a in make_api(tmp_path, max_body_bytes=1024):
        h = {**a.auth("admin"), "Content-Type": "text/csv"}
        r = a.client.post("/api/v1/roadsafety/crashes/import", params={"source": "big"},
                          content=b"x" * 4096, headers=h)  # fmt: skip
        assert r.status_code == 413
        assert a.store.crashes.count() == 0


def test_overload_answers_429_at_once() -> None:
    release = asyncio.Event()
    started = 0

    async def slow_app(scope, receive, send) -> None:
        nonlocal started
        started += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    shared = InFlight(2)
    mw = OverloadMiddleware(slow_app, in_flight=shared)
    other_route = OverloadMiddleware(slow_app, in_flight=shared)
    statuses: list[int] = []

    async def call(m: OverloadMiddleware | None = None) -> None:
        async def send(msg) -> None:
            if msg["type"] == "http.response.start":
                statuses.append(msg["status"])

        async def receive():
            return {"type": "http.request", "body": b""}

        await (m or mw)({"type": "http", "method": "GET", "path": "/"}, receive, send)

    async def main() -> None:
        tasks = [asyncio.create_task(call()) for _ in range(2)]
        await asyncio.sleep(0.05)
        await call()  # the third while two are in flight: refused at once
        assert statuses == [429]
        await call(other_route)  # also on another route: the limit is the app's
        assert statuses == [429, 429]
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert sorted(statuses) == [200, 200, 429, 429] and started == 2 and shared.count == 0


def test_live_connections_per_user_are_limited(tmp_path: Path) -> None:
    for a in make_api(tmp_path, ws_max_per_user=1):
        h = a.auth("viewer")
        with a.client.websocket_connect("/api/v1/live/ws", headers=h) as first:
            assert first.receive_json()["type"] == "hello"
            with pytest.raises(WebSocketDisconnect) as e:
                with a.client.websocket_connect("/api/v1/live/ws", headers=h) as second:
                    second.receive_json()
            assert e.value.code == 1013
        # another user is not affected by the first one's count
        with a.client.websocket_connect("/api/v1/live/ws", headers=a.auth("operator")) as ws:
            assert ws.receive_json()["type"] == "hello"
