"""`smartcity demo --appliance`: the whole appliance on the embedded default (docs/operations.md,
"The demo")."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import pytest
import yaml

from smartcity import demo_appliance as D
from smartcity.supervisor import (
    ENGINE_MALLOC_ENV,
    check_service_configs,
    load_appliance_config,
    services_for,
)
from tests.conftest import ROOT, wait_for
from tests.support.media import free_port


def _free_ports(n: int) -> int:
    """A first port of n consecutive ports nothing listens on."""
    for _ in range(50):
        base = free_port()
        if base + n >= 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def _drain(stream: IO[str], lines: list[str]) -> None:
    try:
        lines.extend(stream)
    except (OSError, ValueError):  # closed when the test ends early
        pass


def test_configs_are_valid_and_name_both_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenes = D.render_scenes(tmp_path / "cache", rtsp_port=9554, seconds=1.0)
    files = D.write_configs(tmp_path / "demo", scenes, port=9080)
    assert D.check_configs(files) == []
    cfg = load_appliance_config(files.appliance)
    assert check_service_configs(cfg) == ([], [])
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert [s.name for s in services_for(cfg)] == ["engine", "incidents", "api"]
    # The engine gets the malloc settings measured by bench/memory.py, unless the environment
    # has its own.
    assert dict(services_for(cfg)[0].env) == ENGINE_MALLOC_ENV == {"MALLOC_ARENA_MAX": "4"}
    assert not services_for(cfg)[1].env
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert not services_for(cfg)[0].env
    assert cfg.data_dir == tmp_path / "demo" / "data"
    assert cfg.api.port == 9080 and cfg.api.host == "127.0.0.1"
    assert len(str(cfg.run_dir / "bus-out")) < 100 and str(cfg.run_dir).startswith("/tmp/")
    traffic = yaml.safe_load(files.engine_traffic.read_text())
    person = yaml.safe_load(files.engine_person.read_text())
    assert traffic["model"] == "synthetic-traffic" and person["model"] == "person-ssdlite"
    assert [c["url"] for c in traffic["cameras"]] == [
        f"rtsp://127.0.0.1:{9554 + i}/{name}" for i, name in enumerate(D.SCENES)
    ]
    assert all(c["loop"] and c["realtime"] for c in person["cameras"])
    assert len(person["cameras"]) == D.VTEST_CAMERAS
    incidents = yaml.safe_load(files.incidents.read_text())
    cams = {c["id"]: c for c in incidents["cameras"]}
    assert set(cams) == {c["id"] for c in traffic["cameras"] + person["cameras"]}
    ww = cams["wrong-way-urban"]["geometry"]
    assert ww["lanes"] and ww["lines"] and "homography" in ww["calibration"]


@pytest.mark.slow
@pytest.mark.rtsp
def test_demo_brings_up_cameras_incidents_and_counts(tmp_path: Path) -> None:
    from smartcity.scenarios import serve

    reason = serve.gst_rtsp_missing()
    if reason:
        pytest.skip(reason)
    port, rtsp = free_port(), _free_ports(len(D.SCENES))
    demo_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "demo", "--appliance", "--dir", str(demo_dir),
         "--port", str(port), "--rtsp-port", str(rtsp), "--seconds", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    password = None
    health: dict = {}
    try:
        deadline = time.monotonic() + 150
        for line in proc.stdout:
            lines.append(line)
            m = re.match(r"\s+password\s+(\S+)", line)
            if m:
                password = m.group(1)
                break
            assert time.monotonic() < deadline, "".join(lines[-30:])
        assert password, "".join(lines[-30:])
        # keep reading: a full pipe would stall the demo and, through it, its services
        drain = threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True)
        drain.start()
        assert f"http://127.0.0.1:{port}/console" in "".join(lines)

        def login() -> str:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/auth/token",
                data=json.dumps({"username": "admin", "password": password}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                return str(json.load(r)["token"])

        token = login()

        def cameras_running() -> bool:
            nonlocal health
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/system/health",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                health = json.load(r)
            cams = health.get("cameras", {})
            return all(cams.get(c, {}).get("state") == "running" for c in demo_cameras)

        demo_cameras = [f"vtest-{i + 1}" for i in range(D.VTEST_CAMERAS)]
        demo_cameras += [name.replace("_", "-") for name in D.SCENES]
        assert wait_for(cameras_running, 60, interval=2), {
            c: v.get("state") for c, v in health.get("cameras", {}).items()
        }

        def live_picture(cam: str) -> bool:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/live/cameras/{cam}/snapshot.jpg",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status == 200 and r.read(2) == b"\xff\xd8"
            except urllib.error.HTTPError:
                return False

        # Both engines' cameras have live pictures: the person engine serves its evidence
        # socket evidence.people beside the traffic engine's, and the API asks both.
        assert wait_for(lambda: live_picture("vtest-1"), 30, interval=1)
        assert wait_for(lambda: live_picture(demo_cameras[-1]), 30, interval=1)
        proc.wait(timeout=120)
        drain.join(10)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        proc.stdout.close()
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    assert "stopped" in out.splitlines()[-1]
    with sqlite3.connect(demo_dir / "data" / "smartcity.db") as db:
        incidents = db.execute("SELECT camera_id, type FROM incidents").fetchall()
        buckets = db.execute("SELECT count(*) FROM traffic_buckets").fetchone()[0]
    assert incidents, out[-3000:]
    assert buckets > 0, out[-3000:]
    assert (demo_dir / D.PASSWORD_FILE).read_text().strip() == password
