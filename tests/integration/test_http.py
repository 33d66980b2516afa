"""http:// input: a clip served by a plain HTTP server on loopback."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

import smartcity as sc
from tests.conftest import wait_for


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def http_server(vtest):
    handler = functools.partial(_QuietHandler, directory=str(vtest.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_clip_decodes_and_end_of_stream_reconnects(http_server, vtest, make_pipeline):
    p = make_pipeline()
    p.add_stream(
        sc.StreamConfig(
            camera_id="web",
            url=f"{http_server}/{vtest.name}",
            decode_only=True,
            backoff_initial_s=0.2,
            backoff_max_s=0.4,
        )
    )
    # A network source that ends is a disconnect: the stream reconnects and reads it again.
    assert wait_for(lambda: p.stream_stats("web")["reconnects"] >= 1, 60), p.stream_stats("web")
    s = p.stream_stats("web")
    assert s["frames_decoded"] >= 795
    assert s["codec"] == "h264" and (s["width"], s["height"]) == (768, 576)
    assert "stream ended" in s["last_error"]


def test_http_404_retries_with_a_clear_message(http_server, make_pipeline):
    p = make_pipeline()
    p.add_stream(
        sc.StreamConfig(camera_id="web", url=f"{http_server}/missing.mp4", backoff_initial_s=0.2)
    )
    assert wait_for(lambda: p.stream_stats("web")["last_error"] != "", 10)
    s = p.stream_stats("web")
    assert "404" in s["last_error"] or "Not Found" in s["last_error"], s["last_error"]
    assert s["state"] in ("backoff", "connecting")
