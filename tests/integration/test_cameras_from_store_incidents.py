"""`smartcity incidents` with `cameras_from_store`: the store's cameras (the API's) are watched
besides the file's, and a camera change made through the store plus the API's
`config.changed` request reaches the running service, camera by camera, on a real broker.

Tracks are published by hand: a car driving down through a zone and across lines (12 frames).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from smartcity.bus import (
    Broker,
    ConfigChangedEvent,
    Publisher,
    TracksEvent,
    publisher_endpoint,
)
from smartcity.incidents.config import (
    IncidentsConfigError,
    load_incidents_config,
    parse_incidents_config,
)
from smartcity.incidents.service import IncidentsService
from smartcity.store import Store
from tests.conftest import ROOT, wait_for
from tests.integration.test_incidents_service import FakeEvidence

T0 = 1_790_000_000 * 10**9
GATE = {"name": "gate", "a": [0, 200], "b": [640, 200], "in": "left"}
GATE2 = {"name": "gate2", "a": [0, 250], "b": [640, 250], "in": "left"}
DEPOT = {
    "name": "depot",
    "polygon": [[100, 100], [300, 100], [300, 300], [100, 300]],
    "forbidden": ["car"],
    "min_dwell_s": 0.2,
}
QUIET = {"health": {"enabled": False}, "snapshot_every_s": 0}  # no health checks in these tests


def _config(data: Path, cameras: list[dict], **block: object) -> dict:
    return {
        "data_dir": str(data),
        "evidence": {"snapshot": False, "clip": False},
        "stats": {"ingest_every_s": 0.2},
        "cameras": cameras,
        "cameras_from_store": {"data_dir": str(data), "defaults": QUIET, **block},
    }


def _write(path: Path, data: Path, cameras: list[dict], **block: object) -> Path:
    path.write_text(yaml.safe_dump(_config(data, cameras, **block)))
    return path


def _drive(pub: Publisher, cam: str, track: int, frame0: int, pts0: float, ys: list[float]) -> int:
    """One car whose box bottom goes through ys (px), a frame every 0.2 s."""
    for k, y in enumerate(ys):
        ev = TracksEvent(
            cam=cam, seq=0, frame=frame0 + k, pts=pts0 + k * 0.2,
            t_ns=T0 + int((pts0 + k * 0.2) * 1e9), w=640, h=360,
            track_id=np.array([track], np.int64), class_id=np.array([2], np.int32),
            score=np.array([0.9], np.float32),
            xyxy=np.array([[150, y - 40, 250, y]], np.float32),
        )  # fmt: skip
        assert pub.publish(ev)
        time.sleep(0.01)
    return frame0 + len(ys)


def _car(pub: Publisher, cam: str, track: int, frame0: int, pts0: float) -> int:
    """One car driving down through the depot zone, across y=200 and y=250: 12 frames."""
    return _drive(pub, cam, track, frame0, pts0, [60 + 25 * k for k in range(12)])


def _count(counts: dict, line: str) -> int:
    """Cars that crossed `line`, either way."""
    return sum(per.get("car", 0) for per in counts[line].values())


class Served:
    """The service on a thread of its own, a publisher for tracks and the API's requests."""

    def __init__(self, config: Path, run_dir: Path) -> None:
        self.service = IncidentsService(
            load_incidents_config(config),
            str(run_dir),
            evidence_factory=FakeEvidence,
            config_path=config,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,))
        self.thread.start()
        self.pub = Publisher(publisher_endpoint(run_dir))
        time.sleep(0.5)  # the service's subscription reaches the broker

    def announce(self, cams: tuple[str, ...], reason: str) -> None:
        """The API's config.changed, repeated until the service has reloaded."""
        n = len(self.service.reloads)

        def reloaded() -> bool:
            ev = ConfigChangedEvent(seq=0, t_ns=time.time_ns(), cams=cams, reason=reason)
            self.pub.publish(ev)
            return wait_for(lambda: len(self.service.reloads) > n, 1.0)

        assert wait_for(reloaded, 20, interval=0), f"{reason}: no reload"

    def seen(self, n: int) -> None:
        assert wait_for(lambda: self.service.counters.tracks_messages == n, 20)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.pub.close()
        self.service.close()


