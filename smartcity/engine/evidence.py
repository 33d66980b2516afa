"""The engine's evidence server: snapshots (JPEG) and clips (MP4 from the packet ring).

A ROUTER socket at `ipc://<run dir>/evidence`, served by one thread of the engine process, so the
batch loop never waits for it; the C++ calls it makes (snapshot conversion, clip remux) release
the GIL. A clip whose t1 is not in the packet ring yet waits in a pending list, looked at every
EVIDENCE_POLL_S, until t1 arrives or its wait_s (capped at EVIDENCE_MAX_WAIT_S) ends; then what
the ring holds up to t1 is written (`partial` when the wait ended first). The protocol is in
docs/events.md ("Evidence") and smartcity/bus/evidence.py.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import zmq

from smartcity import _core
from smartcity.bus import defaults as d
from smartcity.bus.evidence import (
    Request,
    RequestError,
    check_request,
    pack_reply,
    request_id_of,
    unpack_request,
)

log = logging.getLogger(__name__)

# States in which a stream's packet ring will not grow any more.
_ENDED = ("stopped", "failed")


@dataclass
class _Pending:
    envelope: list[bytes]
    request: Request
    deadline: float


@dataclass
class EvidenceCounters:
    requests: int = 0
    errors: int = 0
    snapshots: int = 0
    clips: int = 0


class EvidenceServer:
    """EvidenceServer(pipeline, endpoint).start() ... stop(). `pipeline` is a _core.Pipeline
    (anything with snapshot, packet_ring, stream_stats and write_clip)."""

    def __init__(self, pipeline: Any, endpoint: str, *, tmp_dir: str | None = None) -> None:
        self.pipeline = pipeline
        self.endpoint = endpoint
        self.tmp_dir = tmp_dir
        self.counters = EvidenceCounters()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._pending: list[_Pending] = []
        self._thread = threading.Thread(target=self._serve, name="evidence", daemon=True)

    def start(self) -> EvidenceServer:
        """Bind and serve in a thread; raises what binding raised."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def __enter__(self) -> EvidenceServer:
        return self.start()

    def __exit__(self, *args: object) -> None:
        self.stop()

    # ------------------------------------------------------------ the serving thread

    def _serve(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.MAXMSGSIZE, d.EVIDENCE_MAX_MSG_SIZE)
            sock.setsockopt(zmq.RCVHWM, 1000)
            sock.setsockopt(zmq.SNDHWM, 1000)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)  # replies to peers gone are dropped
            sock.bind(self.endpoint)
        except BaseException as e:  # noqa: BLE001 - handed to start()
            self._error = e
            sock.close()
            ctx.term()
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                if sock.poll(int(d.EVIDENCE_POLL_S * 1000), zmq.POLLIN):
                    # Drain what is there, then look at the pending clips.
                    for _ in range(100):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(sock, frames)
                self._serve_pending(sock)
            for p in self._pending:
                self._send(sock, p.envelope, _error(p.request.id, "the engine is stopping"))
        finally:
            sock.close()
            ctx.term()

    def _send(self, sock: zmq.Socket[bytes], envelope: list[bytes], body: dict[str, Any]) -> None:
        payload = pack_reply(body)
        if len(payload) > d.EVIDENCE_MAX_REPLY_BYTES:
            payload = pack_reply(
                _error(
                    body.get("id"),
                    f"reply of {len(payload)} bytes is larger than "
                    f"{d.EVIDENCE_MAX_REPLY_BYTES}: ask for a shorter clip",
                )
            )
        if not body.get("ok"):
            self.counters.errors += 1
        try:
            sock.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the peer is gone or its queue is full: nothing to do
            log.debug("evidence reply dropped: %s", e)

    def _handle(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        self.counters.requests += 1
        if len(frames) < 2 or len(frames) > d.EVIDENCE_MAX_FRAMES:
            if len(frames) >= 2:
                self._send(
                    sock, frames[:1], _error(None, f"more than {d.EVIDENCE_MAX_FRAMES} frames")
                )
            return
        envelope, payload = frames[:-1], frames[-1]
        rid: int | str | None = None
        try:
            obj = unpack_request(payload)
            rid = request_id_of(obj)
            req = check_request(obj)
        except RequestError as e:
            self._send(sock, envelope, _error(rid, str(e)))
            return
        try:
            if req.op == "snapshot":
                self._send(sock, envelope, self._snapshot(req))
                return
            self._clip(sock, envelope, req)
        except _core.UnknownCameraError:
            self._send(sock, envelope, _error(req.id, f"cam: no camera {req.cam!r} in this engine"))
        except Exception as e:  # noqa: BLE001 - every failure becomes an error reply
            self._send(sock, envelope, _error(req.id, f"{req.op} failed: {e}"))

    def _snapshot(self, req: Request) -> dict[str, Any]:
        snap = self.pipeline.snapshot(req.cam)
        if snap is None:
            return _error(req.id, f"cam {req.cam!r} has no frame yet")
        img = snap["image"]
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, d.EVIDENCE_JPEG_QUALITY])
        if not ok:
            return _error(req.id, "JPEG encoding failed")
        self.counters.snapshots += 1
        return {
            "id": req.id,
            "ok": True,
            "cam": req.cam,
            "frame": int(snap["frame"]),
            "pts": float(snap["pts"]),
            "t_ns": int(snap["t_ns"]),
            "w": int(img.shape[1]),
            "h": int(img.shape[0]),
            "jpeg": jpeg.tobytes(),
        }

    def _clip(self, sock: zmq.Socket[bytes], envelope: list[bytes], req: Request) -> None:
        ring = self.pipeline.packet_ring(req.cam)  # UnknownCameraError for an unknown camera
        if ring["packets"] > 0 and ring["last_s"] >= req.t1:
            self._send(sock, envelope, self._write(req, req.t1, partial=False))
            return
        if req.wait_s <= 0 or self._ended(req.cam):
            self._send(sock, envelope, self._write(req, req.t1, partial=True))
            return
        if len(self._pending) >= d.EVIDENCE_MAX_PENDING:
            self._send(
                sock,
                envelope,
                _error(req.id, f"{d.EVIDENCE_MAX_PENDING} clips are waiting already; try later"),
            )
            return
        self._pending.append(_Pending(envelope, req, time.monotonic() + req.wait_s))

    def _serve_pending(self, sock: zmq.Socket[bytes]) -> None:
        if not self._pending:
            return
        now = time.monotonic()
        keep: list[_Pending] = []
        for p in self._pending:
            req = p.request
            try:
                ring = self.pipeline.packet_ring(req.cam)
                if ring["packets"] > 0 and ring["last_s"] >= req.t1:
                    self._send(sock, p.envelope, self._write(req, req.t1, partial=False))
                elif now >= p.deadline or self._ended(req.cam):
                    self._send(sock, p.envelope, self._write(req, req.t1, partial=True))
                else:
                    keep.append(p)
            except _core.UnknownCameraError:
                self._send(sock, p.envelope, _error(req.id, f"cam: {req.cam!r} was removed"))
            except Exception as e:  # noqa: BLE001
                self._send(sock, p.envelope, _error(req.id, f"clip failed: {e}"))
        self._pending = keep

    def _ended(self, cam: str) -> bool:
        return bool(self.pipeline.stream_stats(cam)["state"] in _ENDED)

    def _write(self, req: Request, t1: float, *, partial: bool) -> dict[str, Any]:
        """The clip reply for [req.t0, t1]; partial: t1 may be past the ring's newest packet,
        and is cut there (the reply says so when it was)."""
        ring = self.pipeline.packet_ring(req.cam)
        cut = partial and ring["packets"] > 0 and req.t0 <= ring["last_s"] < t1
        if cut:
            t1 = ring["last_s"]
        fd, path = tempfile.mkstemp(prefix="clip-", suffix=".mp4", dir=self.tmp_dir)
        os.close(fd)
        try:
            try:
                info = self.pipeline.write_clip(req.cam, req.t0, t1, path)
            except (_core.ClipRangeError, ValueError) as e:
                return _error(req.id, f"clip: {e}")
            size = os.path.getsize(path)
            if size > d.EVIDENCE_MAX_REPLY_BYTES - 4096:
                return _error(
                    req.id,
                    f"clip of {size} bytes is larger than {d.EVIDENCE_MAX_REPLY_BYTES}: "
                    "ask for a shorter range",
                )
            mp4 = Path(path).read_bytes()
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.counters.clips += 1
        return {
            "id": req.id,
            "ok": True,
            "cam": req.cam,
            "t0": float(info["first_s"]),
            "t1": float(info["last_s"]),
            "packets": int(info["packets"]),
            "keyframe": bool(info["keyframe_start"]),
            "duration_s": float(info["duration_s"]),
            "partial": bool(cut),
            "mp4": mp4,
        }


def _error(rid: int | str | None, message: str) -> dict[str, Any]:
    return {"id": rid, "ok": False, "error": message}
