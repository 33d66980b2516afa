"""The evidence protocol (docs/events.md, "Evidence"): snapshots and clips from the engine.

The engine's evidence server (smartcity/engine/evidence.py) binds a ZeroMQ ROUTER at
`ipc://<run dir>/evidence`; clients talk to it with a DEALER (EvidenceClient). One msgpack map a
request, one a reply; request ids tie them together. Requests are untrusted input: the helpers
here check every field and name the bad one.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

from smartcity import checks
from smartcity.bus import defaults as d
from smartcity.bus.sockets import Closing

OPS = ("snapshot", "clip")
_UINT64_MAX = (1 << 64) - 1


class EvidenceError(RuntimeError):
    """The server refused a request (its message), or no usable reply came in time."""


class RequestError(ValueError):
    """A malformed request; `field` names the offending field (server side)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Request:
    """A checked request. `wait_s` is already capped at EVIDENCE_MAX_WAIT_S."""

    id: int | str
    op: str
    cam: str
    t0: float = 0.0
    t1: float = 0.0
    wait_s: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """The latest analysed frame of a camera as JPEG."""

    cam: str
    frame: int  # frame number in the stream
    pts: float  # stream time, seconds (as tracks messages' pts)
    t_ns: int  # capture wall-clock time, ns since the Unix epoch
    w: int
    h: int
    jpeg: bytes


@dataclass(frozen=True)
class Clip:
    """An MP4 remuxed from the camera's packet ring (no re-encoding)."""

    cam: str
    t0: float  # stream time of the first packet (the keyframe at or before the t0 asked for)
    t1: float  # stream time of the last frame
    packets: int
    keyframe: bool  # the clip starts with a keyframe
    duration_s: float
    partial: bool  # the wait ended before the t1 asked for reached the ring: t1 is earlier
    mp4: bytes


# ---------------------------------------------------------------- requests (server side)


def _unpack(payload: bytes, *, max_bin: int, max_str: int, max_array: int, max_map: int) -> Any:
    return msgpack.unpackb(
        payload,
        raw=False,
        strict_map_key=True,
        use_list=True,
        max_str_len=max_str,
        max_bin_len=max_bin,
        max_ext_len=0,
        max_array_len=max_array,
        max_map_len=max_map,
    )


def request_id_of(obj: Any) -> int | str | None:
    """The id of a request that may be malformed, for the error reply (None when unusable)."""
    rid = obj.get("id") if isinstance(obj, dict) else None
    if type(rid) is int and 0 <= rid <= _UINT64_MAX:
        return rid
    if type(rid) is str and len(rid.encode()) <= d.EVIDENCE_MAX_ID_BYTES:
        return rid
    return None


def unpack_request(payload: bytes) -> Any:
    """The msgpack object of an untrusted request, within the request limits."""
    if len(payload) > d.EVIDENCE_MAX_REQUEST_BYTES:
        raise RequestError(
            "payload", f"{len(payload)} bytes, more than {d.EVIDENCE_MAX_REQUEST_BYTES}"
        )
    try:
        return _unpack(
            payload,
            max_bin=0,
            max_str=d.EVIDENCE_MAX_STR_LEN,
            max_array=d.EVIDENCE_MAX_ARRAY_LEN,
            max_map=d.EVIDENCE_MAX_MAP_LEN,
        )
    except (ValueError, msgpack.UnpackException, RecursionError) as e:
        raise RequestError(
            "payload", f"not a valid msgpack request ({type(e).__name__}: {e})"
        ) from None


def _number(m: Mapping[str, Any], key: str, required: bool = True) -> float | None:
    if key not in m:
        if required:
            raise RequestError(key, "missing")
        return None
    v = m[key]
    try:
        return checks.number(v)
    except checks.NumberError as e:
        # The protocol's wording (docs/events.md), as the bus codec words its errors.
        if e.kind == "type":
            raise RequestError(key, f"expected a number, got {type(v).__name__}") from None
        raise RequestError(key, "not finite" if e.kind == "finite" else str(e)) from None


