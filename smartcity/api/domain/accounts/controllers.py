"""Log in and out, the caller's own account, users and API keys (admin), the audit log."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from smartcity.api.domain.accounts import schemas as s
from smartcity.api.domain.common import AnyRequest, audit, iso, principal, settings, store
from smartcity.api.policy import PERMISSIONS, ROLES, SCOPES, allowed
from smartcity.api.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    burn_verify,
    client_ip,
    hash_password,
    new_api_key,
    new_session_token,
    password_problem,
    token_hash,
    verify_password,
)
from smartcity.store.accounts import KEEP, ApiKeyRecord, UnknownUserError, UserRecord
from smartcity.store.audit import AuditRecord

FAILED = "invalid username or password, or the account is locked"


def _user(u: UserRecord) -> s.User:
    return s.User(
        id=u.id,
        username=u.username,
        role=u.role,
        enabled=u.enabled,
        cameras=list(u.cameras) if u.cameras is not None else None,
        created_at=u.created_at.isoformat(),
        password_changed_at=iso(u.password_changed_at),
        locked_until=iso(u.locked_until),
    )


def _key(k: ApiKeyRecord, username: str) -> s.ApiKey:
    return s.ApiKey(
        id=k.id,
        user=username,
        name=k.name,
        prefix=k.prefix,
        scopes=list(k.scopes),
        cameras=list(k.cameras) if k.cameras is not None else None,
        created_at=k.created_at.isoformat(),
        expires_at=iso(k.expires_at),
        revoked_at=iso(k.revoked_at),
        last_used_at=iso(k.last_used_at),
        rate_per_min=k.rate_per_min,
    )


def _audit_entry(r: AuditRecord) -> s.AuditEntry:
    return s.AuditEntry(
        id=r.id,
        at=r.at.isoformat(),
        actor=r.actor,
        action=r.action,
        target=r.target,
        ip=r.ip,
        outcome=r.outcome,
        data=r.data,
        hash=r.hash,
    )


def _granted(role: str) -> set[str]:
    """The API key scopes a user of this role can hand to a key."""
    return {p.scope for p in PERMISSIONS.values() if p.scope and role in p.roles}


def _check_password(pw: str) -> None:
    problem = password_problem(pw)
    if problem:
        raise ValidationException(problem)


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    def _login(
        self, request: AnyRequest, data: JSONBody[s.Login], kind: str
    ) -> tuple[UserRecord, Any]:
        cfg = settings(request)
        st = store(request)
        ip = client_ip(request) or "?"
        wait = request.app.state.login_limiter.take(("login", ip), cfg.login_per_minute)
        if wait > 0:
            audit(
                request,
                "login",
                target=data.username,
                outcome="denied",
                data={"reason": "rate limit"},
                actor="anonymous",
            )
            raise TooManyRequestsException(
                "too many logins from this address", headers={"Retry-After": str(int(wait) + 1)}
            )
        user = st.users.by_name(data.username)
        now = datetime.now(UTC)
        if user is None:
            burn_verify(data.password)
            audit(
                request,
                "login",
                target=data.username,
                outcome="failed",
                data={"reason": "unknown user"},
                actor="anonymous",
            )
            raise NotAuthorizedException(FAILED)
        if not user.enabled or (user.locked_until is not None and user.locked_until > now):
            burn_verify(data.password)
            audit(
                request,
                "login",
                target=user.username,
                outcome="denied",
                data={"reason": "disabled" if not user.enabled else "locked"},
                actor="anonymous",
            )
            raise NotAuthorizedException(FAILED)
        if not verify_password(user.password_hash, data.password):
            after = st.users.record_login(
                user.id, ok=False, lock_after=cfg.lock_after, lock_for_s=cfg.lock_minutes * 60
            )
            audit(
                request,
                "login",
                target=user.username,
                outcome="failed",
                data={"reason": "bad password", "locked": after.locked_until is not None},
                actor="anonymous",
            )
            raise NotAuthorizedException(FAILED)
        st.users.record_login(user.id, ok=True, lock_after=cfg.lock_after, lock_for_s=0)
        hours = cfg.session_hours if kind == "cookie" else cfg.token_hours
        return user, now + timedelta(hours=hours)

    @post(
        "/login",
        opt={"perm": "public"},
        sync_to_thread=True,
        status_code=200,
        summary="Log in for the web pages: a session cookie and its CSRF token",
    )
    def login(self, request: AnyRequest, data: JSONBody[s.Login]) -> Response[s.LoginResult]:
        user, expires = self._login(request, data, "cookie")
        token, csrf = new_session_token(), secrets.token_urlsafe(24)
        store(request).sessions.add(
            user.id,
            token_hash(token),
            kind="cookie",
            expires_at=expires,
            csrf=csrf,
            ip=client_ip(request),
        )
        audit(
            request,
            "login",
            target=user.username,
            data={"kind": "cookie"},
            actor=f"user:{user.username}",
        )
        secure = settings(request).cookie_secure
        max_age = int((expires - datetime.now(UTC)).total_seconds())
        return Response(
            s.LoginResult(
                username=user.username,
                role=user.role,
                expires_at=expires.isoformat(),
                csrf_token=csrf,
            ),
            cookies=[
                Cookie(
                    key=SESSION_COOKIE,
                    value=token,
                    httponly=True,
                    samesite="strict",
                    secure=secure,
                    path="/",
                    max_age=max_age,
                ),
                Cookie(
                    key=CSRF_COOKIE,
                    value=csrf,
                    httponly=False,
                    samesite="strict",
                    secure=secure,
                    path="/",
                    max_age=max_age,
                ),
            ],
        )

    @post(
        "/token",
        opt={"perm": "public"},
        sync_to_thread=True,
        status_code=200,
        summary="Log in for programs: a bearer token",
    )
    def token(self, request: AnyRequest, data: JSONBody[s.Login]) -> s.LoginResult:
        user, expires = self._login(request, data, "bearer")
        token = new_session_token()
        store(request).sessions.add(
            user.id, token_hash(token), kind="bearer", expires_at=expires, ip=client_ip(request)
        )
        audit(
            request,
            "login",
            target=user.username,
            data={"kind": "bearer"},
            actor=f"user:{user.username}",
        )
        return s.LoginResult(
            username=user.username, role=user.role, expires_at=expires.isoformat(), token=token
        )

    @post("/logout", opt={"perm": "self"}, sync_to_thread=True, status_code=200)
    def logout(self, request: AnyRequest) -> Response[dict[str, str]]:
        p = principal(request)
        if p.session_id is not None:
            store(request).sessions.delete(p.session_id)
        request.app.state.authenticator.forget()
        audit(request, "logout", target=p.username)
        return Response(
            {"status": "logged out"},
            cookies=[
                Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True),
                Cookie(key=CSRF_COOKIE, value="", max_age=0, path="/"),
            ],
        )

    @get("/me", opt={"perm": "system.read"}, sync_to_thread=False)
    def me(self, request: AnyRequest) -> s.Me:
        p = principal(request)
        return s.Me(
            username=p.username,
            role=p.role,
            kind=p.kind,
            cameras=p.camera_filter(),
            scopes=sorted(p.scopes) if p.scopes is not None else None,
        )

    @post(
        "/password",
        opt={"perm": "self"},
        sync_to_thread=True,
        status_code=200,
        summary="Change one's own password; every session and token of the user ends",
    )
    def password(self, request: AnyRequest, data: JSONBody[s.PasswordChange]) -> dict[str, str]:
        p = principal(request)
        st = store(request)
        user = st.users.get(p.user_id)
        if not verify_password(user.password_hash, data.current_password):
            audit(request, "password.change", target=p.username, outcome="failed")
            raise PermissionDeniedException("the current password is wrong")
        _check_password(data.new_password)
        st.users.set_password(p.user_id, hash_password(data.new_password))
        request.app.state.authenticator.forget()
        audit(request, "password.change", target=p.username)
        return {"status": "password changed; log in again"}


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    opt = {"perm": "users.manage"}

    @get("/", sync_to_thread=True)
    def list_users(self, request: AnyRequest) -> list[s.User]:
        return [_user(u) for u in store(request).users.list()]

    @post("/", sync_to_thread=True, status_code=201)
    def create_user(self, request: AnyRequest, data: JSONBody[s.UserCreate]) -> s.User:
        _check_password(data.password)
        u = store(request).users.add(
            data.username, hash_password(data.password), data.role, cameras=data.cameras
        )
        audit(
            request,
            "user.create",
            target=u.username,
            data={"role": u.role, "cameras": data.cameras},
        )
        return _user(u)

    @get("/{user_id:int}", sync_to_thread=True)
    def get_user(self, request: AnyRequest, user_id: FromPath[int]) -> s.User:
        return _user(self._get(request, user_id))

    @staticmethod
    def _get(request: AnyRequest, user_id: int) -> UserRecord:
        try:
            return store(request).users.get(user_id)
        except UnknownUserError:
            raise NotFoundException(f"no user {user_id}") from None

    @patch("/{user_id:int}", sync_to_thread=True)
    def update_user(
        self, request: AnyRequest, user_id: FromPath[int], data: JSONBody[s.UserUpdate]
    ) -> s.User:
        self._get(request, user_id)
        cams: Any = KEEP if data.cameras is msgspec.UNSET else data.cameras
        u = store(request).users.update(user_id, role=data.role, enabled=data.enabled, cameras=cams)
        request.app.state.authenticator.forget()
        audit(
            request,
            "user.update",
            target=u.username,
            data={
                "role": data.role,
                "enabled": data.enabled,
                "cameras": None if cams is KEEP else cams,
            },
        )
        return _user(u)

    @post("/{user_id:int}/password", sync_to_thread=True, status_code=200)
    def reset_password(
        self, request: AnyRequest, user_id: FromPath[int], data: JSONBody[s.PasswordReset]
    ) -> dict[str, str]:
        u = self._get(request, user_id)
        _check_password(data.new_password)
        store(request).users.set_password(user_id, hash_password(data.new_password))
        request.app.state.authenticator.forget()
        audit(request, "user.password_reset", target=u.username)
        return {"status": "password set; the user's sessions ended"}

    @delete("/{user_id:int}", sync_to_thread=True, status_code=204)
    def delete_user(self, request: AnyRequest, user_id: FromPath[int]) -> None:
        u = self._get(request, user_id)
        if u.id == principal(request).user_id:
            raise ValidationException("an admin cannot delete their own account")
        store(request).users.delete(user_id)
        request.app.state.authenticator.forget()
        audit(request, "user.delete", target=u.username)


class KeysController(Controller):
    path = "/api/v1/keys"
    tags = ["api keys"]
    opt = {"perm": "keys.manage"}

    @get("/", sync_to_thread=True)
    def list_keys(self, request: AnyRequest) -> list[s.ApiKey]:
        st = store(request)
        names = {u.id: u.username for u in st.users.list()}
        return [_key(k, names.get(k.user_id, "?")) for k in st.api_keys.list()]

    @get(
        "/scopes",
        sync_to_thread=False,
        summary="The scopes an API key may hold, and those a key of each role's user may hold",
    )
    def key_scopes(self) -> s.KeyScopes:
        return s.KeyScopes(scopes=list(SCOPES), roles={r: sorted(_granted(r)) for r in ROLES})

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        summary="Create an API key; the key is in the answer and never again",
    )
    def create_key(self, request: AnyRequest, data: JSONBody[s.ApiKeyCreate]) -> s.ApiKeyCreated:
        st = store(request)
        unknown = sorted(set(data.scopes) - set(SCOPES))
        if unknown:
            raise ValidationException(
                f"unknown scopes {', '.join(unknown)}; known: {', '.join(SCOPES)}"
            )
        owner = (
            st.users.by_name(data.username)
            if data.username
            else st.users.get(principal(request).user_id)
        )
        if owner is None:
            raise ValidationException(f"no user {data.username!r}")
        beyond = sorted(set(data.scopes) - _granted(owner.role))
        if beyond:
            raise ValidationException(
                f"user {owner.username!r} ({owner.role}) cannot hold scopes {', '.join(beyond)}"
            )
        key, prefix = new_api_key()
        expires = (
            datetime.now(UTC) + timedelta(days=data.expires_in_days)
            if data.expires_in_days is not None
            else None
        )
        rec = st.api_keys.add(
            owner.id,
            data.name,
            prefix=prefix,
            key_hash=token_hash(key),
            scopes=data.scopes,
            cameras=data.cameras,
            expires_at=expires,
            rate_per_min=data.rate_per_min,
        )
        audit(
            request,
            "key.create",
            target=f"key:{rec.id}",
            data={"user": owner.username, "scopes": list(rec.scopes), "name": rec.name},
        )
        return s.ApiKeyCreated(key=key, api_key=_key(rec, owner.username))

    @delete("/{key_id:int}", sync_to_thread=True, status_code=204)
    def revoke_key(self, request: AnyRequest, key_id: FromPath[int]) -> None:
        st = store(request)
        try:
            st.api_keys.get(key_id)
        except LookupError:
            raise NotFoundException(f"no api key {key_id}") from None
        st.api_keys.revoke(key_id)
        request.app.state.authenticator.forget()
        audit(request, "key.revoke", target=f"key:{key_id}")


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]
    opt = {"perm": "audit.read"}

    @get("/", sync_to_thread=True)
    def list_audit(
        self,
        request: AnyRequest,
        actor: FromQuery[str | None] = None,
        action: FromQuery[str | None] = None,
        after_id: Annotated[int | None, QueryParameter(ge=0)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[s.AuditEntry]:
        rows = store(request).audit.list(actor=actor, action=action, after_id=after_id, limit=limit)
        return [_audit_entry(r) for r in rows]

    @get("/verify", sync_to_thread=True)
    def verify(self, request: AnyRequest) -> dict[str, Any]:
        problems = store(request).audit.verify()
        return {"ok": not problems, "rows": store(request).audit.count(), "problems": problems}


def principal_or_none(request: AnyRequest) -> Principal | None:
    p = request.scope.get("user")
    return p if isinstance(p, Principal) else None


__all__ = ["AuditController", "AuthController", "KeysController", "UsersController", "allowed"]
