"""Webhook delivery end to end: the dispatcher POSTs to a receiver on loopback (a stdlib HTTP
server in a thread) and records every attempt in the store's delivery log."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_fixtures, used as arguments)

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypeVar

import pytest

from smartcity.api.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookDispatcher,
    matches,
    sign,
    verify,
)
from smartcity.store import Store
from smartcity.store.webhooks import DeliveryRecord, WebhookRecord
from tests.store_fixtures import db_url, pg_store, pg_url, store  # noqa: F401

SECRET = "integrator-shared-secret-0123"
WAIT_S = 20.0  # time-out of every wait below (never reached when things work)
T = TypeVar("T")


# ------------------------------------------------------------------ the receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTs and answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[tuple[int, bytes, dict[str, str]]] = []  # answers, then 200
        self.hold = threading.Event()  # set: answers wait for release (time-out tests)
        self.release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status, reply, extra = outer.script.pop(0) if outer.script else (200, b"", {})
                if outer.hold.is_set():
                    outer.release.wait(WAIT_S)
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:  # the client gave up (time-out test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        with self._lock:
            self.script.append((status, body, headers))

    def got(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], what: str, step: float = 0.01) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


async def deliver_until(
    d: WebhookDispatcher, store: Store, delivery_id: int, status: str
) -> list[DeliveryRecord]:
    """Call deliver_due_once until the delivery has `status`; the log after each attempt."""
    seen: list[DeliveryRecord] = []
    deadline = time.monotonic() + WAIT_S
    while True:
        if await d.deliver_due_once():
            seen.append(store.webhooks.get_delivery(delivery_id))
            if seen[-1].status == status:
                return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery_id} not {status}; log: {seen}")
        await asyncio.sleep(0.005)


def hook(store: Store, url: str, **kw: Any) -> WebhookRecord:
    kw.setdefault("name", "integrator")
    kw.setdefault("events", ["incident.*"])
    return store.webhooks.add(url=url, secret=kw.pop("secret", SECRET), **kw)


def only_delivery(store: Store, w: WebhookRecord) -> DeliveryRecord:
    (d,) = store.webhooks.list_deliveries(w.id)
    return d


# ------------------------------------------------------------------ signing, matching


def test_sign_and_verify_by_hand() -> None:
    body = b'{"type":"incident.opened"}'
    t = 1_800_000_000
    assert sign("k" * 16, t, body) == sign("k" * 16, t, body)
    header = f"t={t},v1={sign('k' * 16, t, body)}"
    assert verify("k" * 16, header, body, now=t)
    assert verify("k" * 16, header, body, now=t + 300)
    assert not verify("k" * 16, header, body, now=t + 301)  # replayed too late
    assert not verify("k" * 16, header, body, now=t - 301)
    assert not verify("k" * 16, header, body + b" ", now=t)
    assert not verify("x" * 16, header, body, now=t)
    assert verify("k" * 16, f"t={t},v1={'0' * 64},v1={sign('k' * 16, t, body)}", body, now=t)
    for bad in ("", "garbage", f"t={t}", f"v1={sign('k' * 16, t, body)}", f"t=x,{header[13:]}"):
        assert not verify("k" * 16, bad, body, now=t), bad
    assert not verify("k" * 16, None, body, now=t)


def test_matches() -> None:
    assert matches(["*"], "incident.opened") and matches(["*"], "camera.state")
    assert matches(["incident.*"], "incident.wrong_way")
    assert matches(["incident.*"], "incident.changed")
    assert not matches(["incident.*"], "incidents.opened")
    assert not matches(["incident.*"], "camera.state")
    assert matches(["health.*", "incident.closed"], "incident.closed")
    assert not matches(["incident.opened"], "incident.opened2")
    assert matches(["*.closed"], "incident.closed")
    assert not matches(["incident.?pened"], "incident.opened")  # only "*" is special
    assert not matches([], "incident.opened")


def test_retry_delays_double_and_are_capped(store: Store) -> None:
    d = WebhookDispatcher(store, backoff_s=2.0, max_backoff_s=600)
    assert [d.retry_delay(n) for n in range(1, 11)] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600]
    with pytest.raises(ValueError, match="max_attempts"):
        WebhookDispatcher(store, max_attempts=0)
    with pytest.raises(ValueError, match="timeout_s"):
        WebhookDispatcher(store, timeout_s=0)


# ------------------------------------------------------------------ delivery


def test_event_arrives_signed_and_verifiable(store: Store, receiver: Receiver) -> None:
    w = hook(store, receiver.url())
    payload = {"camera": "cam1", "data": {"incident": "i-1", "score": 0.93, "label": "wrong way"}}

    async def go() -> int:
        d = WebhookDispatcher(store, backoff_s=0.01)
        try:
            n = d.submit("incident.opened", payload, camera="cam1", event_id="ev-1")
            assert n == 1
            return await d.deliver_due_once()
        finally:
            await d.stop()

    assert run(go()) == 1
    (req,) = receiver.got()
    delivery = only_delivery(store, w)
    assert req.path == "/hook"
    assert req.headers["content-type"] == "application/json"
    assert req.headers[EVENT_HEADER.lower()] == "incident.opened"
    assert req.headers[DELIVERY_HEADER.lower()] == str(delivery.id)
    doc = json.loads(req.body)
    assert list(doc)[:3] == ["type", "id", "at"]
    assert doc == {"type": "incident.opened", "id": "ev-1", "at": doc["at"], **payload}
    assert doc["at"] == delivery.created_at.isoformat()
    assert req.body == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    header = req.headers[SIGNATURE_HEADER.lower()]
    assert header.startswith("t=") and ",v1=" in header
    assert verify(SECRET, header, req.body)
    assert not verify(SECRET, header, req.body.replace(b"0.93", b"0.94"))  # tampered body
    assert not verify("another-secret-of-some-length", header, req.body)  # wrong secret
    stamp = int(header.split(",")[0][2:])
    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + req.body, hashlib.sha256)
    assert header == f"t={stamp},v1={mac.hexdigest()}"  # the documented scheme, by hand
    assert not verify(SECRET, header, req.body, now=stamp + 301)  # replayed later

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.last_error is None and delivery.delivered_at is not None


def test_payload_time_and_envelope_keys(store: Store, receiver: Receiver) -> None:
    """The hub's events carry type/id/at already: the payload's "at" is kept, type and id are
    the delivery's."""
    hook(store, receiver.url())
    ev = {"type": "x", "id": "y", "at": "2026-03-01T08:00:00+00:00", "camera": None, "data": {}}

    async def go() -> None:
        d = WebhookDispatcher(store)
        try:
            assert d.submit("incident.changed", ev, camera=None, event_id="ev-7") == 1
            assert await d.deliver_due_once() == 1
        finally:
            await d.stop()

    run(go())
    doc = json.loads(receiver.got()[0].body)
    assert doc == {**ev, "type": "incident.changed", "id": "ev-7"}


