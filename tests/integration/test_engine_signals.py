"""`smartcity engine` as a process: SIGHUP reloads, SIGTERM and SIGINT stop it cleanly, a bad
configuration is refused before anything starts.

Times are printed, never asserted: a generous time-out on the process is the failure condition.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from smartcity.bus import Broker, ConfigChangedEvent, Subscriber, TracksEvent
from smartcity.bus import defaults as bus_defaults
from tests.conftest import ROOT, wait_for
from tests.support.engine_config import camera, write_config

EXIT_TIMEOUT_S = 15  # the engine must stop within 5 s; this only catches a hang


def start_engine(cfg: Path, run_dir: Path, *, with_broker: bool = True) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "smartcity", "engine", "--config", str(cfg)]
    cmd += ["--run-dir", str(run_dir)] + (["--with-broker"] if with_broker else [])
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


class Watch:
    def __init__(self, run_dir: Path, topics: list[str]) -> None:
        out = run_dir / bus_defaults.XPUB_NAME
        assert wait_for(out.exists, 60), "the broker never bound bus-out"
        self.sub = Subscriber(f"ipc://{out}", topics)
        self.events: list[object] = []

    def until(self, pred: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.sub.recv(timeout_s=0.2)
            if ev is not None:
                self.events.append(ev)
            if pred():
                return True
        return pred()

    def tracks(self, cam: str, since: int = 0) -> list[TracksEvent]:
        return [e for e in self.events[since:] if isinstance(e, TracksEvent) and e.cam == cam]

    def config(self, prefix: str) -> list[tuple[int, ConfigChangedEvent]]:
        return [
            (i, e)
            for i, e in enumerate(self.events)
            if isinstance(e, ConfigChangedEvent) and e.reason.startswith(prefix)
        ]


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the engine did not exit within {EXIT_TIMEOUT_S} s:\n{out}\n{err}")
    took = time.monotonic() - t0
    print(f"{signal.Signals(sig).name}: exited with {proc.returncode} after {took:.2f} s")
    return out, err, took


def test_sighup_reloads_the_camera_set(vtest, run_dir, tmp_path):
    cfg = write_config(tmp_path / "engine.yaml", [camera("a", vtest), camera("b", vtest)])
    proc = start_engine(cfg, run_dir)
    watch: Watch | None = None
    try:
        watch = Watch(run_dir, ["tracks.", "config.changed"])
        assert watch.until(lambda: len(watch.tracks("a")) >= 3 and len(watch.tracks("b")) >= 3)
        write_config(cfg, [camera("a", vtest), camera("c", vtest)])
        proc.send_signal(signal.SIGHUP)
        assert watch.until(lambda: bool(watch.config("applied")))
        idx, ev = watch.config("applied")[0]
        assert ev.cams == ("b", "c")
        assert watch.until(lambda: len(watch.tracks("c")) >= 3)
        # A bad file on the next SIGHUP: refused (named on the bus and in the log), a and c go on.
        write_config(cfg, [camera("a", vtest), camera("c", vtest, analyze_fps=-2)])
        proc.send_signal(signal.SIGHUP)
        assert watch.until(lambda: bool(watch.config("refused")))
        n = len(watch.events)
        assert watch.until(lambda: len(watch.tracks("c", since=n)) >= 3)
    finally:
        out, err, _ = stop(proc)
        if watch is not None:
            watch.sub.close()
    assert proc.returncode == 0, err
    assert watch is not None and not watch.tracks("b", since=idx)
    a = [e.seq for e in watch.tracks("a")]
    assert a == list(range(a[0], a[0] + len(a)))  # a never missed a beat
    refused = watch.config("refused")[0][1].reason
    assert "cameras[1].analyze_fps (camera 'c'): must not be negative" in refused
    assert "camera c added" in err and "camera b removed" in err
    assert "refused, nothing changed: cameras[1].analyze_fps (camera 'c')" in err
    assert "reloads: 1 applied, 1 refused" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_engine_cleanly(vtest, run_dir, tmp_path, sig):
    cfg = write_config(tmp_path / "engine.yaml", [camera("a", vtest), camera("b", vtest)])
    proc = start_engine(cfg, run_dir)
    watch: Watch | None = None
    try:
        watch = Watch(run_dir, ["tracks."])
        assert watch.until(lambda: len(watch.tracks("a")) >= 3 and len(watch.tracks("b")) >= 3)
    finally:
        out, err, took = stop(proc, sig)
        if watch is not None:
            watch.sub.close()
    assert proc.returncode == 0, err
    assert "stopped" in out and "after the signal" in out, out
    assert "Traceback" not in err, err
    print(f"engine: {out.strip().splitlines()[-1]} (measured from outside: {took:.2f} s)")


def test_sigterm_flushes_the_batch_in_hand(vtest, run_dir, tmp_path):
    """With the broker outside the engine, every tracks message the engine counted as sent
    reaches a subscriber: the last sequence number of each camera matches the engine's count."""
    cfg = write_config(tmp_path / "engine.yaml", [camera("a", vtest), camera("b", vtest)])
    with Broker(run_dir) as _broker:
        watch = Watch(run_dir, ["tracks."])
        time.sleep(0.2)  # the subscription reaches the broker
        proc = start_engine(cfg, run_dir, with_broker=False)
        try:
            assert watch.until(lambda: len(watch.tracks("a")) >= 5 and len(watch.tracks("b")) >= 5)
        finally:
            out, err, _ = stop(proc)
        while (ev := watch.sub.recv(timeout_s=1.0)) is not None:
            watch.events.append(ev)
        watch.sub.close()
    assert proc.returncode == 0, err
    line = next(x for x in out.splitlines() if "tracks messages" in x)
    published = int(line.split(" tracks messages")[0].rsplit(" ", 1)[1])
    last = {cam: watch.tracks(cam)[-1].seq for cam in ("a", "b")}
    print(f"engine sent {published} tracks messages; last seq seen {last}")
    assert sum(s + 1 for s in last.values()) == published
    assert "(0 dropped)" in line


