"""What the browser tests share: Chromium, the served stack (API on a real bus with a stand-in
evidence server), log-in and polling helpers, screenshots. The fixtures are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smartcity.bus import HealthEvent, Publisher
from smartcity.store import Store
from tests.support.api import password

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
VTEST = ROOT / "tests" / "media" / "vtest-h264.mp4"
#: Debian's chromium; Ubuntu 24.04's deb is a snap shim (/snap/bin/chromium, chromium-browser)
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"]
CAMERAS = ("cam1", "cam2", "cam3")
LOCATIONS = {"cam1": (-6.2000, 106.8166), "cam2": (-6.2100, 106.8300)}


def chromium() -> str:
    for p in [os.environ.get("SMARTCITY_CHROMIUM"), *CHROMIUM]:
        if p and os.access(p, os.X_OK):
            return p
    pytest.fail(
        "the browser tests need Chromium at /usr/bin/chromium (Debian: apt-get install chromium, "
        "see appliance/system-packages.sh; or set SMARTCITY_CHROMIUM)"
    )


class FakePipeline:
    """The engine's evidence server reads the latest frame of a camera: a grey 640x360 frame with
    a stripe per camera, so that each tile shows something."""

    def snapshot(self, cam: str) -> dict[str, Any] | None:
        import numpy as np

        if cam not in CAMERAS:
            return None
        img = np.full((360, 640, 3), 90, np.uint8)
        k = CAMERAS.index(cam)
        img[40 + 60 * k : 80 + 60 * k, :, 1] = 200
        return {"image": img, "frame": 1, "pts": 0.1, "t_ns": time.time_ns()}


@dataclass
class Stack:
    url: str
    store: Store
    pub: Publisher
    data_dir: Path
    run_dir: Path

    def health(self, cam: str, state: str = "running", **fields: Any) -> None:
        """A health message as the engine sends it; `fields` set others (decoder, ...)."""
        self.pub.publish(HealthEvent(cam=cam, seq=0, t_ns=time.time_ns(), state=state,
                                     source_fps=10.0, infer_ms=12.0, **fields))  # fmt: skip


def seed(store: Store) -> None:
    """Six hours of 15-minute counts on cam1's line and crashes around both cameras, for the
    traffic chart and the hotspot map."""
    from datetime import UTC, datetime, timedelta

    from smartcity.store import BucketRecord
    from smartcity.store.crashes import CrashRow

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=now.minute % 15) - timedelta(hours=6)
    store.traffic.upsert(
        BucketRecord(camera_id="cam1", source_kind="line", source_name="gate", period="15m",
                     start=start + timedelta(minutes=15 * i), cls="all", direction=d,
                     count=20 + (i * 7) % 30 + (5 if d == "in" else 0), los="ABCDEF"[i % 6])
        for i in range(24)
        for d in ("in", "out")
    )  # fmt: skip
    crashes = []
    for k, (lat, lon) in enumerate(LOCATIONS.values()):
        for i in range(6 + 6 * k):
            crashes.append(CrashRow(occurred_at=now - timedelta(days=3 + i), severity="serious",
                                    latitude=lat + 0.0004 * (i % 3), longitude=lon + 0.0003 * i,
                                    road="Jl. Sudirman"))  # fmt: skip
    store.crashes.add_many(crashes, source="police-2026.csv")


def wait_js(page: Any, expr: str, timeout: float = 10.0) -> None:
    """Until the expression is true in the page. (Playwright's wait_for_function evaluates a
    string with eval, which the pages' Content-Security-Policy rightly refuses.)"""
    from playwright.sync_api import Error

    def check() -> bool:
        try:
            return bool(page.evaluate(expr))
        except Error:  # a navigation in progress
            return False

    until(check, expr, timeout)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(page: Any, url: str, user: str) -> None:
    page.goto(f"{url}/console")
    page.wait_for_url("**/login")
    page.fill("#username", user)
    page.fill("#password", password(user))
    page.click("#login-submit")
    wait_js(page, "document.body.dataset.ready === '1'")


def until(
    cond: Callable[[], bool],
    what: str,
    timeout: float = 15.0,
    every: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if every:
            every()
        time.sleep(0.1)


def clip(tmp: Path) -> bytes:
    """The first second of the bundled H.264 clip as an MP4 (what the evidence service keeps)."""
    out = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(VTEST), "-t", "1", "-c", "copy",
                    "-movflags", "+faststart", str(out)], check=True)  # fmt: skip
    return out.read_bytes()
