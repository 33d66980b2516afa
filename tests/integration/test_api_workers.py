"""`smartcity api` with several worker processes (api.workers, smartcity/api/workers.py):
what must hold for the appliance and not once per process. One webhook delivery per event
(only the leader queues bus events; it runs the one dispatcher, and another worker takes over
when it dies), login lock-out and the login rate limit across workers, a logout refused at once
by the other worker, the first admin made once, a dead worker started again, SIGTERM stopping
all of them, and the same under `smartcity run`'s supervisor.

Requests are pinned to a worker by keeping one HTTP/1.1 connection each: the kernel hands a new
connection to one of the workers' SO_REUSEPORT sockets, so the test opens connections until it
holds one to each worker (GET /system/health names the pid that answered)."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from smartcity.api.security import hash_password
from smartcity.bus import Broker, HealthEvent, IncidentEvent, Publisher
from smartcity.bus.sockets import publisher_endpoint
from smartcity.store import Store
from tests.conftest import ROOT, wait_for
from tests.support.api import api_only_appliance
from tests.support.media import free_port

WAIT_S = 60.0  # time-out of the waits below (never reached when things work)
PASSWORDS = {"admin": "pw-admin-0123456789", "op": "pw-operator-0123456789"}


class Conn:
    """One keep-alive HTTP/1.1 connection (so: one worker)."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.pid = int(self.get("/api/v1/system/health", token=None, admin=True)[1]["pid"])

    admin_token: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        self.http.request(method, path, body=data, headers=headers)
        r = self.http.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw and raw[:1] in b"{[" else raw)

    def get(self, path: str, token: str | None = None, admin: bool = False) -> tuple[int, Any]:
        if admin:
            status, body = self.request("GET", path, token=Conn.admin_token)
            assert status == 200, body
            return status, body["services"]["api"] | {"webhooks": body["services"]["webhooks"]}
        return self.request("GET", path, token=token)

    def health(self) -> dict[str, Any]:
        return self.get("/api/v1/system/health", admin=True)[1]

    def close(self) -> None:
        self.http.close()


class Workers:
    """`python -m smartcity api --workers 2` on a fresh data directory."""

    def __init__(self, tmp: Path, run_dir: Path | None, **env: str) -> None:
        self.data = tmp / "data"
        self.data.mkdir()
        with Store.open(data_dir=self.data) as store:
            store.users.add("admin", hash_password(PASSWORDS["admin"]), "admin")
            store.users.add("op", hash_password(PASSWORDS["op"]), "operator")
            store.cameras.add("cam1", "Camera 1", "rtsp://10.0.0.1/live")
        self.port = free_port()
        argv = [sys.executable, "-m", "smartcity", "api", "--data-dir", str(self.data),
                "--port", str(self.port), "--workers", "2"]  # fmt: skip
        if run_dir is not None:
            argv += ["--run-dir", str(run_dir)]
        self.log = tmp / "api.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, "SMARTCITY_API_BOOTSTRAP_ADMIN": "false", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.conns: list[Conn] = []

    def start(self) -> Workers:
        self.started = time.monotonic()  # before the first login

        def answers() -> bool:
            assert self.proc.poll() is None, self.text()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("POST", "/api/v1/auth/token", body=json.dumps(
                    {"username": "admin", "password": PASSWORDS["admin"]}))  # fmt: skip
                r = c.getresponse()
                if r.status == 200:
                    Conn.admin_token = json.loads(r.read())["token"]
                c.close()
                return r.status == 200
            except OSError:
                return False

        assert wait_for(answers, WAIT_S, interval=0.2), self.text()
        return self

    def pinned(self) -> tuple[Conn, Conn]:
        """Two connections to two different workers."""
        by_pid: dict[int, Conn] = {}
        for _ in range(64):
            c = Conn(self.port)
            if c.pid in by_pid:
                c.close()
            else:
                by_pid[c.pid] = c
                self.conns.append(c)
            if len(by_pid) == 2:
                a, b = by_pid.values()
                return a, b
        raise AssertionError(f"64 connections reached only the workers {list(by_pid)}")

    def worker_pids(self) -> set[int]:
        return {p.pid for p in psutil.Process(self.proc.pid).children()}

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        for c in self.conns:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path, None, SMARTCITY_API_LOGIN_PER_MINUTE="12").start()
    try:
        yield w
    finally:
        w.stop()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _login(c: Conn, user: str, password: str) -> int:
    return c.request("POST", "/api/v1/auth/token", {"username": user, "password": password})[0]


