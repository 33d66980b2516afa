"""The admin page's administration pieces in a real headless Chromium: users and API keys
(created in the page, the one-time secret shown once, used on the API, revoked), the backup,
logs, models, restarts, the machine's figures (GPUs through a stand-in NVML module) and each
camera's decoder."""

from __future__ import annotations

import sqlite3
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from smartcity.supervisor import LOG_FILE_ENV, LogStream
from tests.browser.support import Stack, login, shot, until, wait_js
from tests.integration.test_api_system_resources import GiB, NVMLError, fake_nvml

pytestmark = pytest.mark.browser


def open_admin(page: Any, stack: Stack) -> None:
    login(page, stack.url, "admin")
    page.goto(f"{stack.url}/admin")
    wait_js(page, "document.body.dataset.ready === '1'")


def secret(page: Any) -> str:
    """The one-time secret the page shows, then dismissed (it is gone from the page)."""
    wait_js(page, "!document.querySelector('#secret-box').hidden")
    value = page.inner_text("#secret-value").strip()
    page.click("#secret-done")
    assert page.inner_text("#secret-value") == ""
    return value


def token_status(url: str, user: str, pw: str) -> int:
    r = httpx.post(f"{url}/api/v1/auth/token", json={"username": user, "password": pw})
    return r.status_code


def test_admin_creates_a_user_and_an_api_key_and_revokes_it(page: Any, stack: Stack) -> None:
    page.on("dialog", lambda d: d.accept(""))  # confirms; an empty reset prompt: generate
    open_admin(page, stack)
    # a user with a generated password, limited to cam1
    page.fill("#user-name", "dana")
    page.select_option("#user-role", "viewer")
    page.fill("#user-cameras", "cam1")
    page.click("#user-save")
    first = secret(page)
    row = page.locator('#users tr[data-user="dana"]')
    row.wait_for()
    u = stack.store.users.by_name("dana")
    assert u is not None and u.role == "viewer" and list(u.cameras or []) == ["cam1"]
    assert len(first) == 20
    assert token_status(stack.url, "dana", first) == 200  # the new user can log in
    # a reset: a new generated password; the old one stops working
    row.locator(".u-password").click()
    second = secret(page)
    assert second != first
    assert token_status(stack.url, "dana", first) == 401
    assert token_status(stack.url, "dana", second) == 200
    # the role changed in the row's select; then disabled: logins refused
    row.locator(".u-role").select_option("operator")
    until(lambda: stack.store.users.get(u.id).role == "operator", "the role change")
    row.locator(".u-toggle").click()
    until(lambda: not stack.store.users.get(u.id).enabled, "the user to be disabled")
    assert token_status(stack.url, "dana", second) == 401
    actions = {r.action for r in stack.store.audit.list(actor="user:admin", limit=100)}
    assert {"user.create", "user.password_reset", "user.update"} <= actions
    # an API key of the admin with two scopes; scopes the owner's role lacks cannot be ticked
    page.fill("#key-name", "integrator")
    page.select_option("#key-user", "maintenance")
    assert page.locator('#key-scopes input[value="incidents:read"]').is_disabled()
    page.select_option("#key-user", "admin")
    page.check('#key-scopes input[value="system:read"]')
    page.check('#key-scopes input[value="cameras:read"]')
    page.fill("#key-days", "30")
    page.click("#key-save")
    key = secret(page)
    assert key.startswith("sck_")
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{stack.url}/api/v1/cameras", headers=bearer).status_code == 200
    assert httpx.get(f"{stack.url}/api/v1/incidents", headers=bearer).status_code == 403
    prefix = key.split("_")[1]
    krow = page.locator(f'#keys tr[data-key="{prefix}"]')
    krow.wait_for()
    assert "integrator" in krow.inner_text() and key not in page.content()
    shot(page, "admin-accounts")
    # revoked in the page: the API refuses the key at once
    krow.locator(".k-revoke").click()
    krow.wait_for(state="detached")
    assert httpx.get(f"{stack.url}/api/v1/cameras", headers=bearer).status_code == 401
    assert stack.store.audit.list(action="key.revoke", limit=10)
    page.set_viewport_size({"width": 1280, "height": 800})  # every admin panel still fits
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot(page, "admin-accounts-1280")


def test_a_refused_user_shows_the_api_message(page: Any, stack: Stack) -> None:
    open_admin(page, stack)
    page.fill("#user-name", "erin")
    page.fill("#user-password", "short")
    page.click("#user-save")
    wait_js(page, "document.querySelector('#user-error').textContent.includes('too short')")
    assert stack.store.users.by_name("erin") is None
    # a key without a scope is refused in the page
    page.fill("#key-name", "nothing")
    page.click("#key-save")
    wait_js(page, "document.querySelector('#key-error').textContent.length > 0")


