"""Accounts: logins, users, API keys, audit rows."""

from __future__ import annotations

from typing import Annotated

import msgspec

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Role = Annotated[str, msgspec.Meta(pattern="^(viewer|operator|maintenance|admin)$")]
CameraIds = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=10000)
]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password


class LoginResult(msgspec.Struct):
    username: str
    role: str
    expires_at: str
    csrf_token: str | None = None  # cookie logins: send it back in X-CSRF-Token
    token: str | None = None  # bearer logins: the token (shown once)


class Me(msgspec.Struct):
    username: str
    role: str
    kind: str
    cameras: list[str] | None
    scopes: list[str] | None


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True):
    new_password: Password


class User(msgspec.Struct):
    id: int
    username: str
    role: str
    enabled: bool
    cameras: list[str] | None
    created_at: str
    password_changed_at: str | None
    locked_until: str | None


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Password
    role: Role
    cameras: CameraIds | None = None


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | None = None
    enabled: bool | None = None
    cameras: CameraIds | None | msgspec.UnsetType = msgspec.UNSET


class ApiKey(msgspec.Struct):
    id: int
    user: str
    name: str
    prefix: str
    scopes: list[str]
    cameras: list[str] | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    rate_per_min: int | None


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    scopes: Annotated[list[str], msgspec.Meta(min_length=1, max_length=64)]
    username: Username | None = None  # whose key (default: the caller)
    cameras: CameraIds | None = None
    expires_in_days: Annotated[float, msgspec.Meta(gt=0, le=3650)] | None = 90.0
    rate_per_min: Annotated[int, msgspec.Meta(ge=1, le=100000)] | None = None


class ApiKeyCreated(msgspec.Struct):
    key: str  # shown once
    api_key: ApiKey


class KeyScopes(msgspec.Struct):
    scopes: list[str]  # every scope there is
    roles: dict[str, list[str]]  # role -> the scopes a key of a user with that role may hold


class AuditEntry(msgspec.Struct):
    id: int
    at: str
    actor: str
    action: str
    target: str | None
    ip: str | None
    outcome: str
    data: dict[str, object] | None
    hash: str | None
