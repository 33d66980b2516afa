"""Users, login sessions and API keys: the rows behind the API's authentication.

The store keeps hashes only (the password's Argon2 hash, the sha256 of a session token or an API
key); hashing and the rules (lock-out, expiry, scopes) live in smartcity/api/security.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from smartcity.store import models as m
from smartcity.store.errors import DuplicateError, InvalidInputError, NotFoundError
from smartcity.store.repositories import _aware, utcnow

if TYPE_CHECKING:
    from smartcity.store.store import Store

ROLES = ("viewer", "operator", "maintenance", "admin")
#: "leave as it is" for optional fields whose None means something (cameras: every camera)
KEEP: object = object()
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class UnknownUserError(NotFoundError):
    """No user with that id or name."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    role: str
    enabled: bool
    created_at: datetime
    cameras: tuple[str, ...] | None  # None: every camera
    password_changed_at: datetime | None
    failed_logins: int
    locked_until: datetime | None
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    user_id: int
    kind: str  # "cookie" or "bearer"
    created_at: datetime
    expires_at: datetime
    ip: str | None
    csrf: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    user_id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    cameras: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rate_per_min: int | None


def _cams(value: Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(c, str) and c for c in value):
        raise InvalidInputError(f"{what}: expected a list of camera ids or null (every camera)")
    return sorted(set(value))


def _user(row: m.User) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        role=row.role,
        enabled=row.enabled,
        created_at=row.created_at,
        cameras=tuple(row.cameras) if row.cameras is not None else None,
        password_changed_at=row.password_changed_at,
        failed_logins=row.failed_logins,
        locked_until=row.locked_until,
        password_hash=row.password_hash,
    )


def _key(row: m.ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes or ()),
        cameras=tuple(row.cameras) if row.cameras is not None else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        rate_per_min=row.rate_per_min,
    )


def _session(row: m.AuthSession) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        created_at=row.created_at,
        expires_at=row.expires_at,
        ip=row.ip,
        csrf=row.csrf,
    )


class UserRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        username: str,
        password_hash: str,
        role: str,
        *,
        cameras: Sequence[str] | None = None,
        at: datetime | None = None,
    ) -> UserRecord:
        if not isinstance(username, str) or not USERNAME.match(username):
            raise InvalidInputError(
                f"username {username!r}: 1-128 characters, letters, digits and _ . @ -"
            )
        if role not in ROLES:
            raise InvalidInputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        now = _aware(at, "at")
        row = m.User(
            username=username,
            password_hash=password_hash,
            role=role,
            enabled=True,
            created_at=now,
            cameras=_cams(cameras, "cameras"),
            password_changed_at=now,
            failed_logins=0,
        )
        try:
            with self._store.write() as s:
                s.add(row)
                s.flush()
                return _user(row)
        except IntegrityError:
            raise DuplicateError(f"user {username!r} exists already") from None

    def count(self) -> int:
        with self._store.read() as s:
            return len(s.scalars(select(m.User.id)).all())

    def get(self, id: int) -> UserRecord:
        with self._store.read() as s:
            row = s.get(m.User, id)
            if row is None:
                raise UnknownUserError(f"no user with id {id}")
            return _user(row)

    def by_name(self, username: str) -> UserRecord | None:
        with self._store.read() as s:
            row = s.scalars(select(m.User).where(m.User.username == username)).first()
            return _user(row) if row is not None else None

    def list(self) -> builtins.list[UserRecord]:
        with self._store.read() as s:
            return [_user(r) for r in s.scalars(select(m.User).order_by(m.User.id))]

    def update(
        self,
        id: int,
        *,
        role: str | None = None,
        enabled: bool | None = None,
        cameras: Sequence[str] | None | object = KEEP,
    ) -> UserRecord:
        """Change what is given; `cameras=None` means every camera, KEEP leaves them."""
        if role is not None and role not in ROLES:
            raise InvalidInputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        with self._store.write() as s:
            row = s.get(m.User, id)
            if row is None:
                raise UnknownUserError(f"no user with id {id}")
            if role is not None:
                row.role = role
            if enabled is not None:
                row.enabled = enabled
            if cameras is not KEEP:
                row.cameras = _cams(cameras, "cameras")  # type: ignore[arg-type]
            s.flush()
            return _user(row)

    def set_password(self, id: int, password_hash: str, *, at: datetime | None = None) -> None:
        """New hash; every session of the user ends and older tokens are refused from now."""
        now = _aware(at, "at")
        with self._store.write() as s:
            row = s.get(m.User, id)
            if row is None:
                raise UnknownUserError(f"no user with id {id}")
            row.password_hash = password_hash
            row.password_changed_at = now
            row.failed_logins = 0
            row.locked_until = None
            s.execute(delete(m.AuthSession).where(m.AuthSession.user_id == id))

    def record_login(
        self, id: int, *, ok: bool, lock_after: int, lock_for_s: float, at: datetime | None = None
    ) -> UserRecord:
        """Count a failed login (locking the account after `lock_after` in a row) or clear the
        count after a good one."""
        now = _aware(at, "at")
        with self._store.write() as s:
            row = s.get(m.User, id)
            if row is None:
                raise UnknownUserError(f"no user with id {id}")
            if ok:
                row.failed_logins = 0
                row.locked_until = None
            else:
                row.failed_logins += 1
                if row.failed_logins >= lock_after:
                    row.locked_until = now + timedelta(seconds=lock_for_s)
                    row.failed_logins = 0
            s.flush()
            return _user(row)

    def delete(self, id: int) -> None:
        with self._store.write() as s:
            row = s.get(m.User, id)
            if row is None:
                raise UnknownUserError(f"no user with id {id}")
            s.delete(row)


class SessionRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        user_id: int,
        token_hash: str,
        *,
        kind: str,
        expires_at: datetime,
        csrf: str | None = None,
        ip: str | None = None,
        at: datetime | None = None,
    ) -> SessionRecord:
        if kind not in ("cookie", "bearer"):
            raise InvalidInputError(f"session kind {kind!r}: expected cookie or bearer")
        row = m.AuthSession(
            user_id=user_id,
            token_hash=token_hash,
            kind=kind,
            csrf=csrf,
            created_at=_aware(at, "at"),
            expires_at=_aware(expires_at, "expires_at"),
            ip=ip,
        )
        with self._store.write() as s:
            s.add(row)
            s.flush()
            return _session(row)

    def by_hash(self, token_hash: str) -> SessionRecord | None:
        with self._store.read() as s:
            row = s.scalars(
                select(m.AuthSession).where(m.AuthSession.token_hash == token_hash)
            ).first()
            return _session(row) if row is not None else None

    def delete(self, id: int) -> None:
        with self._store.write() as s:
            s.execute(delete(m.AuthSession).where(m.AuthSession.id == id))

    def delete_expired(self, *, at: datetime | None = None) -> int:
        now = _aware(at, "at")
        with self._store.write() as s:
            res = s.execute(delete(m.AuthSession).where(m.AuthSession.expires_at <= now))
            return int(getattr(res, "rowcount", 0) or 0)


class ApiKeyRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        user_id: int,
        name: str,
        *,
        prefix: str,
        key_hash: str,
        scopes: Sequence[str],
        cameras: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        rate_per_min: int | None = None,
        at: datetime | None = None,
    ) -> ApiKeyRecord:
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise InvalidInputError("api key name: 1-128 characters")
        row = m.ApiKey(
            user_id=user_id,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            scopes=sorted(set(scopes)),
            cameras=_cams(cameras, "cameras"),
            created_at=_aware(at, "at"),
            expires_at=_aware(expires_at, "expires_at") if expires_at is not None else None,
            rate_per_min=rate_per_min,
        )
        try:
            with self._store.write() as s:
                if s.get(m.User, user_id) is None:
                    raise UnknownUserError(f"no user with id {user_id}")
                s.add(row)
                s.flush()
                return _key(row)
        except IntegrityError:
            raise DuplicateError("an api key with that hash exists already") from None

    def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        with self._store.read() as s:
            row = s.scalars(select(m.ApiKey).where(m.ApiKey.key_hash == key_hash)).first()
            return _key(row) if row is not None else None

    def get(self, id: int) -> ApiKeyRecord:
        with self._store.read() as s:
            row = s.get(m.ApiKey, id)
            if row is None:
                raise NotFoundError(f"no api key with id {id}")
            return _key(row)

    def list(self, *, user_id: int | None = None) -> builtins.list[ApiKeyRecord]:
        q = select(m.ApiKey).order_by(m.ApiKey.id)
        if user_id is not None:
            q = q.where(m.ApiKey.user_id == user_id)
        with self._store.read() as s:
            return [_key(r) for r in s.scalars(q)]

    def revoke(self, id: int, *, at: datetime | None = None) -> ApiKeyRecord:
        with self._store.write() as s:
            row = s.get(m.ApiKey, id)
            if row is None:
                raise NotFoundError(f"no api key with id {id}")
            if row.revoked_at is None:
                row.revoked_at = _aware(at, "at")
            s.flush()
            return _key(row)

    def touch(self, id: int, *, at: datetime | None = None) -> None:
        with self._store.write() as s:
            s.execute(
                update(m.ApiKey).where(m.ApiKey.id == id).values(last_used_at=_aware(at, "at"))
            )


__all__ = [
    "KEEP",
    "ROLES",
    "ApiKeyRecord",
    "ApiKeyRepository",
    "SessionRecord",
    "SessionRepository",
    "UnknownUserError",
    "UserRecord",
    "UserRepository",
    "utcnow",
]