def test_api_changes_reach_the_service_camera_by_camera(run_dir, tmp_path):
    data = tmp_path / "data"
    with Store.open(data_dir=data) as store:
        store.cameras.add("s1", "Counting", "rtsp://cams.example/s1", geometry={"lines": [GATE]})
        depot = {"zones": [DEPOT], "lines": [GATE]}
        store.cameras.add("s2", "Depot", "rtsp://cams.example/s2", geometry=depot)
        store.cameras.add("s3", "To delete", "rtsp://cams.example/s3", geometry={"lines": [GATE]})
        store.cameras.add("off", "Disabled", "rtsp://cams.example/x", enabled=False)
    file_cam = {"id": "f1", "geometry": {"lines": [GATE]}, **QUIET}
    config = _write(tmp_path / "incidents.yaml", data, [file_cam])
    with Broker(run_dir):
        served = Served(config, run_dir)
        service = served.service
        try:
            assert [(c.cam, c.from_store) for c in service.settings.cameras] == [
                ("f1", False),
                ("s1", True),
                ("s2", True),
                ("s3", True),
            ]
            f1_rules = service.rules["f1"]
            _car(served.pub, "s2", 1, 0, 0.0)  # a car in s2's depot: an incident
            _car(served.pub, "s3", 1, 0, 0.0)  # counted on s3, its minute still open
            _car(served.pub, "f1", 1, 0, 0.0)
            _car(served.pub, "s1", 1, 0, 0.0)
            served.seen(48)
            assert _count(service.rules["s1"].line_counts, "gate") == 1
            assert len(service.store.incidents.list(camera_id="s2").items) == 1

            # The API adds a line to s1: s1 gets new rules, nothing else is touched.
            s1_rules = service.rules["s1"]
            service.store.cameras.update("s1", geometry={"lines": [GATE, GATE2]})
            served.announce(("s1",), "api: camera changed")
            result = service.reloads[-1]
            assert result.replaced == ("s1",) and result.cams == ("s1",)
            assert service.rules["s1"] is not s1_rules
            assert service.rules["f1"] is f1_rules  # the file's camera untouched
            _car(served.pub, "s1", 2, 12, 3.0)
            served.seen(60)
            counts = service.rules["s1"].line_counts
            assert _count(counts, "gate2") == 1  # the new line counts
            assert _count(counts, "gate") == 1  # its counts and track state started again

            # The API disables s2 (it has an incident: it cannot be deleted) and deletes s3:
            # neither is watched any more.
            service.store.cameras.update("s2", enabled=False)
            service.store.cameras.delete("s3")
            served.announce(("s2", "s3"), "api: camera changed")
            assert service.reloads[-1].removed == ("s2", "s3")
            assert set(service.rules) == {"f1", "s1"}
            # s2's open minute was written as it left (the store still has s2); s3's went with
            # it (a deleted camera's figures are deleted: writing them would fail).
            assert [
                b.count for b in service.store.traffic.query("s2", "1m", source_kind="line")
            ] == [1]
            _car(served.pub, "s2", 2, 12, 3.0)
            _car(served.pub, "s3", 2, 12, 3.0)
            assert wait_for(lambda: service.counters.other_cameras == 24, 20)
            assert len(service.store.incidents.list(camera_id="s2").items) == 1  # no new one

            # A store camera added by the API is watched at once.
            service.store.cameras.add(
                "s4", "New", "rtsp://cams.example/s4", geometry={"zones": [DEPOT]}
            )
            served.announce(("s4",), "api: camera added")
            assert service.reloads[-1].added == ("s4",)
            _car(served.pub, "s4", 1, 0, 0.0)
            served.seen(72)
            assert len(service.store.incidents.list(camera_id="s4").items) == 1
            # Requests that are not the API's (an engine's report, an admin's) change nothing.
            n = len(service.reloads)
            for reason in ("applied", "admin: engine file edited"):
                served.pub.publish(ConfigChangedEvent(seq=0, t_ns=time.time_ns(), reason=reason))
            time.sleep(0.5)
            assert len(service.reloads) == n
            # f1 leaves the file: the row the service wrote for it ("engine:f1") does not make
            # it a store camera.
            _write(config, data, [])
            service.request_reload("SIGHUP")
            assert wait_for(lambda: len(service.reloads) > n, 10)
            assert service.reloads[-1].removed == ("f1",)
            assert set(service.rules) == {"s1", "s4"}
        finally:
            served.close()
    with Store.open(data_dir=data) as store:
        lines = {
            (c, b.source_name): b.count
            for c in ("f1", "s1", "s2")
            for b in store.traffic.query(c, "1m", source_kind="line")
        }
        # s1: one car before its new rules and one after, in the same minute.
        assert lines == {
            ("f1", "gate"): 1,
            ("s1", "gate"): 2,
            ("s1", "gate2"): 1,
            ("s2", "gate"): 1,
        }
        assert service.counters.store_errors == 0, service.counters.last_error
        assert service.traffic.late == 0
        assert store.integrity_check() == []


def _waiting(pub: Publisher, cam: str, track: int, frame0: int, pts0: float) -> int:
    """A car that comes down to y=205, 5 px beyond the gate (y=200), and waits there: its
    crossing is not settled (settle_px 8) while it stands: 12 frames."""
    return _drive(pub, cam, track, frame0, pts0, [min(140 + 15 * k, 205) for k in range(12)])