def check_request(obj: Any) -> Request:
    """A Request from an unpacked message; RequestError naming the first bad field."""
    if not isinstance(obj, dict):
        raise RequestError("payload", f"expected a map, got {type(obj).__name__}")
    v = obj.get("v")
    if "v" not in obj:
        raise RequestError("v", "missing")
    if type(v) is not int:
        raise RequestError("v", f"expected an integer, got {type(v).__name__}")
    if v != d.EVIDENCE_VERSION:
        raise RequestError("v", f"version {v} is not served (this server: {d.EVIDENCE_VERSION})")
    if "id" not in obj:
        raise RequestError("id", "missing")
    rid = request_id_of(obj)
    if rid is None:
        raise RequestError(
            "id",
            f"expected an unsigned integer or a string of at most {d.EVIDENCE_MAX_ID_BYTES} bytes",
        )
    op = obj.get("op")
    if "op" not in obj:
        raise RequestError("op", "missing")
    if type(op) is not str:
        raise RequestError("op", f"expected a string, got {type(op).__name__}")
    if op not in OPS:
        raise RequestError("op", f"unknown op {op[:32]!r} (known: {', '.join(OPS)})")
    cam = obj.get("cam")
    if "cam" not in obj:
        raise RequestError("cam", "missing")
    if type(cam) is not str:
        raise RequestError("cam", f"expected a string, got {type(cam).__name__}")
    if not 0 < len(cam.encode()) <= d.MAX_CAMERA_BYTES:
        raise RequestError("cam", f"must be 1 to {d.MAX_CAMERA_BYTES} bytes")
    if op == "snapshot":
        return Request(id=rid, op=op, cam=cam)
    t0 = _number(obj, "t0")
    t1 = _number(obj, "t1")
    assert t0 is not None and t1 is not None
    if t1 < t0:
        raise RequestError("t1", f"{t1:.3f} is before t0 {t0:.3f}")
    if t1 - t0 > d.EVIDENCE_MAX_CLIP_S:
        raise RequestError("t1", f"clip longer than {d.EVIDENCE_MAX_CLIP_S:g} s")
    wait = _number(obj, "wait_s", required=False)
    if wait is not None and wait < 0:
        raise RequestError("wait_s", "must be >= 0")
    wait_s = min(wait or 0.0, d.EVIDENCE_MAX_WAIT_S)
    return Request(id=rid, op=op, cam=cam, t0=t0, t1=t1, wait_s=wait_s)


def pack_reply(body: dict[str, Any]) -> bytes:
    """msgpack bytes of a reply (bytes values as msgpack bin)."""
    return msgpack.packb({"v": d.EVIDENCE_VERSION, **body}, use_bin_type=True)


# ---------------------------------------------------------------- client


def evidence_endpoint(run_dir: str | os.PathLike[str] | None = None) -> str:
    """ipc://<run dir>/evidence (the default run dir when None)."""
    p = Path(run_dir) if run_dir is not None else d.default_run_dir()
    path = str(p / d.EVIDENCE_NAME)
    if len(path.encode()) > d.MAX_IPC_PATH:
        raise ValueError(f"ipc path {path} is longer than {d.MAX_IPC_PATH} bytes")
    return "ipc://" + path


#: `smartcity engine --evidence-name NAME`: ipc://<run dir>/evidence.NAME, for a second engine
#: in the same run dir (the first binds ipc://<run dir>/evidence).
EVIDENCE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def named_evidence_endpoint(run_dir: str | os.PathLike[str] | None, name: str) -> str:
    """ipc://<run dir>/evidence.<name>; ValueError for a name that is not 1-32 letters, digits,
    '_' or '-'."""
    if not EVIDENCE_NAME_RE.fullmatch(name):
        raise ValueError(f"evidence name must be 1 to 32 letters, digits, '_' or '-', got {name!r}")
    base = evidence_endpoint(run_dir)
    path = base + "." + name
    if len(path[len("ipc://") :].encode()) > d.MAX_IPC_PATH:
        raise ValueError(f"ipc path {path} is longer than {d.MAX_IPC_PATH} bytes")
    return path


