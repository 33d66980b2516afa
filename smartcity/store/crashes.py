"""Imported historical crash records (filled by the road-safety work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smartcity.store.store import Store


class CrashRepository:
    def __init__(self, store: Store) -> None:
        self._store = store