@pytest.mark.parametrize(
    ("cameras", "extra", "expected"),
    [
        (
            [{"id": "gate-1", "url": "VTEST", "fps": 5}],
            {},
            "cameras[0].fps (camera 'gate-1'): unknown field",
        ),
        (
            [{"id": "gate-1", "url": "VTEST"}, {"id": "gate-2", "url": "ftp://10.0.0.5/cam"}],
            {},
            "cameras[1].url (camera 'gate-2'): scheme 'ftp' is not supported",
        ),
        (
            [{"id": "gate-1", "url": "udp://239.0.0.1:5000"}],
            {},
            "cameras[0].url (camera 'gate-1'): scheme 'udp' is not supported",
        ),
        (
            [{"id": "gate-1", "url": "VTEST", "analyze_fps": -5}],
            {},
            "cameras[0].analyze_fps (camera 'gate-1'): must not be negative",
        ),
        (
            [{"id": "gate-1", "url": "/srv/nowhere/cam.mp4"}],
            {},
            "cameras[0].url (camera 'gate-1'): no such file /srv/nowhere/cam.mp4",
        ),
        (
            [{"id": "gate 1", "url": "VTEST"}],
            {},
            "cameras[0].id (camera 'gate 1'): must be 1 to 64 letters",
        ),
        (
            [{"id": "gate-1", "url": "VTEST", "rtsp_transport": "sctp"}],
            {},
            "cameras[0].rtsp_transport (camera 'gate-1'): must be 'tcp' or 'udp'",
        ),
        (
            [
                {
                    "id": "gate-1",
                    "url": "VTEST",
                    "image_to_ground": [[1, 2, 3], [2, 4, 6], [0, 0, 1]],
                }
            ],
            {},
            "cameras[0].image_to_ground (camera 'gate-1'): the homography is singular",
        ),
        ([{"id": "gate-1", "url": "VTEST"}], {"model": "yolo-nowhere"}, "model: no model"),
        ([{"id": "gate-1", "url": "VTEST"}], {"tracking": {"track_thresh": 7}}, "tracking:"),
    ],
    ids=[
        "unknown-field",
        "ftp-scheme",
        "udp-scheme",
        "negative-rate",
        "missing-file",
        "bad-id",
        "bad-transport",
        "singular-calibration",
        "missing-model",
        "tracking-range",
    ],
)
def test_bad_config_is_refused_before_anything_starts(
    vtest, run_dir, tmp_path, cameras, extra, expected
):
    cams = [{k: str(vtest) if v == "VTEST" else v for k, v in c.items()} for c in cameras]
    cfg = write_config(tmp_path / "engine.yaml", cams, **extra)
    proc = start_engine(cfg, run_dir)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert expected in err, err
    assert "cameras (" not in out  # never started
    assert not any(run_dir.iterdir())  # no broker, no evidence server, nothing half-started


def test_calibration_block_as_in_the_incidents_config(vtest):
    """The engine takes the incidents service's calibration block (metres or lat/lon pairs)."""
    import numpy as np

    from smartcity.engine.process import EngineConfigError, parse_engine_config

    def cfg(cal):
        return {
            "model": "person-ssdlite",
            "models_root": str(ROOT / "models"),
            "cameras": [{"id": "a", "url": str(vtest), "calibration": cal}],
        }

    pts = [[100, 500], [600, 500], [500, 200], [200, 200]]
    ground = [[0, 0], [10, 0], [10, 30], [0, 30]]
    cal = {"points": [{"image": i, "ground": g} for i, g in zip(pts, ground, strict=True)]}
    (cam,) = parse_engine_config(cfg(cal)).cameras
    H = np.asarray(cam.image_to_ground)
    p = H @ np.array([600, 500, 1.0])
    np.testing.assert_allclose(p[:2] / p[2], [10, 0], atol=1e-6)
    latlon = {
        "points": [
            {"image": [100, 500], "latlon": [-6.2000, 106.8166]},
            {"image": [600, 500], "latlon": [-6.2000, 106.8167]},
            {"image": [500, 200], "latlon": [-6.1997, 106.8167]},
            {"image": [200, 200], "latlon": [-6.1997, 106.8166]},
        ]
    }
    assert parse_engine_config(cfg(latlon)).cameras[0].image_to_ground is not None
    with pytest.raises(EngineConfigError, match=r"cameras\[0\]\.calibration\.points \(camera"):
        parse_engine_config(cfg({"points": cal["points"][:3]}))


def test_backend_setting(vtest):
    from smartcity.engine.process import EngineConfigError, parse_engine_config

    base = {
        "model": "person-ssdlite",
        "models_root": str(ROOT / "models"),
        "cameras": [{"id": "a", "url": str(vtest)}],
    }
    assert parse_engine_config(base).backend == "auto"
    assert parse_engine_config(dict(base, backend="onnxruntime")).backend == "onnxruntime"
    with pytest.raises(EngineConfigError, match="backend: must be one of auto, tensorrt"):
        parse_engine_config(dict(base, backend="openvino"))
