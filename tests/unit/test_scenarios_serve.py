"""`smartcity scenarios serve` without a server: the render cache, the missing-gi error."""

from __future__ import annotations

import sys

from smartcity import scenarios as S
from smartcity.cli import main as cli_main
from smartcity.scenarios import serve


def test_missing_gi_names_the_debian_packages(tmp_path):
    # the venv's python has no GObject bindings; a missing interpreter is reported too
    for python in (sys.executable, str(tmp_path / "no-python")):
        reason = serve.gst_rtsp_missing(python)
        assert reason is not None
        assert "python3-gi" in reason and "gir1.2-gst-rtsp-server-1.0" in reason, reason


def test_cli_serve_fails_clearly_without_gi(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(serve, "SYSTEM_PYTHON", sys.executable)
    rc = cli_main(["scenarios", "serve", "quiet_urban", "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 3
    assert "gir1.2-gst-rtsp-server-1.0" in err
    assert not any(tmp_path.iterdir()), "nothing is rendered when the server cannot run"


def test_server_process_refuses_to_start_without_gi(tmp_path):
    clip = tmp_path / "x.mp4"
    clip.write_bytes(b"")
    proc = serve.RtspServerProcess(None, clip, python=str(tmp_path / "no-python"))
    try:
        proc.start()
    except serve.ServeError as e:
        assert "python3-gi" in str(e)
    else:
        raise AssertionError("start() should fail")
    assert not proc.running


def test_render_cache_reuses_only_the_same_render(tmp_path):
    sc = S.load("quiet_urban")
    a, reused_a = serve.render_cached(sc, tmp_path, seconds=0.2, resolution="640x360")
    b, reused_b = serve.render_cached(sc, tmp_path, seconds=0.2, resolution="640x360")
    c, reused_c = serve.render_cached(sc, tmp_path, seconds=0.2, seed=5, resolution="640x360")
    assert (reused_a, reused_b, reused_c) == (False, True, False)
    assert a == b and a != c
    assert a.is_file() and a.stat().st_size > 0
    assert a.with_name("quiet_urban.truth.jsonl").is_file()