def evidence_endpoints(run_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The evidence servers of a run dir: ipc://<run dir>/evidence first, then each
    evidence.<name> socket, by name."""
    p = Path(run_dir) if run_dir is not None else d.default_run_dir()
    found = []
    try:
        entries = list(os.scandir(p))
    except OSError:
        entries = []
    for e in entries:
        name = e.name
        if name != d.EVIDENCE_NAME and not (
            name.startswith(d.EVIDENCE_NAME + ".")
            and EVIDENCE_NAME_RE.fullmatch(name[len(d.EVIDENCE_NAME) + 1 :])
        ):
            continue
        try:
            if stat.S_ISSOCK(e.stat(follow_symlinks=False).st_mode):
                found.append(name)
        except OSError:
            continue
    found.sort(key=lambda n: (n != d.EVIDENCE_NAME, n))
    return ["ipc://" + str(p / n) for n in found] or [evidence_endpoint(run_dir)]


def _field(m: Mapping[str, Any], key: str, types: tuple[type, ...]) -> Any:
    v = m.get(key)
    if type(v) not in types:
        raise EvidenceError(f"malformed reply: {key} is {type(v).__name__}")
    return v


class EvidenceSource(Closing):
    """What both evidence clients offer (EvidenceClient: one engine; EvidenceRouter: every
    engine of a run dir): snapshot and clip over a `request(body, timeout_s)` of their own."""

    closed: bool

    def request(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        raise NotImplementedError

    def snapshot(self, cam: str, timeout_s: float = d.EVIDENCE_TIMEOUT_S) -> Snapshot:
        """The latest analysed frame of cam as JPEG."""
        r = self.request({"op": "snapshot", "cam": cam}, timeout_s)
        return Snapshot(
            cam=_field(r, "cam", (str,)),
            frame=_field(r, "frame", (int,)),
            pts=float(_field(r, "pts", (float, int))),
            t_ns=_field(r, "t_ns", (int,)),
            w=_field(r, "w", (int,)),
            h=_field(r, "h", (int,)),
            jpeg=_field(r, "jpeg", (bytes,)),
        )

    def clip(
        self,
        cam: str,
        t0: float,
        t1: float,
        wait_s: float = 0.0,
        timeout_s: float | None = None,
    ) -> Clip:
        """An MP4 of cam's stream time [t0, t1] (seconds, as tracks messages' pts), starting at
        the keyframe at or before t0. The server waits up to wait_s (capped at
        EVIDENCE_MAX_WAIT_S) for t1 to reach its packet ring. timeout_s defaults to wait_s plus
        EVIDENCE_TIMEOUT_S."""
        if timeout_s is None:
            timeout_s = min(wait_s, d.EVIDENCE_MAX_WAIT_S) + d.EVIDENCE_TIMEOUT_S
        r = self.request(
            {"op": "clip", "cam": cam, "t0": float(t0), "t1": float(t1), "wait_s": float(wait_s)},
            timeout_s,
        )
        return Clip(
            cam=_field(r, "cam", (str,)),
            t0=float(_field(r, "t0", (float, int))),
            t1=float(_field(r, "t1", (float, int))),
            packets=_field(r, "packets", (int,)),
            keyframe=_field(r, "keyframe", (bool,)),
            duration_s=float(_field(r, "duration_s", (float, int))),
            partial=_field(r, "partial", (bool,)),
            mp4=_field(r, "mp4", (bytes,)),
        )


class EvidenceClient(EvidenceSource):
    """DEALER client of the engine's evidence server. Not for use by several threads at once
    (calls are serialised by a lock). Every call gives up after its timeout: never hangs.

        with EvidenceClient(run_dir) as ev:
            snap = ev.snapshot("gate-1")          # Snapshot(jpeg=..., pts=..., ...)
            clip = ev.clip("gate-1", 120.0, 130.0, wait_s=15)
    """

    def __init__(
        self,
        where: str | os.PathLike[str] | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        s = os.fspath(where) if where is not None else None
        self.endpoint = s if s is not None and "://" in s else evidence_endpoint(s)
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, d.EVIDENCE_MAX_REPLY_BYTES + 65536)
        self._socket.connect(self.endpoint)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.closed = False

    def request(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request (its id is set here) and return the reply map with ok true; raise
        EvidenceError with the server's message for ok false, or after timeout_s."""
        with self._lock:
            if self.closed:
                raise EvidenceError("the evidence client is closed")
            rid = next(self._ids)
            msg = {"v": d.EVIDENCE_VERSION, **body, "id": rid}
            self._socket.send(msgpack.packb(msg, use_bin_type=True))
            deadline = time.monotonic() + max(0.0, timeout_s)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                    if time.monotonic() < deadline:
                        continue
                    raise EvidenceError(
                        f"no reply from the evidence server at {self.endpoint} within "
                        f"{timeout_s:g} s"
                    )
                frames = self._socket.recv_multipart()
                try:
                    reply = _unpack(
                        frames[-1],
                        max_bin=d.EVIDENCE_MAX_REPLY_BYTES,
                        max_str=d.MAX_STR_LEN,
                        max_array=d.EVIDENCE_MAX_ARRAY_LEN,
                        max_map=d.MAX_MAP_LEN,
                    )
                except (ValueError, msgpack.UnpackException, RecursionError) as e:
                    raise EvidenceError(f"malformed reply: {e}") from None
                if not isinstance(reply, dict) or reply.get("id") != rid:
                    continue  # the late reply of an earlier request that timed out
                if reply.get("ok") is not True:
                    err = reply.get("error")
                    raise EvidenceError(err if isinstance(err, str) else "request refused")
                return reply

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._socket.close()
            if self._own_context:
                self._context.term()