def test_crossings_waiting_to_settle_count_when_a_camera_leaves_or_changes(run_dir, tmp_path):
    """A car standing just past a line has crossed it, but the crossing counts only once it
    settles: when its camera leaves the set, or its rules are replaced, or the service stops,
    it counts then (RuleSet.finish), and the minute written holds it."""
    data = tmp_path / "data"
    cams = [{"id": c, "geometry": {"lines": [GATE]}, **QUIET} for c in ("a", "b", "c")]
    config = _write(tmp_path / "incidents.yaml", data, cams)
    with Broker(run_dir):
        served = Served(config, run_dir)
        service = served.service
        try:
            for cam in ("a", "b", "c"):
                _waiting(served.pub, cam, 1, 0, 0.0)
            served.seen(36)
            assert all(_count(service.rules[c].line_counts, "gate") == 0 for c in "abc")
            changed = {**cams[1], "geometry": {"lines": [GATE, GATE2]}}
            _write(config, data, [changed, cams[2]])  # a leaves, b's rules are replaced
            n = len(service.reloads)
            service.request_reload("test")
            assert wait_for(lambda: len(service.reloads) > n, 10)
            assert service.reloads[-1].removed == ("a",)
            assert service.reloads[-1].replaced == ("b",)
        finally:
            served.close()  # c: counted at the stop
    with Store.open(data_dir=data) as store:
        counts = {c: [b.count for b in store.traffic.query(c, "1m", source_kind="line")]
                  for c in "abc"}  # fmt: skip
        assert counts == {"a": [1], "b": [1], "c": [1]}


def test_a_store_that_cannot_be_read_refuses_the_reload(run_dir, tmp_path):
    data = tmp_path / "data"
    with Store.open(data_dir=data) as store:
        store.cameras.add("s1", "Counting", "rtsp://cams.example/s1", geometry={"lines": [GATE]})
        store.cameras.add("bad", "Bad", "rtsp://cams.example/b", geometry={"lines": [{"a": 1}]})
    config = _write(tmp_path / "incidents.yaml", data, [])
    with Broker(run_dir):
        served = Served(config, run_dir)
        service = served.service
        try:
            assert [c.cam for c in service.settings.cameras] == ["s1"]  # "bad" left out
            result = service.reload(("test",))
            (error,) = result.errors
            assert error.startswith("store camera 'bad': cameras.bad.lines[0]"), error
            bad = "postgresql+psycopg://smartcity:s3cret@127.0.0.1:1/smartcity"
            _write(config, data, [], url=bad)
            result = service.reload(("test",))
            assert result.refused.startswith("cameras_from_store: cannot"), result.refused
            assert "s3cret" not in result.refused and "***" in result.refused
            assert set(service.rules) == {"s1"}
            assert service.settings.cameras_from_store.url is None  # the running set kept
        finally:
            served.close()


def test_the_block_is_checked_with_the_file(tmp_path):
    ok = parse_incidents_config(_config(tmp_path, []))
    assert ok.cameras == () and ok.cameras_from_store is not None
    assert ok.cameras_from_store.snapshot_every_s == 0
    cases = [
        ({"rules": {"speeding": {"margin_kmh": "ten"}}}, r"defaults\.rules\.speeding\.margin_kmh"),
        ({"rules": {"nonsense": {}}}, r"defaults\.rules\.nonsense: unknown rule"),
        ({"health": {"frozen_s": 0}}, r"cameras_from_store\.defaults\.health\.frozen_s"),
        ({"name": "x"}, r"cameras_from_store\.defaults\.name: unknown field"),
    ]
    for defaults, pattern in cases:
        with pytest.raises(IncidentsConfigError, match=pattern):
            parse_incidents_config(_config(tmp_path, [], defaults=defaults))
    with pytest.raises(IncidentsConfigError, match="cameras_from_store: give data_dir or url"):
        parse_incidents_config({"cameras_from_store": {}})


def test_sighup_reloads_the_service(run_dir, tmp_path):
    """`smartcity incidents` with an empty store: a camera added to the store, then SIGHUP."""
    data = tmp_path / "data"
    config = tmp_path / "incidents.yaml"
    config.write_text(yaml.safe_dump(_config(data, [])))
    with Broker(run_dir), Publisher(publisher_endpoint(run_dir)) as pub:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartcity", "incidents", "--config", str(config),
             "--run-dir", str(run_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "0 cameras () (0 from the store)" in line, line
            with Store.open(data_dir=data) as store:
                store.cameras.add("s1", "Depot", "rtsp://x.example/1", geometry={"zones": [DEPOT]})
                proc.send_signal(signal.SIGHUP)
                time.sleep(1.0)  # the reload, and the subscription already there

                def incident() -> bool:
                    _car(pub, "s1", 1, 0, 0.0)
                    return wait_for(lambda: bool(store.incidents.list(camera_id="s1").items), 2.0)

                assert wait_for(incident, 20, interval=0)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
            assert proc.returncode == 0, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