def test_event_and_camera_filters(store: Store, receiver: Receiver) -> None:
    a = hook(store, receiver.url("/a"), events=["incident.*"])
    b = hook(store, receiver.url("/b"), events=["health.*"])
    c = hook(store, receiver.url("/c"), events=["incident.closed"], cameras=["cam2"])
    d_ = hook(store, receiver.url("/d"), events=["*"], cameras=["cam1"])

    async def go() -> list[int]:
        d = WebhookDispatcher(store)
        try:
            counts = [
                d.submit("incident.opened", {"n": 1}, camera="cam1"),  # a, d
                d.submit("incident.closed", {"n": 2}, camera="cam2"),  # a, c
                d.submit("health.offline", {"n": 3}, camera="cam2"),  # b
                d.submit("camera.state", {"n": 4}, camera=None),  # nobody: d wants cam1 only
                d.submit("incident.closed", {"n": 5}, camera="cam3"),  # a
            ]
            assert await d.deliver_due_once() == sum(counts)
            return counts
        finally:
            await d.stop()

    assert run(go()) == [2, 2, 1, 0, 1]

    def got(path: str) -> list[tuple[str, int]]:
        return [(json.loads(r.body)["type"], json.loads(r.body)["n"]) for r in receiver.got(path)]

    assert got("/a") == [("incident.opened", 1), ("incident.closed", 2), ("incident.closed", 5)]
    assert got("/b") == [("health.offline", 3)]
    assert got("/c") == [("incident.closed", 2)]
    assert got("/d") == [("incident.opened", 1)]
    for w, n in ((a, 3), (b, 1), (c, 1), (d_, 1)):
        assert store.webhooks.counts(w.id) == {"pending": 0, "delivered": n, "failed": 0}