def test_lockout_rate_limit_and_logout_hold_across_workers(workers: Workers) -> None:
    a, b = workers.pinned()
    assert a.health()["workers"] == 2 and a.pid != b.pid
    assert workers.worker_pids() == {a.pid, b.pid}
    # a token both workers have cached; a logout through one is refused at once by the other
    status, body = a.request("POST", "/api/v1/auth/token",
                             {"username": "op", "password": PASSWORDS["op"]})  # fmt: skip
    token = body["token"]
    assert a.get("/api/v1/auth/me", token)[0] == 200
    assert b.get("/api/v1/auth/me", token)[0] == 200
    assert a.request("POST", "/api/v1/auth/logout", token=token)[0] in (200, 204)
    assert b.get("/api/v1/auth/me", token)[0] == 401
    assert a.get("/api/v1/auth/me", token)[0] == 401
    # lock-out (lock_after 5): failures alternate between the workers; then even the right
    # password is refused by both (the count lives in the store)
    for i in range(5):
        assert _login((a, b)[i % 2], "op", "wrong-password-123") == 401
    assert _login(a, "op", PASSWORDS["op"]) == 401
    assert _login(b, "op", PASSWORDS["op"]) == 401
    # the per-address login rate (12 a minute here, a token back every 5 s): 9 logins so far
    # (the start's, op's, the 7 above), so about 3 more pass, whichever worker answers. One
    # bucket per worker would let at least 14 more through.
    refill = int((time.monotonic() - workers.started) / 5.0) + 1
    answers: list[int] = []
    while 429 not in answers and len(answers) < 20:
        answers.append(_login((b, a)[len(answers) % 2], "nobody", "wrong-password-123"))
    assert answers.count(401) <= 3 + refill and answers[-1] == 429, (answers, refill)
    last = (b, a)[(len(answers) - 1) % 2]
    assert _login(a if last is b else b, "nobody", "x" * 12) == 429  # the other worker too


def test_an_operator_action_reaches_the_live_feed_of_the_other_worker(workers: Workers) -> None:
    """An acknowledge through one worker: the SSE feed served by the other worker carries the
    incident.changed event (smartcity.api.shared.PeerLink), once."""
    a, b = workers.pinned()
    with Store.open(data_dir=workers.data) as store:
        iid = store.incidents.create(type="wrong_way", camera_id="cam1", key="track:1").id
    # b's keep-alive connection becomes the SSE stream (the hello comes after the subscription)
    b.http.request("GET", "/api/v1/live/events?types=incident.changed.*",
                   headers={"Authorization": f"Bearer {Conn.admin_token}"})  # fmt: skip
    stream = b.http.getresponse()
    assert stream.status == 200
    lines: list[str] = []

    def read() -> None:
        try:
            for raw in stream:
                lines.append(raw.decode().rstrip())
        except Exception:  # noqa: BLE001, S110 - the fixture closes the connection under it
            pass

    threading.Thread(target=read, daemon=True).start()
    assert wait_for(lambda: "event: hello" in lines, WAIT_S)
    status, body = a.request("POST", f"/api/v1/incidents/{iid}/acknowledge", {"text": "seen"},
                             token=Conn.admin_token)  # fmt: skip
    assert status in (200, 201), body
    assert wait_for(lambda: "event: incident.changed.wrong_way" in lines, WAIT_S), lines
    data = next(ln for ln in lines if ln.startswith("data: ") and iid in ln)
    assert json.loads(data[6:])["data"]["incident"]["state"] == "acknowledged"
    time.sleep(0.5)
    assert lines.count("event: incident.changed.wrong_way") == 1


def test_dead_worker_restarted_leader_taken_over_and_sigterm_stops_all(
    workers: Workers,
) -> None:
    a, b = workers.pinned()
    leader = a.health()["webhooks"]["dispatcher_pid"]
    assert leader in (a.pid, b.pid) and b.health()["webhooks"]["dispatcher_pid"] == leader
    survivor = b if leader == a.pid else a
    os.kill(leader, signal.SIGKILL)
    # the other worker takes the lock; the parent starts a new worker in the dead one's place
    assert wait_for(lambda: survivor.health()["webhooks"]["dispatcher_pid"] == survivor.pid,
                    WAIT_S), workers.text()  # fmt: skip
    assert wait_for(lambda: len(workers.worker_pids() - {leader}) == 2, WAIT_S), workers.text()
    assert leader not in workers.worker_pids()
    assert "ended (ended by SIGKILL)" in workers.text()
    pids = workers.worker_pids()
    t0 = time.monotonic()
    assert workers.stop() == 0, workers.text()
    print(f"2 workers stopped in {time.monotonic() - t0:.2f} s")
    assert wait_for(lambda: all(gone(p) for p in pids), WAIT_S)


