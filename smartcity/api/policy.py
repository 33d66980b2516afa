"""Deny by default: every route names a permission in its `opt={"perm": ...}`; this table says
which roles hold it and which scope an API key needs for it. A route without a permission, or
with one not in the table, answers 403 to everyone (and tests/api/test_policy.py fails).

Roles (docs/api.md has the matrix):
- viewer: looks (cameras, live pictures, incidents and their evidence, traffic, road safety);
- operator: a viewer who acts on incidents (acknowledge, assign, resolve, dismiss, notes, legal
  hold) and exports them for investigators;
- maintenance: keeps the system running (cameras and their geometry, health, metrics, live
  pictures) but does not see incidents or evidence;
- admin: everything, users, API keys, webhooks and the audit log included.
API keys act for their user with the intersection of the user's role and the key's scopes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler

from smartcity.api.security import CSRF_HEADER, Principal

ROLES = ("viewer", "operator", "maintenance", "admin")
PUBLIC = "public"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

VIEW, OPER, MAINT, ADMIN = "viewer", "operator", "maintenance", "admin"


@dataclass(frozen=True)
class Permission:
    roles: frozenset[str]
    scope: str | None  # the API key scope that grants it; None: keys never hold it
    users_only: bool = False  # a person's own session only (password change, logout)


def _p(roles: tuple[str, ...], scope: str | None, users_only: bool = False) -> Permission:
    return Permission(frozenset(roles), scope, users_only)


PERMISSIONS: dict[str, Permission] = {
    "self": _p((VIEW, OPER, MAINT, ADMIN), None, users_only=True),
    "cameras.read": _p((VIEW, OPER, MAINT, ADMIN), "cameras:read"),
    "cameras.write": _p((MAINT, ADMIN), "cameras:write"),
    "live.read": _p((VIEW, OPER, MAINT, ADMIN), "live:read"),
    "incidents.read": _p((VIEW, OPER, ADMIN), "incidents:read"),
    "incidents.act": _p((OPER, ADMIN), "incidents:write"),
    "incidents.export": _p((OPER, ADMIN), "incidents:export"),
    "evidence.read": _p((VIEW, OPER, ADMIN), "evidence:read"),
    "traffic.read": _p((VIEW, OPER, MAINT, ADMIN), "traffic:read"),
    "roadsafety.read": _p((VIEW, OPER, ADMIN), "roadsafety:read"),
    "roadsafety.write": _p((ADMIN,), "roadsafety:write"),
    "system.read": _p((VIEW, OPER, MAINT, ADMIN), "system:read"),
    "metrics.read": _p((MAINT, ADMIN), "metrics:read"),
    "webhooks.manage": _p((ADMIN,), "webhooks:write"),
    "users.manage": _p((ADMIN,), None),
    "keys.manage": _p((ADMIN,), None),
    "audit.read": _p((ADMIN,), "audit:read"),
    "system.logs": _p((MAINT, ADMIN), "logs:read"),
    "system.models": _p((MAINT, ADMIN), "system:read"),
    "system.resources": _p((MAINT, ADMIN), "system:read"),  # CPU, memory, disk, GPUs
    "system.control": _p((ADMIN,), None),  # restart a service: people only
    # the database with every password and key hash: people only, never a key
    "system.backup": _p((ADMIN,), None),
}

SCOPES = tuple(sorted({p.scope for p in PERMISSIONS.values() if p.scope}))


def allowed(principal: Principal, perm: str) -> bool:
    p = PERMISSIONS.get(perm)
    if p is None or principal.role not in p.roles:
        return False
    if principal.kind == "key":
        return not p.users_only and p.scope is not None and p.scope in (principal.scopes or ())
    return True


class RateLimiter:
    """Token buckets per key: `rate` events per minute, bursts up to `rate`."""

    def __init__(self) -> None:
        self._buckets: dict[Any, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: Any, rate_per_min: float, now: float | None = None) -> float:
        """0.0 when allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        rate = rate_per_min / 60.0
        with self._lock:
            level, last = self._buckets.get(key, (float(rate_per_min), now))
            level = min(float(rate_per_min), level + (now - last) * rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            return (1.0 - level) / rate


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard on every route (registered on the app). A coroutine although it never waits:
    Litestar runs a plain function guard in a worker thread, a thread hop on every request
    (bench/api.py)."""
    perm = handler.opt.get("perm")
    if perm == PUBLIC:
        return
    if perm not in PERMISSIONS:
        raise PermissionDeniedException("no access rule for this endpoint")
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("log in or give a bearer token or API key")
    if not allowed(principal, perm):
        raise PermissionDeniedException(f"{principal.role} may not do this ({perm})")
    method = connection.scope.get("method")
    if principal.kind == "session" and method is not None and method not in _SAFE:
        sent = connection.headers.get(CSRF_HEADER)
        if not sent or not principal.csrf or sent != principal.csrf:
            raise PermissionDeniedException("missing or wrong X-CSRF-Token for this session")
    if principal.kind == "key":
        settings = connection.app.state.settings
        limiter: RateLimiter = connection.app.state.key_limiter
        wait = limiter.take(
            ("key", principal.key_id), principal.rate_per_min or settings.key_rate_per_minute
        )
        if wait > 0:
            raise TooManyRequestsException(
                "API key rate limit reached", headers={"Retry-After": str(int(wait) + 1)}
            )
