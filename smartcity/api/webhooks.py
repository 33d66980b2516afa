"""Webhook delivery: signing, event matching and the dispatcher (independent of Litestar).

    dispatcher = WebhookDispatcher(store)
    task = asyncio.create_task(dispatcher.run())
    dispatcher.submit("incident.opened", {...}, camera="cam1")   # any thread; queues + wakes
    ...
    await dispatcher.stop()

Each (event, matching webhook) pair is a row of the store's delivery log (pending → delivered or
failed); the dispatcher POSTs the JSON body, signed with the webhook's secret, and retries with
exponential back-off. Delivery is at least once: a receiver deduplicates by the body's "id" (the
event) or the X-Smartcity-Delivery header (the delivery). docs/webhooks.md is the integrators'
guide.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from smartcity.store.errors import InvalidTransitionError, NotFoundError
from smartcity.store.repositories import utcnow
from smartcity.store.webhooks import DeliveryRecord, WebhookRecord, redact_url

if TYPE_CHECKING:
    from smartcity.store.store import Store

log = logging.getLogger("smartcity.api.webhooks")

SIGNATURE_HEADER = "X-Smartcity-Signature"
EVENT_HEADER = "X-Smartcity-Event"
DELIVERY_HEADER = "X-Smartcity-Delivery"
USER_AGENT = "smartcity-webhooks/1"
#: At most this much of a failed answer's body is read (and kept as the error text).
MAX_ERROR_BODY = 1024
#: Signatures older or newer than this are refused by `verify` (replay window), seconds.
DEFAULT_TOLERANCE_S = 300
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


# ============================================================================== signing


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 (hex) of `"<timestamp>." + body` with the webhook's secret."""
    mac = hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Smartcity-Signature value: `t=<unix seconds>,v1=<hex>`."""
    return f"t={int(timestamp)},v1={sign(secret, timestamp, body)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True if `header` (X-Smartcity-Signature) signs `body` (the raw bytes received) with
    `secret`, and its time is within `tolerance_s` of `now` (default: the clock). Several v1=
    values are allowed (any one may match); the comparison is constant-time."""
    if not isinstance(header, str) or not isinstance(body, bytes | bytearray):
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.match(value):
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        return False
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, bytes(body)).encode()
    ok = False
    for c in candidates:
        if _HEX.match(c):
            ok |= hmac.compare_digest(expected, c.encode())
    return ok


# ============================================================================== matching


