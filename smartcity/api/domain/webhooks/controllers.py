"""Webhook subscriptions, their delivery log, and a test delivery (docs/webhooks.md).
The secret is write-only: generated and shown once when none is given, never returned after."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter

from smartcity.api.domain.common import AnyRequest, audit, iso, principal, store
from smartcity.store.accounts import KEEP
from smartcity.store.webhooks import DeliveryRecord, WebhookRecord, redact_url

Patterns = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]],
    msgspec.Meta(min_length=1, max_length=64),
]
Cams = Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
                 msgspec.Meta(max_length=10000)]  # fmt: skip
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=128)]


class Webhook(msgspec.Struct):
    id: int
    name: str
    url_redacted: str
    events: list[str]
    cameras: list[str] | None
    enabled: bool
    created_by: str | None
    created_at: str
    deliveries: dict[str, int]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Patterns
    secret: Secret | None = None
    cameras: Cams | None = None
    enabled: bool = True


class WebhookCreated(msgspec.Struct):
    webhook: Webhook
    secret: str  # shown once


class WebhookUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    events: Patterns | None = None
    secret: Secret | None = None
    cameras: Cams | None | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | None = None


class Delivery(msgspec.Struct):
    id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None


def _out(request: AnyRequest, w: WebhookRecord) -> Webhook:
    return Webhook(
        id=w.id, name=w.name, url_redacted=redact_url(w.url), events=list(w.events),
        cameras=list(w.cameras) if w.cameras is not None else None, enabled=w.enabled,
        created_by=w.created_by, created_at=w.created_at.isoformat(),
        deliveries=store(request).webhooks.counts(w.id),
    )  # fmt: skip


def _delivery(d: DeliveryRecord) -> Delivery:
    return Delivery(
        id=d.id, event_id=d.event_id, event_type=d.event_type, status=d.status,
        attempts=d.attempts, next_attempt_at=iso(d.next_attempt_at),
        last_status_code=d.last_status_code, last_error=d.last_error,
        created_at=d.created_at.isoformat(), delivered_at=iso(d.delivered_at),
    )  # fmt: skip


def _get(request: AnyRequest, webhook_id: int) -> WebhookRecord:
    try:
        return store(request).webhooks.get(webhook_id)
    except LookupError:
        raise NotFoundException(f"no webhook {webhook_id}") from None


class WebhooksController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    opt = {"perm": "webhooks.manage"}

    @get("/", sync_to_thread=True)
    def list_webhooks(self, request: AnyRequest) -> list[Webhook]:
        return [_out(request, w) for w in store(request).webhooks.list()]

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        summary="Subscribe; the signing secret is in the answer (generated if not given)",
    )
    def create_webhook(self, request: AnyRequest, data: JSONBody[WebhookCreate]) -> WebhookCreated:
        secret = data.secret or secrets.token_urlsafe(32)
        w = store(request).webhooks.add(
            data.name, data.url, secret, data.events, data.cameras,
            created_by=principal(request).actor, enabled=data.enabled,
        )  # fmt: skip
        audit(request, "webhook.create", target=f"webhook:{w.id}",
              data={"url": redact_url(w.url), "events": list(w.events)})  # fmt: skip
        return WebhookCreated(webhook=_out(request, w), secret=secret)

    @get("/{webhook_id:int}", sync_to_thread=True)
    def get_webhook(self, request: AnyRequest, webhook_id: FromPath[int]) -> Webhook:
        return _out(request, _get(request, webhook_id))

    @patch("/{webhook_id:int}", sync_to_thread=True)
    def update_webhook(
        self, request: AnyRequest, webhook_id: FromPath[int], data: JSONBody[WebhookUpdate]
    ) -> Webhook:
        _get(request, webhook_id)
        cams: Any = KEEP if data.cameras is msgspec.UNSET else data.cameras
        w = store(request).webhooks.update(
            webhook_id, name=data.name, url=data.url, events=data.events, cameras=cams,
            enabled=data.enabled, secret=data.secret,
        )  # fmt: skip
        fields = ("name", "url", "events", "secret", "enabled")
        changed = [k for k in fields if getattr(data, k) is not None]
        if cams is not KEEP:
            changed.append("cameras")
        audit(request, "webhook.update", target=f"webhook:{webhook_id}",
              data={"changed": changed})  # fmt: skip
        if data.enabled:
            request.app.state.webhooks.wake()
        return _out(request, w)

    @delete("/{webhook_id:int}", sync_to_thread=True, status_code=204)
    def delete_webhook(self, request: AnyRequest, webhook_id: FromPath[int]) -> None:
        _get(request, webhook_id)
        store(request).webhooks.delete(webhook_id)
        audit(request, "webhook.delete", target=f"webhook:{webhook_id}")

    @get(
        "/{webhook_id:int}/deliveries",
        sync_to_thread=True,
        summary="The delivery log, oldest first; page with after_id",
    )
    def deliveries(
        self,
        request: AnyRequest,
        webhook_id: FromPath[int],
        status: Annotated[
            str | None, QueryParameter(pattern="^(pending|delivered|failed)$")
        ] = None,
        after_id: Annotated[int | None, QueryParameter(ge=0)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[Delivery]:
        _get(request, webhook_id)
        rows = store(request).webhooks.list_deliveries(
            webhook_id, limit=limit, after_id=after_id, status=status
        )
        return [_delivery(d) for d in rows]

    @post(
        "/{webhook_id:int}/test",
        sync_to_thread=True,
        status_code=202,
        summary="Queue a `webhook.test` delivery to this webhook alone",
    )
    def test_delivery(self, request: AnyRequest, webhook_id: FromPath[int]) -> Delivery:
        w = _get(request, webhook_id)
        event_id = secrets.token_hex(8)
        payload: dict[str, Any] = {
            "type": "webhook.test",
            "id": event_id,
            "camera": None,
            "data": {"webhook": w.id, "by": principal(request).actor},
        }
        d = store(request).webhooks.enqueue(w.id, event_id, "webhook.test", payload)
        request.app.state.webhooks.wake()
        audit(request, "webhook.test", target=f"webhook:{webhook_id}")
        return _delivery(d)