class Receiver:
    """Records webhook POSTs (a stdlib HTTP server in a thread)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def types(self) -> list[str]:
        return [b["type"] for b in list(self.bodies)]


def test_two_workers_deliver_a_bus_event_to_a_webhook_once(tmp_path: Path, run_dir: Path) -> None:
    broker = Broker(run_dir).start()
    pub = Publisher(publisher_endpoint(run_dir))
    receiver = Receiver()
    w = Workers(tmp_path, run_dir)
    try:
        with Store.open(data_dir=w.data) as store:
            store.webhooks.add("ops", receiver.url, "integrator-shared-secret-0123", ["incident.*"])
        w.start()
        a, b = w.pinned()
        leader_pid = a.health()["webhooks"]["dispatcher_pid"]
        other = b if leader_pid == a.pid else a

        def bus_count(c: Conn) -> int:
            status, body = c.request("GET", "/api/v1/system/health", token=Conn.admin_token)
            return int(body["services"]["bus"].get("received", 0))

        # until both workers hear the bus (health messages are harmless to repeat)
        def both_hear() -> bool:
            pub.publish(HealthEvent(cam="cam1", seq=0, t_ns=time.time_ns(), state="running"))
            return bus_count(a) > 0 and bus_count(b) > 0

        assert wait_for(both_hear, WAIT_S, interval=0.1), w.text()
        with Store.open(data_dir=w.data) as store:  # what the incidents service does
            iid = store.incidents.create(type="wrong_way", camera_id="cam1", key="track:1").id
        before = bus_count(other)
        pub.publish(IncidentEvent(type="wrong_way", seq=1, id=iid, cam="cam1", state="open",
                                  t_ns=time.time_ns(), track_ids=(1,), score=0.9))  # fmt: skip
        assert wait_for(lambda: "incident.opened.wrong_way" in receiver.types(), WAIT_S)
        # the worker that does not lead has heard the event too ...
        assert wait_for(lambda: bus_count(other) > before, WAIT_S)
        # ... then acts on the incident: its own event, which it queues (a barrier: a delivery
        # that worker had queued for the bus event would be delivered before this one)
        status, body = other.request("POST", f"/api/v1/incidents/{iid}/acknowledge", {},
                                     token=Conn.admin_token)  # fmt: skip
        assert status == 200, body
        assert wait_for(lambda: "incident.changed.wrong_way" in receiver.types(), WAIT_S)
        assert receiver.types() == ["incident.opened.wrong_way", "incident.changed.wrong_way"]
        with Store.open(data_dir=w.data) as store:
            hook = store.webhooks.list()[0]
            rows = store.webhooks.list_deliveries(hook.id)
        assert [r.event_type for r in rows] == [
            "incident.opened.wrong_way",
            "incident.changed.wrong_way",
        ]
    finally:
        w.stop()
        receiver.server.shutdown()
        receiver.server.server_close()
        pub.close()
        broker.stop()


def test_two_workers_under_the_supervisor(tmp_path: Path, run_dir: Path) -> None:
    """`smartcity run` with api.workers 2: the one-time admin password printed once, a restart
    through the supervisor and the stop end every worker (SIGTERM, never the SIGKILL that
    follows STOP_GRACE_S)."""
    from smartcity.supervisor import LogStream, Supervisor, load_appliance_config

    port = free_port()
    doc = api_only_appliance(run_dir, port, workers=2)
    appliance = tmp_path / "appliance.yaml"
    appliance.write_text(yaml.safe_dump(doc))
    cfg = load_appliance_config(appliance)
    assert cfg.api.workers == 2
    console = io.StringIO()
    sup = Supervisor.from_config(cfg, LogStream(cfg.log.file, console=console))
    stop = threading.Event()
    thread = threading.Thread(target=sup.run, args=(stop,), daemon=True)

    def workers_of(pid: int | None) -> set[int]:
        try:
            return {p.pid for p in psutil.Process(pid).children()} if pid else set()
        except psutil.NoSuchProcess:
            return set()

    def serving() -> bool:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/api/docs/openapi.json")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False

    thread.start()
    try:
        assert wait_for(lambda: serving() and len(workers_of(sup.status()["api"].pid)) == 2,
                        WAIT_S), console.getvalue()  # fmt: skip
        first = sup.status()["api"].pid
        old = workers_of(first)
        assert sup.request_restart("api")["ok"]
        assert wait_for(lambda: sup.status()["api"].pid not in (None, first), WAIT_S)
        assert wait_for(lambda: serving() and len(workers_of(sup.status()["api"].pid)) == 2,
                        WAIT_S), console.getvalue()  # fmt: skip
        assert wait_for(lambda: all(gone(p) for p in old), WAIT_S)
        assert sup.status()["api"].last_exit_code == 0, console.getvalue()
        new = workers_of(sup.status()["api"].pid)
    finally:
        stop.set()
        thread.join(60)
        sup.log.close()
    assert not thread.is_alive()
    assert sup.status()["api"].last_exit_code == 0, console.getvalue()  # not SIGKILL
    assert wait_for(lambda: all(gone(p) for p in new), WAIT_S)
    print(f"api with 2 workers stopped in {sup.stop_seconds:.2f} s")
    text = console.getvalue()
    assert text.count("one-time password") == 1, text
    assert "did not stop within" not in text, text
