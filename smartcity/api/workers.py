"""`smartcity api` with api.workers > 1: one parent and N worker processes serving one port.

The parent binds N listening sockets to the port, each with SO_REUSEPORT, and gives each worker
one of them (`python -m smartcity.api.workers`, the descriptor inherited); the kernel spreads new
connections over the sockets. One shared socket (uvicorn's own `workers=`) let the first worker
to wake accept a whole burst: all 50 connections of bench/api.py went to one worker. Before
binding, the parent checks that the port is free with a plain socket, so a second API on the
same port is refused as with one process.

The parent restarts a worker that ends (after 0.5 s, doubling up to 30 s while it keeps ending
within 10 s of its start; it gives up, stopping every worker and exiting 1, after 5 such quick
ends in a row); the socket stays open meanwhile, so connections waiting on it are served by the
new worker. SIGTERM or SIGINT: SIGTERM to every worker, SIGKILL to those still running after
`stop_grace_s`, exit 0. A worker whose parent is gone stops itself.

What the workers share (one webhook dispatcher, rate limits, the end of cached credentials) is
in smartcity/api/shared.py; each has its own live event hub on the bus.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from smartcity.api.settings import ApiSettings

log = logging.getLogger("smartcity.api.workers")

#: The parent hands its checked settings to the workers in this variable (JSON).
WORKER_SETTINGS_ENV = "SMARTCITY_API_WORKER_SETTINGS"
RESTART_INITIAL_S = 0.5
RESTART_MAX_S = 30.0
#: A worker that ends sooner than this after its start counts as a quick end.
QUICK_END_S = 10.0
QUICK_ENDS_GIVE_UP = 5
STOP_GRACE_S = 7.0


class WorkerPoolError(RuntimeError):
    """The workers cannot be started (the port is taken, no SO_REUSEPORT ...)."""


def listening_sockets(host: str, port: int, n: int, backlog: int = 2048) -> list[socket.socket]:
    """n sockets listening on (host, port) with SO_REUSEPORT; WorkerPoolError when the port is
    in use or the system has no SO_REUSEPORT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise WorkerPoolError("api.workers > 1 needs SO_REUSEPORT (Linux); set api.workers: 1")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:  # a plain bind fails while anything (an API with workers too) holds the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as e:
        raise WorkerPoolError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    finally:
        probe.close()
    out: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_STREAM)
            out.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, port))
            s.listen(backlog)
    except OSError as e:
        for s in out:
            s.close()
        raise WorkerPoolError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return out


@dataclass
class _Worker:
    index: int
    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    delay: float = RESTART_INITIAL_S
    quick_ends: int = 0
    pids: list[int] = field(default_factory=list)


class WorkerPool:
    """The parent: start, watch and stop the workers (run() blocks until a stop signal)."""

    def __init__(
        self, cfg: ApiSettings, *, stop_grace_s: float = STOP_GRACE_S, poll_s: float = 0.1
    ) -> None:
        self.cfg = cfg
        self.stop_grace_s = stop_grace_s
        self.poll_s = poll_s
        self._stop = threading.Event()
        self.workers: list[_Worker] = []

    def stop(self) -> None:
        """Ask run() to stop the workers and return (any thread, or a signal handler)."""
        self._stop.set()

    def run(self, *, install_signals: bool = True) -> int:
        socks = listening_sockets(self.cfg.host, self.cfg.port, self.cfg.workers)
        self.workers = [_Worker(i, s) for i, s in enumerate(socks)]
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        env = dict(os.environ, **{WORKER_SETTINGS_ENV: json.dumps(asdict(self.cfg))})
        code = 0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for w in self.workers:
                    if w.proc is None:
                        if now >= w.next_start:
                            self._start(w, env, now)
                        continue
                    rc = w.proc.poll()
                    if rc is None:
                        if w.quick_ends and now - w.started_at >= QUICK_END_S:
                            w.quick_ends, w.delay = 0, RESTART_INITIAL_S  # it runs again
                        continue
                    ran = now - w.started_at
                    w.proc = None
                    if ran < QUICK_END_S:
                        w.quick_ends += 1
                        w.delay = min(w.delay * 2, RESTART_MAX_S) if w.quick_ends > 1 else w.delay
                    else:
                        w.quick_ends, w.delay = 0, RESTART_INITIAL_S
                    print(
                        f"smartcity api: worker {w.index} (pid {w.pids[-1]}) ended "
                        f"({_exit_text(rc)}) after {ran:.1f} s; starting it again in "
                        f"{w.delay:g} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    if w.quick_ends >= QUICK_ENDS_GIVE_UP:
                        print(
                            f"smartcity api: worker {w.index} ended {w.quick_ends} times within "
                            f"{QUICK_END_S:g} s of its start: stopping",
                            file=sys.stderr,
                            flush=True,
                        )
                        code = 1
                        self._stop.set()
                        break
                    w.next_start = now + w.delay
                self._stop.wait(self.poll_s)
        finally:
            self._stop_all()
            for w in self.workers:
                w.sock.close()
        return code

    def _start(self, w: _Worker, env: dict[str, str], now: float) -> None:
        fd = w.sock.fileno()
        argv = [sys.executable, "-m", "smartcity.api.workers", str(fd), str(w.index)]
        w.proc = subprocess.Popen(argv, env=env, pass_fds=(fd,), stdin=subprocess.DEVNULL)
        w.started_at = now
        w.pids.append(w.proc.pid)

    def _stop_all(self) -> None:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for p in running:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        while running and time.monotonic() < deadline:
            time.sleep(0.02)
            running = [p for p in running if p.poll() is None]
        for p in running:
            print(
                f"smartcity api: worker pid {p.pid} did not stop within {self.stop_grace_s:g} s:"
                " killed",
                file=sys.stderr,
                flush=True,
            )
            _signal(p, signal.SIGKILL)
        for w in self.workers:
            if w.proc is not None:
                w.proc.wait()


def _signal(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        p.send_signal(sig)
    except ProcessLookupError:
        pass


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"ended by {signal.Signals(-rc).name}"
        except ValueError:
            return f"ended by signal {-rc}"
    return f"exit code {rc}"


def _watch_parent(parent: int) -> None:
    """In a worker: stop (as on SIGTERM) when the parent is gone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def worker_main(argv: list[str]) -> int:
    """One worker: the app on the inherited listening socket (argv: fd, index)."""
    import uvicorn

    from smartcity.api.app import create_app

    fd, index = int(argv[0]), int(argv[1])
    raw = os.environ.get(WORKER_SETTINGS_ENV)
    if not raw:
        print(f"{WORKER_SETTINGS_ENV} is not set: start workers with `smartcity api`")
        return 2
    values: dict[str, Any] = json.loads(raw)
    cfg = ApiSettings(**values).checked()
    sock = socket.socket(fileno=fd)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    app = create_app(cfg, shared_dir=cfg.data_dir)
    log.debug("worker %d (pid %d) serving", index, os.getpid())
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