#: How the engine words a refusal for a camera it does not run (smartcity/engine/evidence.py).
NO_CAMERA = "cam: no camera "
#: An engine whose evidence server did not answer is not asked again for this long.
DOWN_FOR_S = 30.0


class EvidenceRouter(EvidenceSource):
    """Snapshots and clips from every engine of a run dir (evidence_endpoints): the camera's
    engine is found by asking (an engine refuses a camera it does not run at once), then
    remembered; an engine that does not answer is skipped for DOWN_FOR_S. Same calls as
    EvidenceClient; serialised by a lock."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.endpoint = evidence_endpoint(run_dir)
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._clients: dict[str, EvidenceClient] = {}
        self._home: dict[str, str] = {}  # camera -> endpoint that served it
        self._down: dict[str, float] = {}  # endpoint -> monotonic time it stops being skipped
        self._lock = threading.Lock()
        self.closed = False

    def _client(self, endpoint: str) -> EvidenceClient:
        c = self._clients.get(endpoint)
        if c is None:
            c = self._clients[endpoint] = EvidenceClient(endpoint, context=self._context)
        return c

    def request(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        with self._lock:
            if self.closed:
                raise EvidenceError("the evidence client is closed")
            cam = body.get("cam")
            now = time.monotonic()
            endpoints = evidence_endpoints(self.run_dir)
            home = self._home.get(cam) if isinstance(cam, str) else None
            order = ([home] if home in endpoints else []) + [e for e in endpoints if e != home]
            refused: list[str] = []
            for ep in order:
                if self._down.get(ep, 0.0) > now and ep != home and len(order) > 1:
                    continue
                try:
                    reply = self._client(ep).request(body, timeout_s)
                except EvidenceError as e:
                    msg = str(e)
                    if msg.startswith(NO_CAMERA):
                        refused.append(ep)
                        continue
                    if msg.startswith("no reply from") and len(order) > 1:
                        self._down[ep] = time.monotonic() + DOWN_FOR_S
                        refused.append(ep)
                        continue
                    raise
                self._down.pop(ep, None)
                if isinstance(cam, str):
                    self._home[cam] = ep
                return reply
            if isinstance(cam, str):
                self._home.pop(cam, None)
            raise EvidenceError(
                f"{NO_CAMERA}{cam!r} in any engine of this run dir "
                f"({len(refused)} asked: {', '.join(refused) or 'none'})"
            )

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for c in self._clients.values():
                c.close()
            self._clients.clear()
            if self._own_context:
                self._context.term()
