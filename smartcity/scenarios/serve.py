"""Streams a rendered scenario over RTSP on loopback: `smartcity scenarios serve`.

The server is rtsp_server.py beside this file (gst-rtsp-server through GObject introspection),
run as a subprocess by Debian's /usr/bin/python3: the project's venv has no GObject bindings.
It serves the MP4's H.264 without re-encoding, at the clip's own pace, looping with growing
timestamps when asked, so the engine can take a scenario as a camera. The core's RTSP tests run
the same server through ``RtspServerProcess``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from smartcity.scenarios.render import Rendered, render_to_dir
from smartcity.scenarios.schema import Scenario

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
# bump when the pixels a scenario renders to change, so cached renders are not reused
RENDER_VERSION = 2


class ServeError(RuntimeError):
    """The RTSP server cannot run or did not come up."""


def gst_rtsp_missing(python: str | None = None) -> str | None:
    """Why `python` (default /usr/bin/python3) cannot run the RTSP server, or None.

    The reason is a sentence naming the Debian packages to install.
    """
    python = python or SYSTEM_PYTHON
    if not os.access(python, os.X_OK):
        return f"{python} not found (the RTSP server needs Debian's python3 with {DEBIAN_PACKAGES})"
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        " from gi.repository import Gst, GstRtspServer"
    )
    try:
        proc = subprocess.run(
            [python, "-c", check], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python} cannot run: {e}"
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or ["unknown error"]
        return (
            f"{python} has no GObject bindings for gst-rtsp-server ({why[0]}); "
            f"install the Debian packages: apt-get install {DEBIAN_PACKAGES}"
        )
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServerProcess:
    """rtsp_server.py in a subprocess, serving one H.264 MP4 at rtsp://127.0.0.1:port/mount.

    start() waits until the server listens (it prints READY); stop() ends it with SIGTERM,
    kill() with SIGKILL (an outage a client only learns about from the dead connection),
    pause()/resume() with SIGSTOP/SIGCONT (a stalled camera). start() again after stop() or
    kill() serves on the same port.
    """

    def __init__(
        self,
        port: int | None,
        clip: str | Path,
        mount: str = "/cam",
        loop: bool = True,
        ready_timeout_s: float = 30.0,
        address: str = "127.0.0.1",
        python: str | None = None,
    ) -> None:
        if not mount.startswith("/"):
            mount = "/" + mount
        self.port = port or free_port()
        self.clip = Path(clip)
        self.mount = mount
        self.loop = loop
        self.ready_timeout_s = ready_timeout_s
        self.address = address
        self.python = python or SYSTEM_PYTHON
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, credentials: str = "") -> str:
        auth = f"{credentials}@" if credentials else ""
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address
        return f"rtsp://{auth}{host}:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def missing(self) -> str | None:
        """Why the server cannot run here, or None (cached per interpreter)."""
        return _missing_cached(self.python)

    def log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def start(self) -> RtspServerProcess:
        reason = self.missing()
        if reason:
            raise ServeError(f"cannot run the RTSP server: {reason}")
        if self.running:
            raise ServeError("the RTSP server is already running")
        if not self.clip.is_file():
            raise ServeError(f"no such clip: {self.clip}")
        self._close_log()
        self._log = tempfile.NamedTemporaryFile(prefix="rtsp_server_", suffix=".log")
        cmd = [self.python, str(SERVER_SCRIPT), "--port", str(self.port)]
        cmd += ["--mount", self.mount, "--file", str(self.clip), "--address", self.address]
        if self.loop:
            cmd.append("--loop")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout_s
        out = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"READY" not in out:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                if sel.select(min(left, 0.2)):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(timeout=5)
                        break
                    out += chunk
        if b"READY" not in out:
            rc = self.proc.poll()
            self.kill()
            raise ServeError(
                f"RTSP server on port {self.port} did not get ready within "
                f"{self.ready_timeout_s} s (exit code {rc}):\n{out.decode(errors='replace')}"
                f"{self.log_tail()}"
            )
        return self

    def _signal(self, sig: int, wait_s: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
                os.killpg(proc.pid, signal.SIGCONT)  # a paused server handles SIGTERM too
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
        return proc.returncode

    def stop(self) -> int | None:
        """SIGTERM; the exit code (0 for a clean exit), None when it was not running."""
        return self._signal(signal.SIGTERM, 10)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything itself."""
        self._signal(signal.SIGKILL, 10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing more is sent (a stalled camera)."""
        if self.proc is None or not self.running:
            raise ServeError("the RTSP server is not running")
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)

    def wait(self, timeout: float | None = None) -> int | None:
        """Waits for the server to exit on its own; its exit code (None: still running)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.kill()
        self._close_log()

    def __enter__(self) -> RtspServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_MISSING: dict[str, str | None] = {}


def _missing_cached(python: str) -> str | None:
    if python not in _MISSING:
        _MISSING[python] = gst_rtsp_missing(python)
    return _MISSING[python]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smartcity" / "scenarios"


def render_cached(
    scenario: Scenario,
    cache_dir: str | Path | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    resolution: str | None = None,
) -> tuple[Path, bool]:
    """The scenario's MP4, rendered into a cache directory keyed by everything that shapes it.

    Returns (video path, reused): a render whose scenario, overrides and RENDER_VERSION are the
    same is reused, otherwise rendered (NAME.mp4 + truth files, as `render` writes them).
    """
    key_src = json.dumps(
        {
            "scenario": dataclasses.asdict(scenario),
            "seconds": seconds,
            "seed": seed,
            "resolution": resolution,
            "render_version": RENDER_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = out / f"{scenario.name}-{key}"
    video = out / f"{scenario.name}.mp4"
    done = out / ".complete"
    if video.is_file() and done.is_file():
        return video, True
    rendered: Rendered = render_to_dir(
        scenario, out, seconds=seconds, seed=seed, resolution=resolution
    )
    done.write_text(key_src + "\n")
    return rendered.video, False
