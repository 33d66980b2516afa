"""Webhook subscriptions and their delivery log.

A webhook is an integrator's URL that receives the events it subscribed to (`events`: patterns
such as "incident.*"), optionally only those of some cameras. Each event for each matching webhook
is one row in `webhook_deliveries`: pending until the receiver answers 2xx (delivered) or the
attempts run out (failed). The delivery engine (smartcity/api/webhooks.py) drives the rows through
`due` → `claim` → `mark_delivered` / `mark_failed_attempt`; docs/webhooks.md is the integrators'
side.

The secret signs the deliveries; it is kept as given (the signer needs it) and never returned by
the API (WebhookRecord.secret is left out of repr).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from smartcity import _core
from smartcity.store import models as m
from smartcity.store.accounts import KEEP, _cams
from smartcity.store.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from smartcity.store.repositories import MAX_PAGE, _aware, _json_dict

if TYPE_CHECKING:
    from smartcity.store.store import Store

DELIVERY_STATES = ("pending", "delivered", "failed")
#: an event type or a pattern: dotted lower-case names, "*" standing for any run of characters
EVENT_PATTERN = re.compile(r"^(\*|[a-z0-9_*]+(\.[a-z0-9_*]+)*)$")
#: an event type itself (no wildcard)
EVENT_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
MAX_URL = 2048
MAX_EVENTS = 64
SECRET_MIN, SECRET_MAX = 16, 128
#: last_error is cut to this many characters
MAX_ERROR = 2000


class UnknownWebhookError(NotFoundError):
    """No webhook with that id."""


class UnknownDeliveryError(NotFoundError):
    """No delivery with that id."""


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    id: int
    name: str
    url: str  # may hold user:password@ for the receiver's basic auth: show redact_url(url)
    events: tuple[str, ...]
    cameras: tuple[str, ...] | None  # None: every camera
    enabled: bool
    created_by: str | None
    created_at: datetime
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    payload: dict[str, Any]
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime | None  # None once delivered or failed
    last_status_code: int | None  # HTTP status of the last attempt; None: no answer
    last_error: str | None  # what went wrong in the last attempt; None after success
    created_at: datetime  # also the event's "at" in the body sent
    delivered_at: datetime | None


def redact_url(url: str) -> str:
    """The URL without user:password@ (for logs and API answers): the core's redact_url."""
    try:
        urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    return _core.redact_url(url)