def test_500_twice_then_200_is_three_attempts(store: Store, receiver: Receiver) -> None:
    w = hook(store, receiver.url())
    receiver.answer(500, b"x" * 10_000)  # a long error page: only 1 KiB of it is kept
    receiver.answer(503, b"busy, try later")

    async def go() -> tuple[list[DeliveryRecord], float]:
        d = WebhookDispatcher(store, backoff_s=0.05, max_attempts=5)
        try:
            assert d.submit("incident.opened", {"k": "v"}, camera="cam1") == 1
            (pending,) = store.webhooks.list_deliveries(w.id)
            before = time.time()
            return await deliver_until(d, store, pending.id, "delivered"), before
        finally:
            await d.stop()

    log, before = run(go())
    assert [(r.status, r.attempts, r.last_status_code) for r in log] == [
        ("pending", 1, 500),
        ("pending", 2, 503),
        ("delivered", 3, 200),
    ]
    first, second, done = log
    assert first.last_error is not None and first.last_error.startswith("HTTP 500: xxx")
    assert len(first.last_error) <= len("HTTP 500: ") + 1024
    assert second.last_error == "HTTP 503: busy, try later"
    assert done.last_error is None and done.next_attempt_at is None
    assert first.next_attempt_at is not None and second.next_attempt_at is not None
    assert first.next_attempt_at.timestamp() >= before + 0.05  # backoff_s after the 1st try
    # the 2nd try came no earlier than due, and its retry waits twice as long
    assert (second.next_attempt_at - first.next_attempt_at).total_seconds() >= 0.1
    assert store.webhooks.get_delivery(done.id) == done
    reqs = receiver.got()
    assert len(reqs) == 3
    assert len({r.body for r in reqs}) == 1  # the same event each time ...
    assert {r.headers[DELIVERY_HEADER.lower()] for r in reqs} == {str(done.id)}
    assert all(verify(SECRET, r.headers[SIGNATURE_HEADER.lower()], r.body) for r in reqs)