def test_admin_downloads_a_backup(page: Any, stack: Stack, tmp_path: Path) -> None:
    open_admin(page, stack)
    wait_js(page, "!document.querySelector('#backup-row').hidden")
    with page.expect_download() as info:
        page.click("#backup")
    download = info.value
    assert download.suggested_filename.startswith("smartcity-backup-")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with tarfile.open(path, "r:gz") as tar:
        names = set(tar.getnames())
        tar.extract("smartcity.db", tmp_path, filter="data")
    assert {"smartcity.db", "manifest.json"} <= names
    con = sqlite3.connect(tmp_path / "smartcity.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM cameras").fetchone()[0] >= 2
    finally:
        con.close()


def test_maintenance_has_no_backup_or_restart_button(page: Any, stack: Stack) -> None:
    login(page, stack.url, "maintenance")
    page.wait_for_selector('#services tr[data-service="api"]')
    assert page.locator("#backup-row").is_hidden()
    assert page.locator(".s-restart").count() == 0  # restarting is for admins


def test_logs_panel_filters_and_follows(
    page: Any, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOG_FILE_ENV, raising=False)
    path = stack.data_dir / "smartcity.log"
    path.unlink(missing_ok=True)
    log = LogStream(path)
    log.emit("supervisor", "info", "supervising engine, incidents, api")
    log.emit("engine", "warning", "camera 'gate-1' reconnecting", "gate-1")
    log.emit("engine", "error", '<img src=x id="injected"> decoder failed', "gate-2")
    with path.open("ab") as f:
        f.write(b"not a record\n")
    login(page, stack.url, "maintenance")
    rows = "document.querySelectorAll('#logs tbody tr').length"
    wait_js(page, f"{rows} === 3")
    assert page.locator("#injected").count() == 0  # the file's text stays text
    assert "decoder failed" in page.inner_text("#logs tbody tr:first-child")  # newest first
    assert "1 lines were not log records" in page.inner_text("#logs-status")
    page.select_option("#logs-level", "warning")
    wait_js(page, f"{rows} === 2")
    page.fill("#logs-camera", "gate-1")
    page.click("#logs-refresh")
    wait_js(page, f"{rows} === 1")
    # a new record appears by itself (the panel follows the file)
    log.emit("engine", "error", "gate-1 lost again", "gate-1")
    log.close()
    wait_js(page, f"{rows} === 2", timeout=15)
    shot(page, "admin-logs")
    # a filter the API refuses: its message, naming the field
    page.fill("#logs-camera", "no spaces allowed")
    page.click("#logs-refresh")
    wait_js(page, "document.querySelector('#logs-status').textContent.includes('camera')")


def test_models_panel_shows_the_bundled_models(page: Any, stack: Stack) -> None:
    login(page, stack.url, "maintenance")
    row = page.locator('#models tr[data-model="person-ssdlite"]')
    row.wait_for()
    assert "300x300" in row.inner_text() and "person" in row.inner_text()
    assert row.locator(".m-sha").inner_text() == "matches"
    page.locator('#backends tr[data-backend="onnxruntime"]').wait_for()
    shot(page, "admin-models")


def test_admin_restarts_a_service_through_the_control_socket(page: Any, stack: Stack) -> None:
    from smartcity.supervisor import _Control

    asked: list[object] = []

    def handler(req: object) -> dict[str, object]:  # the supervisor's side, recorded
        asked.append(req)
        return {"ok": True, "service": "engine", "pid": 4242}

    control = _Control(stack.run_dir / "control", handler, LogStream())
    control.start()
    try:
        page.on("dialog", lambda d: d.accept())
        open_admin(page, stack)
        page.locator('#services tr[data-service="engine"] .s-restart').click()
        wait_js(page, "[...document.querySelectorAll('.toast.ok')].some(t => "
                "t.textContent.includes('engine is being restarted'))")  # fmt: skip
        assert asked == [{"op": "restart", "service": "engine"}]
        row = stack.store.audit.list(action="system.restart", limit=5)[-1]
        assert row.target == "engine" and row.actor == "user:admin"
        assert page.locator('#services tr[data-service="database"] .s-restart').count() == 0
    finally:
        control.stop()
    # no supervisor: the API's message is shown
    page.locator('#services tr[data-service="engine"] .s-restart').click()
    wait_js(page, "[...document.querySelectorAll('.toast')].some(t => "
            "t.textContent.includes('no control socket'))")  # fmt: skip


