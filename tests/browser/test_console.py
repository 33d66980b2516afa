"""The operator console and the admin page in a real headless Chromium (Debian's, driven by
Playwright for Python; never a downloaded browser), against the API served by uvicorn on a real
bus with a stand-in evidence server (live pictures): log in, the camera wall fills, an incident
arrives live and is acknowledged, a camera is added and comes up, a zone is drawn on a snapshot.
Screenshots of each page go to build/screenshots/."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smartcity.bus import Broker, HealthEvent, IncidentEvent, Publisher
from smartcity.bus.sockets import publisher_endpoint
from smartcity.store import Store
from tests.support.api import make_served, password

pytestmark = pytest.mark.browser

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


class _FakePipeline:
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

    def health(self, cam: str, state: str = "running") -> None:
        self.pub.publish(HealthEvent(cam=cam, seq=0, t_ns=time.time_ns(), state=state,
                                     source_fps=10.0, infer_ms=12.0))  # fmt: skip


def _seed(store: Store) -> None:
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


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from smartcity.bus.evidence import evidence_endpoint
    from smartcity.engine.evidence import EvidenceServer

    run_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))  # ipc:// paths stay short
    tmp = Path(tempfile.mkdtemp(prefix="sc-browser-"))
    broker = Broker(run_dir).start()
    pub = Publisher(publisher_endpoint(run_dir))
    server = EvidenceServer(_FakePipeline(), evidence_endpoint(run_dir)).start()
    served = make_served(tmp, run_dir=str(run_dir), mjpeg_fps=4.0, login_per_minute=1000)
    try:
        srv, store = next(served)
        for cam, (lat, lon) in LOCATIONS.items():
            store.cameras.update(cam, geometry={"location": {"latitude": lat, "longitude": lon}})
        _seed(store)
        yield Stack(url=srv.url, store=store, pub=pub)
    finally:
        next(served, None)
        server.stop()
        pub.close()
        broker.stop()
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import Error, sync_playwright

    exe = chromium()
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        except Error as e:
            pytest.fail(f"Chromium at {exe} does not start: {e}")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="en-US")
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        yield pg
    finally:
        ctx.close()
    # a page script that fails or a picture the CSP blocks shows up as a console error
    assert not [p for p in problems if "Content Security Policy" in p or "page error" in p], (
        problems
    )


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


def _clip(tmp: Path) -> bytes:
    """The first second of the bundled H.264 clip as an MP4 (what the evidence service keeps)."""
    out = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(VTEST), "-t", "1", "-c", "copy",
                    "-movflags", "+faststart", str(out)], check=True)  # fmt: skip
    return out.read_bytes()


def test_login_page(page: Any, stack: Stack) -> None:
    r = page.goto(f"{stack.url}/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    wait_js(page, "document.querySelector('#login-submit').textContent === 'Log in'")
    page.fill("#username", "operator")
    page.fill("#password", "wrong-password-123")
    page.click("#login-submit")
    wait_js(page, "document.querySelector('#login-error').textContent.length > 0")
    shot(page, "login")


def test_console_wall_live_incident_acknowledge(page: Any, stack: Stack, tmp_path: Path) -> None:
    t0 = time.monotonic()
    login(page, stack.url, "operator")
    assert page.url.endswith("/console")
    # the wall: one tile per enabled camera, its live picture loaded (MJPEG)
    wait_js(
        page,
        "[...document.querySelectorAll('#wall .tile img')].length === 2 && "
        "[...document.querySelectorAll('#wall .tile img')].every(i => i.naturalWidth > 0)",
        timeout=20,
    )
    # the map draws both cameras from their locations and the hotspots; the chart its bars
    wait_js(page, "document.querySelectorAll('#map .hotspot').length > 0")
    assert page.locator("#map .cam-marker").count() == 2
    wait_js(page, "document.querySelectorAll('#traffic rect.bar').length === 24")
    # the API's bus thread may still be joining: health until the wall's badges say running
    badge = page.locator('#wall .tile[data-camera="cam1"] .badge')
    until(lambda: badge.inner_text() == "running", "cam1's badge to say running",
          every=lambda: stack.health("cam1"))  # fmt: skip
    # an incident, as the incidents service makes it: stored (with evidence), then published
    iid = stack.store.incidents.create(type="wrong_way", camera_id="cam1", key="k1",
                                       severity="high").id  # fmt: skip
    jpeg = page.evaluate(
        "fetch('/api/v1/live/cameras/cam1/snapshot.jpg').then(r => r.arrayBuffer())"
        ".then(b => Array.from(new Uint8Array(b)))"
    )
    stack.store.evidence.write(iid, "snapshot", f"{iid}/snapshot.jpg", bytes(jpeg))
    stack.store.evidence.write(iid, "clip", f"{iid}/clip.mp4", _clip(tmp_path))
    stack.pub.publish(IncidentEvent(type="wrong_way", seq=0, id=iid, cam="cam1", state="open",
                                    t_ns=time.time_ns(), track_ids=(7,), score=0.9))  # fmt: skip
    item = page.locator(f'#feed li[data-id="{iid}"]')
    item.wait_for(timeout=15_000)
    assert "Wrong way" in item.inner_text() and "high" in item.inner_text()
    wait_js(
        page, f"document.querySelector('#feed li[data-id=\"{iid}\"] img.thumb').naturalWidth > 0"
    )
    shot(page, "console")
    # the detail view plays the clip
    item.locator(".inc-type").click()
    wait_js(page, "document.querySelector('#detail video.clip')?.readyState >= 1",
        timeout=15)  # fmt: skip
    shot(page, "console-detail")
    page.click("#detail form button")
    # acknowledge by clicking: the store says so, the feed shows it
    item.locator(".act-acknowledge").click()
    until(lambda: stack.store.incidents.get(iid).state == "acknowledged", "the acknowledge")
    wait_js(
        page,
        f"document.querySelector('#feed li[data-id=\"{iid}\"]')?.classList.contains("
        "'state-acknowledged')",
    )
    # after a reload the feed (GET /incidents) still lists it, acknowledged
    page.reload()
    wait_js(page, "document.body.dataset.ready === '1'")
    assert "acknowledged" in item.locator(".inc-state").inner_text()
    assert item.locator(".act-acknowledge").count() == 0
    # still usable at 1280x800: nothing wider than the window
    page.set_viewport_size({"width": 1280, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot(page, "console-1280")
    print(f"console test: {time.monotonic() - t0:.1f} s")


def test_admin_add_camera_and_draw_zone(page: Any, stack: Stack) -> None:
    login(page, stack.url, "maintenance")
    assert page.url.endswith("/admin")
    page.wait_for_selector('#services tr[data-service="api"]')
    # add a camera through the form: it is listed; its health message brings it up
    page.fill("#cam-id", "cam3")
    page.fill("#cam-name", "Gate 3")
    page.fill("#cam-url", "rtsp://user:secret@10.0.0.3/live")
    page.click("#cam-save")
    row = page.locator('#cameras tr[data-camera="cam3"]')
    row.wait_for()
    assert "secret" not in row.inner_text() and "Gate 3" in row.inner_text()
    assert stack.store.cameras.get("cam3").name == "Gate 3"
    until(lambda: row.locator(".c-state").inner_text() == "running", "cam3 to come up",
          every=lambda: stack.health("cam3"))  # fmt: skip
    shot(page, "admin")
    # draw a zone of 4 points on cam1's snapshot and save it into the geometry
    page.select_option("#editor-camera", "cam1")
    wait_js(
        page,
        "document.querySelector('#editor-img').naturalWidth === 640 && "
        "document.querySelector('#editor-svg').getAttribute('viewBox') === '0 0 640 360'",
    )
    svg = page.locator("#editor-svg")
    box = svg.bounding_box()
    corners = [(0.2, 0.3), (0.7, 0.3), (0.8, 0.9), (0.1, 0.9)]
    for fx, fy in corners:
        svg.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    assert page.inner_text("#editor-count") == "4 points"
    page.fill("#editor-name", "plaza")
    page.click("#editor-save")
    wait_js(page, "document.querySelector('#editor-message').textContent.startsWith('Saved')")
    geometry = stack.store.cameras.get("cam1").geometry
    zones = {z["name"]: z for z in geometry["zones"]}
    poly = zones["plaza"]["polygon"]
    assert len(poly) == 4
    for (x, y), (fx, fy) in zip(poly, corners, strict=True):
        assert abs(x - 640 * fx) <= 3 and abs(y - 360 * fy) <= 3, poly
    assert geometry["location"]["latitude"] == LOCATIONS["cam1"][0]  # the rest kept
    page.wait_for_selector("#editor-svg polygon.zones")
    shot(page, "admin-zone")
    # a line the API refuses: its message, naming the field, is shown
    page.select_option("#editor-mode", "line")
    svg.click(position={"x": 50, "y": 50})
    svg.click(position={"x": 50, "y": 50})
    page.click("#editor-save")
    wait_js(page, "document.querySelector('#editor-error').textContent.includes('lines')")
    page.set_viewport_size({"width": 1280, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot(page, "admin-1280")


def test_calibration_pairs_show_the_reprojection_error(page: Any, stack: Stack) -> None:
    login(page, stack.url, "maintenance")
    page.select_option("#editor-camera", "cam2")
    wait_js(page, "document.querySelector('#editor-svg').getAttribute('viewBox') === '0 0 640 360'")
    page.select_option("#editor-mode", "calibration")
    grounds = iter(["0,40", "3.5,40", "3.5,5", "0,5"])
    page.on("dialog", lambda d: d.accept(next(grounds)))  # each click asks for metres
    svg = page.locator("#editor-svg")
    box = svg.bounding_box()
    for fx, fy in [(0.45, 0.3), (0.55, 0.3), (0.8, 0.9), (0.2, 0.9)]:
        svg.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    page.click("#editor-save")
    wait_js(page, "document.querySelector('#editor-message').textContent.includes('Reprojection')")
    assert "0.00 m RMS" in page.inner_text("#editor-message")
    points = stack.store.cameras.get("cam2").geometry["calibration"]["points"]
    assert [p["ground"] for p in points] == [[0, 40], [3.5, 40], [3.5, 5], [0, 5]]
    shot(page, "admin-calibration")


def test_admin_sees_users_and_keys_in_indonesian(page: Any, stack: Stack) -> None:
    login(page, stack.url, "admin")
    page.goto(f"{stack.url}/admin?lang=id")
    wait_js(page, "document.body.dataset.ready === '1'")
    assert page.inner_text("header h1") == "Administrasi"
    wait_js(page, "document.querySelectorAll('#users tbody tr').length === 5")
    shot(page, "admin-users-id")
    page.goto(f"{stack.url}/console")  # remembered
    wait_js(page, "document.body.dataset.ready === '1'")
    assert page.inner_text("header h1") == "Konsol operator"
    shot(page, "console-id")