def test_unreachable_url_fails_after_max_attempts(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port nobody listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = hook(store, f"http://scuser:hunter2pass@127.0.0.1:{port}/hook")
    caplog.set_level(logging.DEBUG, logger="smartcity.api.webhooks")

    async def go() -> tuple[list[DeliveryRecord], int]:
        d = WebhookDispatcher(store, backoff_s=0.01, max_attempts=3, timeout_s=2)
        try:
            assert d.submit("incident.opened", {}, camera="cam1") == 1
            log = await deliver_until(d, store, only_delivery(store, w).id, "failed")
            await asyncio.sleep(0.05)
            return log, await d.deliver_due_once()
        finally:
            await d.stop()

    log, after = run(go())
    assert [(r.status, r.attempts, r.last_status_code) for r in log] == [
        ("pending", 1, None),
        ("pending", 2, None),
        ("failed", 3, None),
    ]
    assert after == 0  # failed for good: never tried again
    final = log[-1]
    assert final.next_attempt_at is None and final.delivered_at is None
    assert final.last_error and "Connect" in final.last_error
    assert "hunter2pass" not in final.last_error
    assert "failed for good after 3 attempts" in caplog.text
    assert f"127.0.0.1:{port}" in caplog.text
    assert "hunter2pass" not in caplog.text and "scuser" not in caplog.text


def test_redirects_are_not_followed(store: Store, receiver: Receiver) -> None:
    w = hook(store, receiver.url("/old"))
    receiver.answer(302, b"", Location=receiver.url("/new"))

    async def go() -> None:
        d = WebhookDispatcher(store, max_attempts=1)
        try:
            d.submit("incident.opened", {}, camera=None)
            assert await d.deliver_due_once() == 1
        finally:
            await d.stop()

    run(go())
    assert [r.path for r in receiver.got()] == ["/old"]
    d = only_delivery(store, w)
    assert (d.status, d.attempts, d.last_status_code) == ("failed", 1, 302)
    assert d.last_error is not None and "redirects are not followed" in d.last_error


def test_slow_receiver_times_out(store: Store, receiver: Receiver) -> None:
    w = hook(store, receiver.url())
    receiver.hold.set()  # the receiver does not answer until the test ends

    async def go() -> None:
        d = WebhookDispatcher(store, timeout_s=0.3, max_attempts=2, backoff_s=60)
        try:
            d.submit("incident.opened", {}, camera="cam1")
            assert await d.deliver_due_once() == 1
        finally:
            await d.stop()

    run(go())
    d = only_delivery(store, w)
    assert (d.status, d.attempts, d.last_status_code) == ("pending", 1, None)
    assert d.last_error == "timed out after 0.3 s"


def test_disabled_webhook_gets_nothing(store: Store, receiver: Receiver) -> None:
    on = hook(store, receiver.url("/on"))
    off = hook(store, receiver.url("/off"), enabled=False)
    later = hook(store, receiver.url("/later"))

    async def go() -> None:
        d = WebhookDispatcher(store)
        try:
            assert d.submit("incident.opened", {}, camera="cam1") == 2  # on, later
            store.webhooks.update(later.id, enabled=False)  # paused after queueing
            assert await d.deliver_due_once() == 1
            assert await d.deliver_due_once() == 0
            assert [r.path for r in receiver.got()] == ["/on"]
            store.webhooks.update(later.id, enabled=True)  # resumed: what waited goes out
            assert await d.deliver_due_once() == 1
        finally:
            await d.stop()

    run(go())
    assert [r.path for r in receiver.got()] == ["/on", "/later"]
    assert store.webhooks.list_deliveries(off.id) == []
    assert only_delivery(store, on).status == "delivered"
    assert only_delivery(store, later).status == "delivered"


def test_submit_wakes_the_running_loop(store: Store, receiver: Receiver) -> None:
    """poll_s is a minute: a delivery within WAIT_S can only come from submit() waking run()."""
    w = hook(store, receiver.url())

    async def go() -> None:
        d = WebhookDispatcher(store, poll_s=60.0)
        task = asyncio.create_task(d.run())
        try:
            await until(lambda: d.rounds >= 1, "the first (empty) round")
            await asyncio.sleep(0.05)  # now waiting for a minute
            n = await asyncio.to_thread(
                lambda: d.submit("incident.opened", {"x": 1}, camera="cam1")
            )
            assert n == 1
            await until(lambda: len(receiver.got()) == 1, "the delivery")
            await until(lambda: only_delivery(store, w).status == "delivered", "the log")
            assert not task.done()
        finally:
            await d.stop()
            await asyncio.wait_for(task, WAIT_S)  # stop() ends run() without a poll
        assert task.exception() is None

    run(go())
    assert json.loads(receiver.got()[0].body)["x"] == 1
