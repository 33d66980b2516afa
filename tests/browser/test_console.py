"""The operator console and the admin page in a real headless Chromium (Debian's, driven by
Playwright for Python; never a downloaded browser), against the API served by uvicorn on a real
bus with a stand-in evidence server (live pictures): log in, the camera wall fills, an incident
arrives live and is acknowledged, a camera is added and comes up, a zone is drawn on a snapshot.
Screenshots of each page go to build/screenshots/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from smartcity.bus import IncidentEvent
from tests.browser.support import LOCATIONS, Stack, clip, login, shot, until, wait_js

pytestmark = pytest.mark.browser


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
    stack.store.evidence.write(iid, "clip", f"{iid}/clip.mp4", clip(tmp_path))
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
