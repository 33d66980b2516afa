"""Live: the latest annotated picture per camera (JPEG), an MJPEG stream of it for the console,
and the event feed over WebSocket (with server-sent events as the fallback).

Feed filters (query parameters of both, and a WebSocket client may send
`{"types": [...], "cameras": [...], "severities": [...]}` at any time to change them):
types as patterns ("incident.*", "camera.state"), camera ids, severities. A caller restricted
to some cameras never sees events of the others. A client that cannot keep up (its queue of
`ws_queue` events is full) is disconnected (WebSocket close 1013; SSE ends) rather than slowing
the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from litestar import Controller, Response, WebSocket, get, websocket
from litestar.exceptions import NotFoundException, WebSocketDisconnect
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, Stream

from smartcity.api.domain.common import (
    AnyRequest,
    principal,
    settings,
    split_list,
    store,
    visible_camera,
)
from smartcity.api.hub import Filter, Hub
from smartcity.api.security import Principal
from smartcity.bus.evidence import EvidenceError
from smartcity.incidents.evidence import annotate_snapshot

BOUNDARY = "smartcity-frame"


def _picture(request: AnyRequest, camera_id: str) -> bytes:
    """The camera's latest analysed frame with its tracks drawn (sync; run in a thread)."""
    visible_camera(request, camera_id)
    store(request).cameras.get(camera_id)
    bridge = request.app.state.get("bus_bridge")
    if bridge is None:
        raise NotFoundException("no live picture: the API is not connected to the engine")
    try:
        snap = bridge.snapshot(camera_id, settings(request).snapshot_timeout_s)
    except (EvidenceError, TimeoutError, OSError) as e:
        raise NotFoundException(f"no live picture of {camera_id!r} now: {e}") from None
    tracks = bridge.latest_tracks(camera_id, snap.pts)
    if tracks is None or len(tracks) == 0:
        return snap.jpeg
    return annotate_snapshot(
        snap.jpeg, tracks.xyxy, list(tracks.class_id), list(tracks.track_id), quality=80
    )


def _filter(p: Principal, types: str | None, cameras: str | None, severities: str | None) -> Filter:
    return Filter(
        types=tuple(split_list(types) or ()),
        cameras=tuple(split_list(cameras) or ()),
        severities=tuple(split_list(severities) or ()),
        cameras_allowed=p.cameras,
    )


class LiveController(Controller):
    path = "/api/v1/live"
    tags = ["live"]

    @get(
        "/cameras/{camera_id:str}/snapshot.jpg",
        opt={"perm": "live.read"},
        sync_to_thread=True,
        media_type="image/jpeg",
        summary="The camera's latest analysed frame, boxes drawn",
    )
    def snapshot(self, request: AnyRequest, camera_id: FromPath[str]) -> Response[bytes]:
        return Response(
            _picture(request, camera_id),
            media_type="image/jpeg",
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/cameras/{camera_id:str}/mjpeg",
        opt={"perm": "live.read"},
        summary="multipart/x-mixed-replace JPEG stream at mjpeg_fps",
    )
    async def mjpeg(self, request: AnyRequest, camera_id: FromPath[str]) -> Stream:
        first = await anyio.to_thread.run_sync(_picture, request, camera_id)
        period = 1.0 / settings(request).mjpeg_fps

        async def frames() -> AsyncIterator[bytes]:
            jpeg = first
            while True:
                yield (
                    (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode()
                    + jpeg
                    + b"\r\n"
                )
                await asyncio.sleep(period)  # a client that left ends the stream (send fails)
                try:
                    jpeg = await anyio.to_thread.run_sync(_picture, request, camera_id)
                except NotFoundException:
                    return

        return Stream(
            frames(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/events",
        opt={"perm": "live.read"},
        summary="Server-sent events: the live feed for clients without WebSocket",
    )
    async def sse(
        self,
        request: AnyRequest,
        types: FromQuery[str | None] = None,
        cameras: FromQuery[str | None] = None,
        severities: FromQuery[str | None] = None,
    ) -> ServerSentEvent:
        p = principal(request)
        hub: Hub = request.app.state.hub
        sub = hub.subscribe(_filter(p, types, cameras, severities))

        async def events() -> AsyncIterator[dict[str, Any]]:
            try:
                yield {"event": "hello", "data": json.dumps({"user": p.username})}
                while True:
                    try:
                        ev = await asyncio.wait_for(sub.get(), timeout=15.0)
                    except TimeoutError:
                        yield {"comment": "keep-alive"}
                        continue
                    if ev is None:  # too slow: the client reconnects
                        return
                    yield {"event": ev.type, "id": ev.id, "data": json.dumps(ev.as_dict())}
            finally:
                sub.close()

        return ServerSentEvent(events())


@websocket("/api/v1/live/ws", opt={"perm": "live.read"}, tags=["live"])
async def live_ws(socket: WebSocket[Any, Any, Any]) -> None:
    """The live feed. Query parameters types, cameras, severities as for /live/events."""
    p = principal(socket)
    cfg = settings(socket)
    hub: Hub = socket.app.state.hub
    counts: dict[int, int] = socket.app.state.ws_counts
    if hub.connections >= cfg.ws_max_connections or counts.get(p.user_id, 0) >= cfg.ws_max_per_user:
        await socket.close(code=1013, reason="too many live connections")
        return
    q = socket.query_params
    sub = hub.subscribe(_filter(p, q.get("types"), q.get("cameras"), q.get("severities")))
    counts[p.user_id] = counts.get(p.user_id, 0) + 1
    await socket.accept()

    async def reader() -> None:
        while True:
            raw = await socket.receive_data(mode="text")
            if len(raw) > cfg.ws_max_message_bytes:
                await socket.close(code=1009, reason="message too big")
                return
            try:
                msg = json.loads(raw)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
                new = _filter(
                    p,
                    ",".join(msg.get("types") or []),
                    ",".join(msg.get("cameras") or []),
                    ",".join(msg.get("severities") or []),
                )
            except (ValueError, TypeError) as e:
                await socket.send_json({"type": "error", "detail": f"bad filter: {e}"})
                continue
            sub.filter = new
            await socket.send_json(
                {
                    "type": "filter",
                    "data": {
                        "types": list(new.types),
                        "cameras": list(new.cameras),
                        "severities": list(new.severities),
                    },
                }
            )

    async def writer() -> None:
        await socket.send_json({"type": "hello", "data": {"user": p.username}})
        while True:
            ev = await sub.get()
            if ev is None:
                await socket.close(code=1013, reason="client too slow")
                return
            await socket.send_json(ev.as_dict())

    tasks = [asyncio.create_task(reader()), asyncio.create_task(writer())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                pass
        sub.close()
        counts[p.user_id] = max(0, counts.get(p.user_id, 1) - 1)
