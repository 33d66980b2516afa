"""RTSP ingest against a real RTSP server (gst-rtsp-server in a subprocess).

The server plays the bundled vtest clip (H.264 768x576, 10 fps) in real time without
re-encoding. Nobody consumes batches unless a test says so, so sampled frames are dropped and
the tests watch the stream statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import smartcity as sc
from tests.conftest import wait_for
from tests.support.media import RtspServer, free_port

pytestmark = pytest.mark.rtsp

SECRET = "s3cr3t-pw"


@pytest.fixture
def rtsp_server(vtest: Path) -> Iterator[RtspServer]:
    server = RtspServer(None, vtest, loop=True)
    server.start()
    yield server
    server.close()


def rtsp_config(camera_id: str, url: str, **kwargs: object) -> sc.StreamConfig:
    params: dict = {
        "open_timeout_s": 5,
        "stall_timeout_s": 3,
        "backoff_initial_s": 1,
        "backoff_max_s": 4,
    }
    params.update(kwargs)
    return sc.StreamConfig(camera_id=camera_id, url=url, **params)


def state(p: sc.Pipeline, cam: str) -> str:
    return p.stream_stats(cam)["state"]


def decoded(p: sc.Pipeline, cam: str) -> int:
    return p.stream_stats(cam)["frames_decoded"]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_stream_runs_and_delivers_frames(transport, rtsp_server, make_pipeline):
    p = make_pipeline(width=320, height=320, max_batch=4)
    p.add_stream(rtsp_config("cam", rtsp_server.url(), rtsp_transport=transport))

    assert wait_for(lambda: decoded(p, "cam") >= 10, 15), p.stream_stats("cam")
    s = p.stream_stats("cam")
    assert s["state"] == "running", s
    assert (s["width"], s["height"], s["codec"]) == (768, 576, "h264")
    assert s["source_fps"] == pytest.approx(10, abs=0.5)
    assert s["reconnects"] == 0 and s["last_error"] == ""
    assert s["packets"] >= s["frames_decoded"] - 1 and s["bytes"] > 0

    # The frames reach the batcher: one full batch of this camera, letterboxed 768x576.
    batch = p.next_batch(4, 3000)
    assert batch is not None
    with batch:
        assert batch.size >= 1
        assert set(batch.camera_ids) == {"cam"}
        assert batch.frame_size.tolist() == [[768, 576]] * batch.size
        assert batch.tensor.shape == (batch.size, 3, 320, 320)
        assert bool(batch.valid.all())
    image, number = p.latest_frame("cam")
    assert image.shape == (576, 768, 3) and number >= 0

    # The server vanishes: with TCP the connection drops; with UDP the RTSP control connection
    # drops or, at worst, the stall time-out fires.
    rtsp_server.kill()
    assert wait_for(lambda: state(p, "cam") == "backoff", 3 + 1), p.stream_stats("cam")
    assert p.stream_stats("cam")["last_error"] != ""


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_stalled_server_goes_to_backoff_and_recovers(transport, rtsp_server, make_pipeline):
    """A server that stops sending but keeps its connections open is caught by stall_timeout_s."""
    stall_s = 3
    p = make_pipeline(width=320, height=320, max_batch=4)
    p.add_stream(rtsp_config("cam", rtsp_server.url(), rtsp_transport=transport))
    assert wait_for(lambda: decoded(p, "cam") >= 5, 15), p.stream_stats("cam")

    rtsp_server.pause()
    t0 = time.monotonic()
    try:
        assert wait_for(lambda: state(p, "cam") == "backoff", stall_s + 1), p.stream_stats("cam")
        waited = time.monotonic() - t0
        assert "stalled" in p.stream_stats("cam")["last_error"], p.stream_stats("cam")
        # Not given up long before the time-out.
        assert waited >= stall_s - 1.0, waited
    finally:
        rtsp_server.resume()

    before = decoded(p, "cam")
    assert wait_for(lambda: state(p, "cam") == "running", 4 + 5), p.stream_stats("cam")
    assert wait_for(lambda: decoded(p, "cam") >= before + 5, 5), p.stream_stats("cam")
    assert p.stream_stats("cam")["reconnects"] >= 1


def test_outage_of_one_camera_does_not_slow_the_others(vtest, make_pipeline):
    """The issue's scenario: an RTSP camera dies and comes back; two file streams go on."""
    window_s = 3.0
    files = ("file1", "file2")
    server = RtspServer(None, vtest, loop=True)
    try:
        server.start()
        p = make_pipeline(width=320, height=320, max_batch=4)
        p.add_stream(rtsp_config("rtsp", server.url()))
        for cam in files:
            p.add_stream(
                sc.StreamConfig(
                    camera_id=cam, url=str(vtest), loop=True, realtime=True, analyze_fps=0
                )
            )
        cams = ("rtsp", *files)
        assert wait_for(
            lambda: all(state(p, c) == "running" and decoded(p, c) > 0 for c in cams), 15
        ), p.stats()
        time.sleep(0.5)  # past start-up bursts (the RTSP probe, the decoders' first frames)

        def rates() -> dict[str, float]:
            f0 = {c: decoded(p, c) for c in cams}
            t0 = time.monotonic()
            time.sleep(window_s)
            f1 = {c: decoded(p, c) for c in cams}
            elapsed = time.monotonic() - t0
            return {c: (f1[c] - f0[c]) / elapsed for c in cams}

        before = rates()
        assert all(before[c] > 5 for c in cams), before  # realtime pacing: about 10 fps

        server.kill()
        assert wait_for(lambda: state(p, "rtsp") == "backoff", 3 + 1), p.stream_stats("rtsp")
        down_at = decoded(p, "rtsp")

        during = rates()
        s = p.stream_stats("rtsp")
        assert s["state"] in ("backoff", "connecting"), s
        assert s["frames_decoded"] == down_at, "frames while the server was down"
        assert s["last_error"] != ""
        for c in files:
            assert during[c] >= 0.8 * before[c], (c, before, during)
            assert state(p, c) == "running"

        server.start()  # same port
        assert wait_for(lambda: state(p, "rtsp") == "running", 4 + 5), p.stream_stats("rtsp")
        assert wait_for(lambda: decoded(p, "rtsp") >= down_at + 5, 5), p.stream_stats("rtsp")
        s = p.stream_stats("rtsp")
        assert s["reconnects"] >= 1, s
        for c in files:
            assert p.stream_stats(c)["reconnects"] == 0
    finally:
        server.close()