@functools.lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether an event type is wanted: "*" matches any run of characters (dots included), so
    "*" is every event, "incident.*" every incident event; other characters match themselves."""
    return any(_pattern(p).fullmatch(event_type) is not None for p in patterns)


def delivery_body(delivery: DeliveryRecord) -> bytes:
    """The JSON sent (compact, UTF-8): the payload with "type", "id" (the event's) and "at" at
    the top, first. "at" is the payload's own when it has one (a string), else the time the
    event was queued. The same bytes on every attempt."""
    at = delivery.payload.get("at")
    doc: dict[str, Any] = {
        "type": delivery.event_type,
        "id": delivery.event_id,
        "at": at if isinstance(at, str) else delivery.created_at.isoformat(),
    }
    for key, value in delivery.payload.items():
        doc.setdefault(key, value)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _scrub(text: str, url: str) -> str:
    """Error text without the URL's credentials."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return text
    text = text.replace(url, redact_url(url))
    userinfo = parts.netloc.rpartition("@")[0]
    return text.replace(userinfo, "***")


# ============================================================================== dispatcher


class WebhookDispatcher:
    """Queues events for the webhooks that want them and delivers them.

    timeout_s: the whole of one attempt (connect, send, answer). A failed attempt is retried
    backoff_s * 2**(attempts-1) seconds later (capped at max_backoff_s); after max_attempts the
    delivery is "failed". poll_s: how often the loop looks for due deliveries when nothing wakes
    it. batch: deliveries taken per round; concurrency: webhooks served at once (one webhook's
    deliveries go one after the other, in order). client: an httpx.AsyncClient to use (the
    dispatcher then does not close it); the default one ignores proxy variables.
    """

    def __init__(
        self,
        store: Store,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        max_backoff_s: float = 600.0,
        client: httpx.AsyncClient | None = None,
        poll_s: float = 1.0,
        batch: int = 100,
        concurrency: int = 8,
    ) -> None:
        for name, value in (
            ("timeout_s", timeout_s),
            ("backoff_s", backoff_s),
            ("max_backoff_s", max_backoff_s),
            ("poll_s", poll_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        for name, ivalue in (
            ("max_attempts", max_attempts),
            ("batch", batch),
            ("concurrency", concurrency),
        ):
            if isinstance(ivalue, bool) or not isinstance(ivalue, int) or ivalue < 1:
                raise ValueError(f"{name}: must be a positive integer, got {ivalue!r}")
        self.store = store
        self.timeout_s = float(timeout_s)
        self.max_attempts = max_attempts
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.poll_s = float(poll_s)
        self.batch = min(batch, 1000)
        self.concurrency = concurrency
        #: a claimed delivery is not taken again before this (it is retried if we die)
        self.lease_s = self.timeout_s + 60.0
        self._client = client
        self._own_client = client is None
        self._lock = threading.Lock()  # _loop and _wake, read by submit() from any thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._stopping = False
        #: rounds run() has finished (each: deliver what is due, then wait)
        self.rounds = 0

    # ------------------------------------------------------------ queueing
    def submit(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        camera: str | None,
        event_id: str | None = None,
    ) -> int:
        """Queue the event for every enabled webhook whose events match `event_type` and whose
        cameras include `camera` (or are None: every camera; an event of no camera goes only to
        those). Returns how many deliveries were queued. Blocking (database); any thread."""
        event_id = event_id or uuid.uuid4().hex
        repo = self.store.webhooks
        queued = 0
        for hook in repo.list(enabled=True):
            if not matches(hook.events, event_type):
                continue
            if hook.cameras is not None and (camera is None or camera not in hook.cameras):
                continue
            try:
                repo.enqueue(hook.id, event_id, event_type, payload)
            except NotFoundError:  # deleted since the list
                continue
            queued += 1
        if queued:
            self.wake()
        return queued

    async def asubmit(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        camera: str | None,
        event_id: str | None = None,
    ) -> int:
        """submit() from async code, off the event loop."""
        return await asyncio.to_thread(
            functools.partial(self.submit, event_type, payload, camera=camera, event_id=event_id)
        )

    def wake(self) -> None:
        """Make the running loop look for due deliveries now (any thread)."""
        with self._lock:
            loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(wake.set)

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones."""
        return float(min(self.backoff_s * 2 ** max(attempts - 1, 0), self.max_backoff_s))

    # ------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Deliver until stop(): every due delivery, then wait for submit() or the next due
        time (at most poll_s)."""
        wake, done = asyncio.Event(), asyncio.Event()
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("WebhookDispatcher.run() is running already")
            self._loop, self._wake, self._done = asyncio.get_running_loop(), wake, done
        log.info("webhook dispatcher started")
        try:
            while not self._stopping:
                wake.clear()
                try:
                    n = await self.deliver_due_once()
                    delay = 0.0 if n >= self.batch else await self._idle_delay()
                except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
                    log.exception("webhook delivery round failed; trying again")
                    delay = self.poll_s
                self.rounds += 1
                if self._stopping:
                    break
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), delay)
        finally:
            with self._lock:
                self._loop = self._wake = None
            done.set()
            log.info("webhook dispatcher stopped")

    async def stop(self) -> None:
        """End run() (after the attempts in flight, at most timeout_s) and close the client.
        Final: a stopped dispatcher does not run again."""
        self._stopping = True
        self.wake()
        with self._lock:
            running, done = self._loop is not None, self._done
        if running and done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.timeout_s + 5.0)
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if the dispatcher made it."""
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _idle_delay(self) -> float:
        nxt = await asyncio.to_thread(self.store.webhooks.next_due_at)
        if nxt is None:
            return self.poll_s
        return min(self.poll_s, max((nxt - utcnow()).total_seconds(), 0.01))

    async def deliver_due_once(self) -> int:
        """One round: claim and attempt the deliveries due now. Returns how many attempts were
        made (delivered or not)."""
        repo = self.store.webhooks
        due = await asyncio.to_thread(repo.due, utcnow(), self.batch)
        if not due:
            return 0
        by_hook: dict[int, list[DeliveryRecord]] = {}
        for d in due:
            by_hook.setdefault(d.webhook_id, []).append(d)
        gate = asyncio.Semaphore(self.concurrency)

        async def serve(hook_id: int, deliveries: list[DeliveryRecord]) -> int:
            async with gate:
                try:
                    hook = await asyncio.to_thread(repo.get, hook_id)
                except NotFoundError:
                    return 0
                made = 0
                for d in deliveries:
                    if self._stopping:
                        break
                    now = utcnow()
                    claimed = await asyncio.to_thread(
                        functools.partial(
                            repo.claim, d.id, until=now + timedelta(seconds=self.lease_s), now=now
                        )
                    )
                    if claimed is None:
                        continue
                    await self._attempt(hook, claimed)
                    made += 1
                return made

        results = await asyncio.gather(
            *(serve(k, v) for k, v in by_hook.items()), return_exceptions=True
        )
        made = 0
        for r in results:
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                log.error("webhook delivery failed unexpectedly: %s: %s", type(r).__name__, r)
            else:
                made += r
        return made

    # ------------------------------------------------------------ one attempt
    async def _attempt(self, hook: WebhookRecord, d: DeliveryRecord) -> None:
        repo = self.store.webhooks
        body = delivery_body(d)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            SIGNATURE_HEADER: signature_header(hook.secret, stamp, body),
            EVENT_HEADER: d.event_type,
            DELIVERY_HEADER: str(d.id),
        }
        status, error = await self._post(hook.url, body, headers)
        attempt = d.attempts + 1
        shown = redact_url(hook.url)
        said = " ".join((error or "").split())[:300]  # one log line, whatever the receiver sent
        try:
            if error is None and status is not None:
                await asyncio.to_thread(repo.mark_delivered, d.id, status)
                log.info(
                    "webhook %d %s: delivery %d (%s) delivered on attempt %d, HTTP %d",
                    hook.id,
                    shown,
                    d.id,
                    d.event_type,
                    attempt,
                    status,
                )
                return
            error = error or "no answer"
            if attempt >= self.max_attempts:
                await asyncio.to_thread(repo.mark_failed_attempt, d.id, status, error, None)
                log.warning(
                    "webhook %d %s: delivery %d (%s) failed for good after %d attempts: %s",
                    hook.id,
                    shown,
                    d.id,
                    d.event_type,
                    attempt,
                    said,
                )
                return
            delay = self.retry_delay(attempt)
            nxt = utcnow() + timedelta(seconds=delay)
            await asyncio.to_thread(repo.mark_failed_attempt, d.id, status, error, nxt)
            log.info(
                "webhook %d %s: delivery %d (%s) attempt %d failed (%s); next in %.3g s",
                hook.id,
                shown,
                d.id,
                d.event_type,
                attempt,
                said,
                delay,
            )
        except (NotFoundError, InvalidTransitionError) as e:  # webhook deleted meanwhile
            log.info("webhook %d: delivery %d not recorded: %s", hook.id, d.id, e)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s, follow_redirects=False, trust_env=False
            )
        return self._client

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        """(status, None) on 2xx; (status or None, error text) otherwise. Never raises for
        what the receiver or the network does."""
        client = self._http()
        try:
            async with asyncio.timeout(self.timeout_s):
                request = client.build_request(
                    "POST", url, content=body, headers=headers, timeout=self.timeout_s
                )
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    status = response.status_code
                    if 200 <= status < 300:
                        return status, None
                    head = bytearray()
                    async for chunk in response.aiter_raw():
                        head += chunk
                        if len(head) >= MAX_ERROR_BODY:
                            break
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return None, f"timed out after {self.timeout_s:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as e:
            return None, _scrub(f"{type(e).__name__}: {e}".strip(), url)
        text = bytes(head[:MAX_ERROR_BODY]).decode("utf-8", "replace").strip()
        what = f"HTTP {status}"
        if 300 <= status < 400:
            what += " (redirects are not followed)"
        return status, _scrub(f"{what}: {text}" if text else what, url)


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "WebhookDispatcher",
    "delivery_body",
    "matches",
    "sign",
    "signature_header",
    "verify",
]