def validate_url(url: Any) -> str:
    """An absolute http(s) URL with a host; returned unchanged."""
    if not isinstance(url, str) or not url:
        raise InvalidInputError("webhook url: expected a non-empty string")
    if len(url) > MAX_URL:
        raise InvalidInputError(f"webhook url: longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInputError("webhook url: must not contain spaces or control characters")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InvalidInputError(f"webhook url {shown!r}: {e}") from None
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise InvalidInputError(f"webhook url {shown!r}: bad port ({e})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(
            f"webhook url {shown!r}: scheme {parts.scheme or '(none)'!r} refused; "
            "expected http or https"
        )
    if not parts.hostname:
        raise InvalidInputError(f"webhook url {shown!r}: no host")
    if parts.fragment:
        raise InvalidInputError(f"webhook url {shown!r}: a #fragment is never sent; remove it")
    return url


def validate_events(events: Any) -> list[str]:
    """A non-empty list of event types or patterns; returned sorted without duplicates."""
    if isinstance(events, str) or not isinstance(events, Sequence) or not events:
        raise InvalidInputError(
            'webhook events: expected a non-empty list such as ["incident.*"] or ["*"]'
        )
    if len(events) > MAX_EVENTS:
        raise InvalidInputError(f"webhook events: at most {MAX_EVENTS} patterns")
    for e in events:
        if not isinstance(e, str) or len(e) > 64 or not EVENT_PATTERN.match(e):
            raise InvalidInputError(
                f"webhook events: bad pattern {e!r}; expected dotted lower-case names "
                'with optional "*", e.g. "incident.wrong_way", "incident.*", "*"'
            )
    return sorted(set(events))


def _name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not name.strip():
        raise InvalidInputError("webhook name: 1-128 characters, not only spaces")
    return name


def _secret(secret: Any) -> str:
    if (
        not isinstance(secret, str)
        or not SECRET_MIN <= len(secret) <= SECRET_MAX
        or not secret.isprintable()
    ):
        raise InvalidInputError(
            f"webhook secret: {SECRET_MIN}-{SECRET_MAX} printable characters "
            "(generate one, e.g. secrets.token_urlsafe(32))"
        )
    return secret


def _text(value: Any, what: str, limit: int = 64) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise InvalidInputError(f"{what}: 1-{limit} characters, got {value!r}")
    return value


def _webhook(row: m.Webhook) -> WebhookRecord:
    return WebhookRecord(
        id=row.id,
        name=row.name,
        url=row.url,
        events=tuple(row.events or ()),
        cameras=tuple(row.cameras) if row.cameras is not None else None,
        enabled=row.enabled,
        created_by=row.created_by,
        created_at=row.created_at,
        secret=row.secret,
    )


def _delivery(row: m.WebhookDelivery) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def _limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit: expected 1-{MAX_PAGE}, got {limit!r}")
    return limit


class WebhookRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    # ------------------------------------------------------------ subscriptions
    def add(
        self,
        name: str,
        url: str,
        secret: str,
        events: Sequence[str],
        cameras: Sequence[str] | None = None,
        created_by: str | None = None,
        *,
        enabled: bool = True,
        at: datetime | None = None,
    ) -> WebhookRecord:
        """A new webhook. cameras=None: events of every camera (and those of none)."""
        row = m.Webhook(
            name=_name(name),
            url=validate_url(url),
            secret=_secret(secret),
            events=validate_events(events),
            cameras=_cams(cameras, "webhook cameras"),
            enabled=bool(enabled),
            created_by=_text(created_by, "created_by", 128) if created_by is not None else None,
            created_at=_aware(at, "at"),
        )
        with self._store.write() as s:
            s.add(row)
            s.flush()
            return _webhook(row)

    def get(self, id: int) -> WebhookRecord:
        with self._store.read() as s:
            row = s.get(m.Webhook, id)
            if row is None:
                raise UnknownWebhookError(f"no webhook with id {id}")
            return _webhook(row)

    def list(self, *, enabled: bool | None = None) -> builtins.list[WebhookRecord]:
        q = select(m.Webhook).order_by(m.Webhook.id)
        if enabled is not None:
            q = q.where(m.Webhook.enabled == enabled)
        with self._store.read() as s:
            return [_webhook(r) for r in s.scalars(q)]

    def update(
        self,
        id: int,
        *,
        name: str | None = None,
        url: str | None = None,
        events: Sequence[str] | None = None,
        cameras: Sequence[str] | None | object = KEEP,
        enabled: bool | None = None,
        secret: str | None = None,
    ) -> WebhookRecord:
        """Change what is given (None leaves a field); `cameras=None` means every camera, KEEP
        (the default) leaves them. Pending deliveries go to the new URL with the new secret."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _name(name)
        if url is not None:
            values["url"] = validate_url(url)
        if events is not None:
            values["events"] = validate_events(events)
        if cameras is not KEEP:
            values["cameras"] = _cams(cameras, "webhook cameras")  # type: ignore[arg-type]
        if enabled is not None:
            values["enabled"] = bool(enabled)
        if secret is not None:
            values["secret"] = _secret(secret)
        with self._store.write() as s:
            row = s.get(m.Webhook, id)
            if row is None:
                raise UnknownWebhookError(f"no webhook with id {id}")
            for k, v in values.items():
                setattr(row, k, v)
            s.flush()
            return _webhook(row)

    def delete(self, id: int) -> None:
        """Delete a webhook and its delivery log."""
        with self._store.write() as s:
            row = s.get(m.Webhook, id)
            if row is None:
                raise UnknownWebhookError(f"no webhook with id {id}")
            # ON DELETE CASCADE does it too; explicit so that it never depends on the pragma
            s.execute(delete(m.WebhookDelivery).where(m.WebhookDelivery.webhook_id == id))
            s.delete(row)

    # ------------------------------------------------------------ deliveries
    def enqueue(
        self,
        webhook_id: int,
        event_id: str,
        event_type: str,
        payload: dict[str, Any],
        *,
        at: datetime | None = None,
    ) -> DeliveryRecord:
        """A pending delivery, due at once. `at` (default now) is also the event's time."""
        _text(event_id, "event_id")
        if (
            not isinstance(event_type, str)
            or len(event_type) > 64
            or not EVENT_TYPE.match(event_type)
        ):
            raise InvalidInputError(
                f"event_type {event_type!r}: dotted lower-case names, e.g. incident.wrong_way"
            )
        body = _json_dict(payload, "webhook payload")
        now = _aware(at, "at")
        with self._store.write() as s:
            if s.get(m.Webhook, webhook_id) is None:
                raise UnknownWebhookError(f"no webhook with id {webhook_id}")
            row = m.WebhookDelivery(
                webhook_id=webhook_id,
                event_id=event_id,
                event_type=event_type,
                payload=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            s.add(row)
            s.flush()
            return _delivery(row)

    def get_delivery(self, id: int) -> DeliveryRecord:
        with self._store.read() as s:
            row = s.get(m.WebhookDelivery, id)
            if row is None:
                raise UnknownDeliveryError(f"no webhook delivery with id {id}")
            return _delivery(row)

    def due(self, now: datetime | None = None, limit: int = 100) -> builtins.list[DeliveryRecord]:
        """Pending deliveries of enabled webhooks whose next attempt is at or before `now`,
        the most overdue first. (A disabled webhook's deliveries wait until it is enabled.)"""
        t = _aware(now, "now")
        q = (
            select(m.WebhookDelivery)
            .join(m.Webhook, m.Webhook.id == m.WebhookDelivery.webhook_id)
            .where(
                m.WebhookDelivery.status == "pending",
                m.WebhookDelivery.next_attempt_at <= t,
                m.Webhook.enabled.is_(True),
            )
            .order_by(m.WebhookDelivery.next_attempt_at, m.WebhookDelivery.id)
            .limit(_limit(limit))
        )
        with self._store.read() as s:
            return [_delivery(r) for r in s.scalars(q)]

    def next_due_at(self) -> datetime | None:
        """When the earliest pending delivery of an enabled webhook is due (None: nothing)."""
        q = (
            select(func.min(m.WebhookDelivery.next_attempt_at))
            .join(m.Webhook, m.Webhook.id == m.WebhookDelivery.webhook_id)
            .where(m.WebhookDelivery.status == "pending", m.Webhook.enabled.is_(True))
        )
        with self._store.read() as s:
            value: datetime | None = s.scalar(q)  # min() keeps the column's type: aware UTC
            return value

    def claim(
        self, id: int, *, until: datetime, now: datetime | None = None
    ) -> DeliveryRecord | None:
        """Take a due delivery for one attempt: its next attempt moves to `until` (a lease, so
        that no other dispatcher takes it meanwhile, and so that it is tried again if this one
        dies). None: not pending or not due any more (someone else took it)."""
        t = _aware(now, "now")
        lease = _aware(until, "until")
        with self._store.write() as s:
            res = s.execute(
                update(m.WebhookDelivery)
                .where(
                    m.WebhookDelivery.id == id,
                    m.WebhookDelivery.status == "pending",
                    m.WebhookDelivery.next_attempt_at <= t,
                )
                .values(next_attempt_at=lease)
                .execution_options(synchronize_session=False)
            )
            if not getattr(res, "rowcount", 0):
                return None
            row = s.get(m.WebhookDelivery, id)
            assert row is not None
            s.refresh(row)
            return _delivery(row)

    def mark_delivered(
        self, id: int, status_code: int, *, at: datetime | None = None
    ) -> DeliveryRecord:
        """One more attempt, answered `status_code` (2xx): the delivery is done."""
        now = _aware(at, "at")
        with self._store.write() as s:
            row = self._pending(s, id)
            row.attempts += 1
            row.status = "delivered"
            row.last_status_code = int(status_code)
            row.last_error = None
            row.next_attempt_at = None
            row.delivered_at = now
            s.flush()
            return _delivery(row)

    def mark_failed_attempt(
        self,
        id: int,
        status_code: int | None,
        error: str,
        next_attempt_at: datetime | None,
    ) -> DeliveryRecord:
        """One more attempt that failed (status_code None: no HTTP answer). With
        next_attempt_at the delivery stays pending until then; None: it failed for good."""
        nxt = _aware(next_attempt_at, "next_attempt_at") if next_attempt_at is not None else None
        with self._store.write() as s:
            row = self._pending(s, id)
            row.attempts += 1
            row.last_status_code = int(status_code) if status_code is not None else None
            row.last_error = str(error)[:MAX_ERROR]
            row.next_attempt_at = nxt
            if nxt is None:
                row.status = "failed"
            s.flush()
            return _delivery(row)

    def list_deliveries(
        self,
        webhook_id: int,
        *,
        limit: int = 100,
        after_id: int | None = None,
        status: str | None = None,
    ) -> builtins.list[DeliveryRecord]:
        """A webhook's delivery log in id order (oldest first), `limit` rows after `after_id`."""
        if status is not None and status not in DELIVERY_STATES:
            raise InvalidInputError(
                f"unknown delivery status {status!r}; expected one of {', '.join(DELIVERY_STATES)}"
            )
        q = (
            select(m.WebhookDelivery)
            .where(m.WebhookDelivery.webhook_id == webhook_id)
            .order_by(m.WebhookDelivery.id)
            .limit(_limit(limit))
        )
        if after_id is not None:
            q = q.where(m.WebhookDelivery.id > after_id)
        if status is not None:
            q = q.where(m.WebhookDelivery.status == status)
        with self._store.read() as s:
            if s.get(m.Webhook, webhook_id) is None:
                raise UnknownWebhookError(f"no webhook with id {webhook_id}")
            return [_delivery(r) for r in s.scalars(q)]

    def counts(self, webhook_id: int | None = None) -> dict[str, int]:
        """Deliveries per status (every status present, 0 if none), of one webhook or all."""
        q = select(m.WebhookDelivery.status, func.count()).group_by(m.WebhookDelivery.status)
        if webhook_id is not None:
            q = q.where(m.WebhookDelivery.webhook_id == webhook_id)
        out = dict.fromkeys(DELIVERY_STATES, 0)
        with self._store.read() as s:
            for status, n in s.execute(q):
                out[status] = int(n)
        return out

    @staticmethod
    def _pending(s: Session, id: int) -> m.WebhookDelivery:
        row = s.get(m.WebhookDelivery, id)
        if row is None:
            raise UnknownDeliveryError(f"no webhook delivery with id {id}")
        if row.status != "pending":
            raise InvalidTransitionError(f"webhook delivery {id} is {row.status}, not pending")
        return row


__all__ = [
    "DELIVERY_STATES",
    "DeliveryRecord",
    "UnknownDeliveryError",
    "UnknownWebhookError",
    "WebhookRecord",
    "WebhookRepository",
    "redact_url",
    "validate_events",
    "validate_url",
]
