"""Webhook subscriptions and their delivery log (filled by the webhooks work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smartcity.store.store import Store


class WebhookRepository:
    def __init__(self, store: Store) -> None:
        self._store = store
