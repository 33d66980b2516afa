"""`smartcity scenarios serve`: a rendered scenario over RTSP, read by the core like a camera."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

import smartcity as sc
from smartcity import scenarios as S
from smartcity.scenarios import serve
from tests.conftest import ROOT, wait_for
from tests.support.media import RtspServer, free_port

pytestmark = pytest.mark.rtsp


def _decoded(p: sc.Pipeline, cam: str) -> int:
    return int(p.stream_stats(cam)["frames_decoded"])


def _read_like_a_camera(make_pipeline, url: str, min_frames: int) -> dict:
    p = make_pipeline(width=320, height=320)
    p.add_stream(sc.StreamConfig(camera_id="s", url=url, decode_only=True))
    assert wait_for(lambda: p.stream_stats("s")["state"] == "running", 15), p.stream_stats("s")
    first = _decoded(p, "s")
    assert wait_for(lambda: _decoded(p, "s") >= max(min_frames, first + 10), 20), p.stream_stats(
        "s"
    )
    return p.stream_stats("s")


def test_served_scenario_loops_and_decodes_in_the_core(tmp_path, make_pipeline):
    video, _ = serve.render_cached(
        S.load("wrong_way_urban"), tmp_path, seconds=1.0, resolution="640x360"
    )
    server = RtspServer(None, video, mount="/wrong_way_urban", loop=True)
    with server:
        # 25 frames per pass: more than 40 decoded means the loop went on past the end
        s = _read_like_a_camera(make_pipeline, server.url(), 40)
    assert (s["width"], s["height"], s["codec"]) == (640, 360, "h264")
    assert s["state"] == "running"


def test_cli_serve_streams_until_sigterm(tmp_path, make_pipeline):
    if serve.gst_rtsp_missing():
        pytest.skip(serve.gst_rtsp_missing() or "")
    port = free_port()
    cmd = [sys.executable, "-m", "smartcity", "scenarios", "serve", "quiet_urban"]
    cmd += ["--seconds", "1", "--resolution", "640x360", "--port", str(port), "--loop"]
    cmd += ["--cache", str(tmp_path), "--stop-after", "120"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 60
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"serving " not in out and time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if sel.select(0.2):
                    out += os.read(proc.stdout.fileno(), 4096)
        assert f"serving rtsp://127.0.0.1:{port}/quiet_urban".encode() in out, (
            out,
            proc.stderr.read() if proc.poll() is not None and proc.stderr else b"",
        )
        s = _read_like_a_camera(make_pipeline, f"rtsp://127.0.0.1:{port}/quiet_urban", 30)
        assert (s["width"], s["height"]) == (640, 360)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