def test_machine_figures_gpus_and_decoders(
    page: Any, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API runs in this process (uvicorn on a thread): the stand-in pynvml put into
    sys.modules is the one it imports."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    login(page, stack.url, "maintenance")
    cpu = page.locator('#resources tr[data-figure="cpu"] .r-value')
    wait_js(page, "document.querySelector('#resources tr[data-figure=\"cpu\"] meter') !== null")
    assert " cores · load " in cpu.inner_text()
    memory = page.inner_text('#resources tr[data-figure="memory"] .r-value')
    assert " used of " in memory and "GiB" in memory, memory
    disk = page.inner_text('#resources tr[data-figure="disk"] .r-value')
    assert " free of " in disk and str(stack.data_dir) in disk, disk
    assert page.inner_text('#resources tr[data-figure="uptime"] .r-value').strip()
    assert page.inner_text("#gpu-none") == (
        "no GPU: pynvml (the nvidia-ml-py package) is not installed"
    )
    assert not page.is_visible("#gpus")
    # a machine with GPUs: the next refresh (every 5 s) shows them
    devices = [
        {"name": "NVIDIA H200", "uuid": "GPU-1", "util": 37, "mem": (20 * GiB, 140 * GiB),
         "temp": 41, "dec": 62},
        {"name": "NVIDIA A100", "uuid": "GPU-2", "util": NVMLError("Not Supported"),
         "mem": (1 * GiB, 80 * GiB), "temp": 35, "dec": 0},
    ]  # fmt: skip
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(devices))
    page.locator('#gpus tr[data-gpu="1"]').wait_for(timeout=15_000)
    h200 = page.locator('#gpus tr[data-gpu="0"]')
    assert "NVIDIA H200" in h200.inner_text()
    assert h200.locator(".g-util").inner_text().strip() == "37 %"
    assert h200.locator(".g-memory").inner_text().strip() == "20.0 GiB of 140.0 GiB"
    assert h200.locator(".g-temp").inner_text() == "41 °C"
    assert h200.locator(".g-decoder").inner_text().strip() == "62 %"
    a100 = page.locator('#gpus tr[data-gpu="1"]')
    assert "utilization: Not Supported" in a100.inner_text()
    assert a100.locator(".g-util").inner_text().strip() == "–"
    assert not page.is_visible("#gpu-none")
    # each camera's decoder from its health messages, with the reason the GPU is not decoding
    note = "decoding on the CPU: no CUDA device"
    row1 = page.locator('#cameras tr[data-camera="cam1"] .c-decoder')
    row2 = page.locator('#cameras tr[data-camera="cam2"] .c-decoder')

    def report() -> None:
        stack.health("cam1", decoder="nvdec", last_frame_age_s=0.4)
        stack.health("cam2", decoder="cpu", hwaccel_note=note)

    until(lambda: row1.inner_text() == "GPU (NVDEC)" and row2.inner_text().startswith("CPU"),
          "the decoders", every=report)  # fmt: skip
    assert row2.locator(".c-hwaccel-note").inner_text() == note
    # the frame rate and how old cam1's newest frame is
    fps1 = page.locator('#cameras tr[data-camera="cam1"] .c-fps')
    assert fps1.inner_text().startswith("10.0")
    assert fps1.locator(".c-age").inner_text() == "newest frame 0.4 s old"
    shot(page, "admin-resources")


def test_lane_drawn_with_its_direction_and_limit_then_deleted(page: Any, stack: Stack) -> None:
    login(page, stack.url, "maintenance")
    page.wait_for_selector('#cameras tr[data-camera="cam2"]')
    page.select_option("#editor-camera", "cam2")
    wait_js(page, "document.querySelector('#editor-svg').getAttribute('viewBox') === '0 0 640 360'")
    page.select_option("#editor-mode", "lane")
    assert page.is_visible("#editor-lane-rule") and not page.is_visible("#editor-zone-rule")
    svg = page.locator("#editor-svg")
    box = svg.bounding_box()
    for fx, fy in [(0.4, 0.95), (0.6, 0.95), (0.55, 0.2), (0.45, 0.2)]:
        svg.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    page.fill("#editor-name", "north-0")
    page.select_option("#editor-direction", "0,-1")
    page.fill("#editor-limit", "50")
    page.click("#editor-save")
    wait_js(page, "document.querySelector('#editor-message').textContent.startsWith('Saved')")
    lanes = {z["name"]: z for z in stack.store.cameras.get("cam2").geometry["lanes"]}
    assert lanes["north-0"]["direction"] == [0, -1]
    assert lanes["north-0"]["speed_limit_kmh"] == 50 and len(lanes["north-0"]["polygon"]) == 4
    page.wait_for_selector("#editor-svg polygon.lanes")
    # a name the camera does not have: said so, nothing changed
    page.fill("#editor-name", "south-9")
    page.click("#editor-delete")
    wait_js(page, "document.querySelector('#editor-error').textContent.includes('south-9')")
    assert "lanes" in stack.store.cameras.get("cam2").geometry
    # the lane itself: removed from the stored geometry
    page.fill("#editor-name", "north-0")
    page.click("#editor-delete")
    wait_js(page, "document.querySelector('#editor-message').textContent.startsWith('Deleted')")
    assert "lanes" not in stack.store.cameras.get("cam2").geometry
    assert page.locator("#editor-svg polygon.lanes").count() == 0