def test_credentials_are_redacted(rtsp_server, make_pipeline):
    p = make_pipeline(width=320, height=320, max_batch=4)
    good = rtsp_server.url(f"admin:{SECRET}")
    refused = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/cam"
    p.add_stream(rtsp_config("good", good))
    p.add_stream(rtsp_config("refused", refused))

    assert wait_for(lambda: decoded(p, "good") > 0, 15), p.stream_stats("good")
    assert wait_for(lambda: p.stream_stats("refused")["last_error"] != "", 10)

    s = p.stream_stats("good")
    assert s["url"] == rtsp_server.url("***")
    r = p.stream_stats("refused")
    assert r["url"] == refused.replace(f"admin:{SECRET}", "***")
    assert "***@127.0.0.1" in r["last_error"], r["last_error"]
    for stats in p.stats():
        for key, value in stats.items():
            assert SECRET not in str(value), (stats["camera_id"], key, value)
            assert "admin" not in str(value), (stats["camera_id"], key, value)

    # Errors after the connection drops do not show the password either.
    rtsp_server.kill()
    assert wait_for(lambda: state(p, "good") == "backoff", 3 + 1)
    assert wait_for(lambda: p.stream_stats("good")["reconnects"] >= 1, 4)
    assert wait_for(lambda: "refused" in p.stream_stats("good")["last_error"].lower(), 4)
    err = p.stream_stats("good")["last_error"]
    assert SECRET not in err and "***@" in err, err

    cfg = rtsp_config("x", good)
    assert SECRET not in repr(cfg) and SECRET not in cfg.url
    assert sc.redact_url(good) == rtsp_server.url("***")
