"""An API on a fresh SQLite store with one user per role, for tests.

def test_x(api):
    r = api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from smartcity.api import ApiSettings, create_app
from smartcity.api.hub import Hub
from smartcity.api.security import hash_password
from smartcity.store import Store

ROLES = ("viewer", "operator", "maintenance", "admin")
#: users made by the fixture: name -> (role, cameras)
USERS: dict[str, tuple[str, list[str] | None]] = {
    "viewer": ("viewer", None),
    "operator": ("operator", None),
    "maintenance": ("maintenance", None),
    "admin": ("admin", None),
    "op1": ("operator", ["cam1"]),  # restricted to cam1
}


def password(name: str) -> str:
    return f"pw-{name}-0123456789"


@functools.cache
def _hash(name: str) -> str:
    return hash_password(password(name))


@dataclass
class Api:
    app: Litestar
    client: TestClient[Litestar]
    store: Store
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            r = self.client.post(
                "/api/v1/auth/token", json={"username": user, "password": password(user)}
            )
            assert r.status_code == 200, r.text
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def incident(self, camera: str = "cam1", type: str = "wrong_way", **kw: Any) -> str:
        at = kw.pop("at", datetime.now(UTC) - timedelta(seconds=5))
        r = self.store.incidents.create(
            type=type, camera_id=camera, key=kw.pop("key", uuid.uuid4().hex),
            severity=kw.pop("severity", "high"), at=at, **kw,
        )  # fmt: skip
        return r.id


def _seeded_store(tmp_path: Path) -> tuple[Path, Store]:
    """A fresh store under tmp_path/data with the USERS and two cameras (cam1, cam2)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    store = Store.open(data_dir=data)
    for name, (role, cams) in USERS.items():
        store.users.add(name, _hash(name), role, cameras=cams)
    for cam in ("cam1", "cam2"):
        store.cameras.add(cam, f"Camera {cam}", f"rtsp://user:secret@10.0.0.{cam[-1]}/live")
    return data, store


def make_api(tmp_path: Path, hub: Hub | None = None, **settings: Any) -> Iterator[Api]:
    data, store = _seeded_store(tmp_path)
    app = create_app(ApiSettings(data_dir=str(data), **settings), store=store, hub=hub)
    try:
        with TestClient(app) as client:
            yield Api(app=app, client=client, store=store, data_dir=data)
    finally:
        store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


class ServedApi:
    """The app served by uvicorn on 127.0.0.1 (a free port) in a thread, for clients that need a
    real socket (schemathesis, browsers, other processes)."""

    def __init__(self, app: Litestar) -> None:
        import socket
        import threading

        import uvicorn

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(cfg)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> ServedApi:
        import time

        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


def make_served(tmp_path: Path, **settings: Any) -> Iterator[tuple[ServedApi, Store]]:
    """Like make_api, but served over HTTP; yields (served, store)."""
    data, store = _seeded_store(tmp_path)
    app = create_app(ApiSettings(data_dir=str(data), **settings), store=store)
    try:
        with ServedApi(app) as served:
            yield served, store
    finally:
        store.close()


def api_only_appliance(run_dir: Path, port: int, **api: Any) -> dict[str, Any]:
    """An appliance.yaml document for `smartcity run` with the API alone (engine and incidents
    service off) on `port`, restarts after 0.2 s."""
    return {
        "data_dir": "data",
        "run_dir": str(run_dir),
        "log": {"file": "smartcity.log"},
        "services": {"engine": {"enabled": False}, "incidents": {"enabled": False}},
        "api": {"port": port, **api},
        "restart": {"initial_s": 0.2},
    }
