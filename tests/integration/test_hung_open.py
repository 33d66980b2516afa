"""A server that accepts the connection and then says nothing: the open is interrupted."""

from __future__ import annotations

import socket
import time

import pytest

import smartcity as sc
from tests.conftest import wait_for


@pytest.fixture
def silent_server():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # the kernel completes the handshakes; nobody ever reads or answers
    yield srv.getsockname()[1]
    srv.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_hung_open_is_interrupted_at_open_timeout(silent_server, scheme, make_pipeline):
    p = make_pipeline()
    t0 = time.monotonic()
    p.add_stream(
        sc.StreamConfig(
            camera_id="mute",
            url=f"{scheme}://127.0.0.1:{silent_server}/stream",
            open_timeout_s=1.0,
            backoff_initial_s=5.0,
            backoff_max_s=5.0,
        )
    )
    assert wait_for(lambda: p.stream_stats("mute")["state"] == "backoff", 3.0), p.stream_stats(
        "mute"
    )
    waited = time.monotonic() - t0
    s = p.stream_stats("mute")
    assert "open timed out" in s["last_error"], s["last_error"]
    assert waited >= 0.9, waited  # not given up before the time-out either
