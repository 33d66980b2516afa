"""Who is calling: passwords (Argon2id), session tokens, API keys, the authentication middleware.

Credentials a request may carry, tried in this order:
- `Authorization: Bearer sct_...` a token from POST /api/v1/auth/token, or `Bearer sck_...` an
  API key (also `X-API-Key: sck_...`);
- the `smartcity_session` cookie from POST /api/v1/auth/login (web pages), whose unsafe requests
  must carry the session's CSRF token in `X-CSRF-Token` (policy.authorize checks it).

Only sha256 hashes of tokens and keys are stored. A token or cookie issued before the user's last
password change is refused, as is anything of a disabled or locked user, a revoked or expired
key. Lookups are cached for a few seconds per token; the cache is emptied on every logout,
password change, user change and key revocation made through the API, in every API process
(Authenticator's shared generation).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

if TYPE_CHECKING:
    from smartcity.api.shared import SharedCounter
    from smartcity.store import Store

SESSION_COOKIE = "smartcity_session"
CSRF_COOKIE = "smartcity_csrf"
CSRF_HEADER = "x-csrf-token"
TOKEN_PREFIX = "sct_"
KEY_PREFIX = "sck_"
MIN_PASSWORD = 10
MAX_PASSWORD = 256
_CACHE_S = 5.0

_hasher = PasswordHasher()  # Argon2id with the library's current defaults (RFC 9106 low-memory)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash to check against when the user does not exist, so both answers take the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def burn_verify(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def password_problem(password: Any) -> str | None:
    """Why a new password is refused, or None."""
    if not isinstance(password, str):
        return "password must be text"
    if len(password) < MIN_PASSWORD:
        return f"password too short: at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"password too long: at most {MAX_PASSWORD} characters"
    if len(set(password)) < 4:
        return "password too simple: use at least 4 different characters"
    return None


def new_password() -> str:
    return secrets.token_urlsafe(18)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_session_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """(the key, shown once; its prefix, kept to tell keys apart)."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request."""

    kind: str  # "session" (cookie), "token" (bearer) or "key"
    user_id: int
    username: str
    role: str
    cameras: frozenset[str] | None  # None: every camera
    scopes: frozenset[str] | None = None  # API keys only
    key_id: int | None = None
    session_id: int | None = None
    csrf: str | None = None
    rate_per_min: int | None = None

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        if self.key_id is not None:
            return f"key:{self.key_id}:{self.username}"
        return f"user:{self.username}"

    def sees(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras

    def camera_filter(self) -> list[str] | None:
        return sorted(self.cameras) if self.cameras is not None else None


def _scope_cameras(
    user: tuple[str, ...] | None, key: tuple[str, ...] | None
) -> frozenset[str] | None:
    if user is None and key is None:
        return None
    if user is None:
        return frozenset(key or ())
    if key is None:
        return frozenset(user)
    return frozenset(user) & frozenset(key)


class Authenticator:
    """Resolves a presented token or key into a Principal (or None), with a short cache.

    `generation` (a smartcity.api.shared.SharedCounter) is shared by the API's processes:
    forget() bumps it and every process empties its cache when it sees it change, so a logout
    or a revoked key is refused at once by every worker, not only by the one that handled it."""

    def __init__(self, store: Store, generation: SharedCounter | None = None) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._generation = generation
        self._seen = generation.value() if generation is not None else 0

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
            if self._generation is not None:
                self._seen = self._generation.bump()

    def _check_generation(self) -> None:
        """Empty the cache when another process asked to forget (call with the lock held)."""
        if self._generation is not None:
            now = self._generation.value()
            if now != self._seen:
                self._cache.clear()
                self._seen = now

    def cached(self, presented: str, *, kind: str) -> tuple[bool, Principal | None]:
        """(hit, principal) from the cache alone: no database, safe on the event loop."""
        ck = f"{kind}:{token_hash(presented)}"
        with self._lock:
            self._check_generation()
            hit = self._cache.get(ck)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def resolve(self, presented: str, *, kind: str) -> Principal | None:
        h = token_hash(presented)
        ck = f"{kind}:{h}"
        now = time.monotonic()
        with self._lock:
            self._check_generation()
            hit = self._cache.get(ck)
            if hit is not None and hit[0] > now:
                return hit[1]
            seen = self._seen
        principal = self._load(presented, h, kind)
        with self._lock:
            self._check_generation()
            if len(self._cache) > 10_000:
                self._cache.clear()
            if self._seen == seen:  # not loaded before a forget() that came meanwhile
                self._cache[ck] = (now + _CACHE_S, principal)
        return principal

    def _load(self, presented: str, h: str, kind: str) -> Principal | None:
        now = datetime.now(UTC)
        if presented.startswith(KEY_PREFIX):
            key = self.store.api_keys.by_hash(h)
            if key is None or key.revoked_at is not None:
                return None
            if key.expires_at is not None and key.expires_at <= now:
                return None
            user = self._user(key.user_id, now)
            if user is None:
                return None
            return Principal(
                kind="key",
                user_id=user.id,
                username=user.username,
                role=user.role,
                cameras=_scope_cameras(user.cameras, key.cameras),
                scopes=frozenset(key.scopes),
                key_id=key.id,
                rate_per_min=key.rate_per_min,
            )
        if not presented.startswith(TOKEN_PREFIX):
            return None
        sess = self.store.sessions.by_hash(h)
        if sess is None or sess.expires_at <= now:
            return None
        if (kind == "session") != (sess.kind == "cookie"):
            return None  # a cookie session is not a bearer token and the other way round
        user = self._user(sess.user_id, now)
        if user is None:
            return None
        if user.password_changed_at is not None and sess.created_at < user.password_changed_at:
            return None
        return Principal(
            kind=kind,
            user_id=user.id,
            username=user.username,
            role=user.role,
            cameras=frozenset(user.cameras) if user.cameras is not None else None,
            session_id=sess.id,
            csrf=sess.csrf,
        )

    def _user(self, user_id: int, now: datetime) -> Any:
        from smartcity.store.accounts import UnknownUserError

        try:
            user = self.store.users.get(user_id)
        except UnknownUserError:
            return None
        if not user.enabled:
            return None
        if user.locked_until is not None and user.locked_until > now:
            return None
        return user


def presented_credential(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, str] | None:
    """(credential, kind) from the request, kind "token"/"key" (header) or "session" (cookie)."""
    auth = connection.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return value, ("key" if value.startswith(KEY_PREFIX) else "token")
        return None
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip(), "key"
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, "session"
    return None


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Sets request.user to a Principal, or None for an anonymous caller. It never refuses:
    policy.authorize (a guard on every route) decides what an anonymous caller may do."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        cred = presented_credential(connection)
        if cred is None or len(cred[0]) > 200:
            return AuthenticationResult(user=None, auth=None)
        authn: Authenticator = connection.app.state.authenticator
        hit, principal = authn.cached(cred[0], kind=cred[1])
        if not hit:  # only a cache miss goes to the database (in a worker thread)
            principal = await anyio.to_thread.run_sync(lambda: authn.resolve(cred[0], kind=cred[1]))
        return AuthenticationResult(user=principal, auth=cred[1] if principal else None)


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    client = connection.client
    return client.host if client else None
