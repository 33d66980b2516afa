"""What every controller uses: the caller, the store, the audit log, camera visibility."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException, ValidationException

from smartcity.api.security import Principal, client_ip
from smartcity.api.settings import ApiSettings
from smartcity.store import Store

AnyRequest = Request[Any, Any, Any]
AnyConnection = ASGIConnection[Any, Any, Any, Any]


def principal(conn: AnyConnection) -> Principal:
    p = conn.scope.get("user")
    if not isinstance(p, Principal):
        raise NotAuthorizedException("log in or give a bearer token or API key")
    return p


def store(conn: AnyConnection) -> Store:
    s: Store = conn.app.state.store
    return s


def settings(conn: AnyConnection) -> ApiSettings:
    s: ApiSettings = conn.app.state.settings
    return s


def audit(
    conn: AnyConnection,
    action: str,
    *,
    target: str | None = None,
    outcome: str = "ok",
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """One audit row (sync: call from a handler running in a thread)."""
    if actor is None:
        p = conn.scope.get("user")
        actor = p.actor if isinstance(p, Principal) else "anonymous"
    store(conn).audit.append(
        actor, action, target=target, ip=client_ip(conn), outcome=outcome, data=data
    )


def visible_camera(conn: AnyConnection, camera_id: str) -> None:
    """404 (not 403: the camera's existence is not revealed) for a camera out of scope."""
    if not principal(conn).sees(camera_id):
        raise NotFoundException(f"no camera {camera_id!r}")


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationException(f"{name}: not an ISO 8601 date-time: {value!r}") from None
    if t.tzinfo is None:
        raise ValidationException(f"{name}: give a timezone (e.g. Z or +07:00): {value!r}")
    return t.astimezone(UTC)


def split_list(value: str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None
