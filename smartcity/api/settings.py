"""API settings: a dataclass filled from appliance.yaml's `api:` block and the environment.

Environment variables (SMARTCITY_API_<FIELD>, upper case) win over the file, the file over the
defaults. Every value is checked at start; ApiSettingsError names the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "SMARTCITY_API_"
MAX_WORKERS = 64


#: api.workers when not set: one process, enough for the measured console load; more raise
#: throughput for a read-heavy integrator load (docs/api.md, "Worker processes").
DEFAULT_WORKERS = 1


class ApiSettingsError(ValueError):
    """A bad API setting; the message names the field."""


@dataclass(frozen=True)
class ApiSettings:
    data_dir: str = "./data"  # the SQLite database and evidence live here
    db_url: str | None = None  # else $SMARTCITY_DB_URL, else sqlite:///<data_dir>/smartcity.db
    host: str = "127.0.0.1"
    port: int = 8080
    run_dir: str | None = None  # the bus run directory (ipc://); None: no live bus
    # uvicorn worker processes sharing the port (docs/api.md, "Worker processes")
    workers: int = DEFAULT_WORKERS
    # sessions and tokens
    session_hours: float = 12.0
    token_hours: float = 24.0
    cookie_secure: bool = False  # set true behind TLS
    # login protection
    login_per_minute: int = 10  # per client address
    lock_after: int = 5  # failed logins in a row lock the account ...
    lock_minutes: float = 15.0  # ... for this long
    # limits
    max_body_bytes: int = 8 * 1024 * 1024  # crash-record CSV uploads are the largest bodies
    max_page: int = 500
    max_in_flight: int = 256  # requests being served at once; beyond: 429
    key_rate_per_minute: int = 600  # API keys without their own rate
    ws_max_connections: int = 200
    ws_max_per_user: int = 20
    ws_max_message_bytes: int = 4096
    ws_queue: int = 256  # events buffered per live connection before it is dropped
    # live view
    mjpeg_fps: float = 2.0
    snapshot_timeout_s: float = 2.0
    # webhooks
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 2.0  # first retry; doubles each time, capped at 10 minutes
    # created when the database has no user: print the admin's one-time password
    bootstrap_admin: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls, block: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> ApiSettings:
        """Defaults, then the `api:` block of appliance.yaml, then SMARTCITY_API_* variables."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        names = {f.name: f for f in fields(cls) if f.name != "extra"}
        for k, v in (block or {}).items():
            if k not in names:
                raise ApiSettingsError(f"api.{k}: unknown setting; known: {', '.join(names)}")
            values[k] = v
        for name in names:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        out = cls()
        converted: dict[str, Any] = {}
        for name, value in values.items():
            converted[name] = _convert(name, getattr(out, name), names[name].type, value)
        return replace(out, **converted).checked()

    def checked(self) -> ApiSettings:
        positive = (
            "session_hours",
            "token_hours",
            "login_per_minute",
            "lock_after",
            "lock_minutes",
            "max_body_bytes",
            "max_page",
            "max_in_flight",
            "key_rate_per_minute",
            "ws_max_connections",
            "ws_max_per_user",
            "ws_max_message_bytes",
            "ws_queue",
            "mjpeg_fps",
            "snapshot_timeout_s",
            "webhook_timeout_s",
            "webhook_max_attempts",
            "webhook_backoff_s",
        )
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ApiSettingsError(f"api.{name}: must be a positive number, got {v!r}")
        w = self.workers
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_WORKERS:
            raise ApiSettingsError(
                f"api.workers: a whole number from 1 to {MAX_WORKERS}, got {w!r}"
            )
        if not 0 < self.port < 65536:
            raise ApiSettingsError(f"api.port: {self.port} is not a TCP port (1-65535)")
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _convert(name: str, default: Any, annotation: Any, value: Any) -> Any:
    kind = type(default) if default is not None else str
    if "bool" in str(annotation) and kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ApiSettingsError(f"api.{name}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ApiSettingsError(f"api.{name}: expected a number, got {value!r}")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ApiSettingsError(f"api.{name}: expected a whole number, got {value!r}")
        try:
            return kind(value) if kind is float or isinstance(value, int | str) else kind(value)
        except (TypeError, ValueError):
            raise ApiSettingsError(f"api.{name}: expected a number, got {value!r}") from None
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise ApiSettingsError(f"api.{name}: expected text, got {type(value).__name__}")
    return str(value)
