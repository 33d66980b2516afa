"""The incidents service end to end: bus in, store and bus out, evidence from the engine."""

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
    IncidentEvent,
    Publisher,
    StatsEvent,
    Subscriber,
    TracksEvent,
    publisher_endpoint,
    subscriber_endpoint,
)
from smartcity.engine.process import Engine, parse_engine_config
from smartcity.incidents.config import (
    CameraRules,
    IncidentsConfigError,
    IncidentsSettings,
    parse_incidents_config,
)
from smartcity.incidents.evidence import EvidenceSettings
from smartcity.incidents.geometry import geometry_from_scenario
from smartcity.incidents.rules.camera_health import CameraHealthSettings
from smartcity.incidents.rules.oracle import oracle_frames, rules_config_for
from smartcity.incidents.service import IncidentsService
from smartcity.store import Store
from tests.conftest import ROOT, wait_for

T0 = 1_790_000_000 * 10**9


class FakeEvidence:
    """Stands in for the engine's evidence server where no engine runs."""

    def snapshot(self, cam, timeout_s=10.0):
        import cv2

        from smartcity.bus.evidence import Snapshot

        ok, jpeg = cv2.imencode(".jpg", np.full((360, 640, 3), 60, np.uint8))
        return Snapshot(cam, 1, 0.0, T0, 640, 360, jpeg.tobytes())

    def clip(self, cam, t0, t1, wait_s=0.0, timeout_s=None):
        from smartcity.bus.evidence import Clip

        return Clip(cam, t0, t1, 3, True, t1 - t0, False, b"\x00\x00\x00\x18ftypisom")

    def close(self):
        pass


def _event(frame) -> TracksEvent:
    return TracksEvent(
        cam=frame.cam,
        seq=0,
        frame=frame.frame,
        pts=frame.pts,
        t_ns=frame.t_ns,
        w=frame.w,
        h=frame.h,
        track_id=frame.track_id,
        class_id=frame.class_id,
        score=frame.score,
        xyxy=frame.xyxy,
        ground_xy=frame.ground_xy,
        speed_kmh=frame.speed_kmh,
    )


def _wrong_way_through_the_service(run_dir, tmp_path, evidence_factory, until=None):
    """Publishes the oracle tracks of wrong_way_urban to a running service; returns the frames,
    the scene header, the service and the incident/stats events a subscriber received."""
    scene, head = oracle_frames("wrong_way_urban", cam="cam1")
    frames = [f for f, _ in scene]
    settings = IncidentsSettings(
        data_dir=tmp_path / "data",
        database=None,
        cameras=(
            CameraRules(
                cam="cam1",
                name="Wrong way",
                geometry=geometry_from_scenario(head, cam="cam1"),
                rules=rules_config_for(head),
                health=CameraHealthSettings.from_mapping("cam1", {"enabled": False}),
                snapshot_every_s=0,
                raw_geometry={},
            ),
        ),
        evidence=EvidenceSettings(pre_s=1, post_s=1),
    )
    got: list = []
    with Broker(run_dir):
        service = IncidentsService(settings, str(run_dir), evidence_factory=evidence_factory)
        stop = threading.Event()
        runner = threading.Thread(target=service.run, args=(stop,))
        runner.start()
        try:
            with Subscriber(subscriber_endpoint(run_dir), ["incident.", "stats."]) as sub:
                with Publisher(publisher_endpoint(run_dir)) as pub:
                    time.sleep(0.3)  # subscriptions reach the broker
                    for f in frames:
                        assert pub.publish(_event(f))
                    assert wait_for(lambda: service.counters.tracks_messages == len(frames), 20)
                    if until is not None:
                        assert wait_for(lambda: until(service), 20)
                    while (ev := sub.recv(timeout_s=1.0)) is not None:
                        got.append(ev)
        finally:
            stop.set()
            runner.join(10)
        service.close()
    return frames, head, service, got


def test_rendered_wrong_way_scene_through_the_bus(run_dir, tmp_path):
    """Oracle tracks of a rendered scene on the bus -> exactly its expected incident in the
    store (before it is on the bus), with evidence, traffic buckets and ingest counters."""
    frames, head, service, got = _wrong_way_through_the_service(
        run_dir, tmp_path, FakeEvidence, until=lambda s: s.evidence.counts["clips"] == 1
    )
    store = Store.open(data_dir=tmp_path / "data")
    incidents = store.incidents.list(camera_id="cam1").items
    assert [i.type for i in incidents] == ["wrong_way"]
    (inc,) = incidents
    opened = [e for e in got if isinstance(e, IncidentEvent) and e.state == "open"]
    assert [(e.id, e.type) for e in opened] == [(inc.id, "wrong_way")]
    kinds = sorted(e.kind for e in store.evidence.list(inc.id))
    assert kinds == ["clip", "snapshot"]
    # Traffic: the scene's background cars crossed its counting line; minute buckets stored.
    buckets = store.traffic.query("cam1", "1m")
    line_total = sum(b.count for b in buckets if b.source_kind == "line")
    truth_total = sum(
        n
        for line in head["lines"].values()
        for d in ("forward", "backward")
        for n in line[d].values()
    )
    assert line_total == truth_total > 0
    assert any(b.source_kind == "lane" and b.los for b in buckets)
    # The flush at stop publishes the minute's counts.
    assert any(isinstance(e, StatsEvent) for e in got) or service.counters.stats_published
    ingest = store.ingest.get("cam1")
    assert ingest.received == len(frames) and ingest.missed == 0
    assert ingest.last_seq == len(frames) - 1
    assert store.integrity_check() == []
    store.close()


class FullDisk(FakeEvidence):
    def clip(self, cam, t0, t1, wait_s=0.0, timeout_s=None):
        raise OSError(28, "No space left on device")


def test_full_disk_raises_a_system_incident_and_analysis_goes_on(run_dir, tmp_path):
    def system_raised(service):
        return service.counters.by_rule["system"] == 1

    frames, _, service, got = _wrong_way_through_the_service(
        run_dir, tmp_path, FullDisk, until=system_raised
    )
    assert service.counters.tracks_messages == len(frames)
    with Store.open(data_dir=tmp_path / "data") as store:
        (wrong,) = store.incidents.list(camera_id="cam1").items
        assert [e.kind for e in store.evidence.list(wrong.id)] == ["snapshot"]
        notes = [e.text for e in store.incidents.events(wrong.id) if e.kind == "note"]
        assert notes and "No space left" in notes[0]
        (system,) = store.incidents.list(type="system").items
        assert system.key == "evidence_disk_full" and system.severity == "critical"
    assert any(isinstance(e, IncidentEvent) and e.type == "system" for e in got)


_CONFIG = {
    "cameras": [
        {
            "id": "cam1",
            "geometry": {
                "zones": [
                    {
                        "name": "depot",
                        "polygon": [[100, 100], [300, 100], [300, 300], [100, 300]],
                        "forbidden": ["car"],
                        "min_dwell_s": 0.2,
                    }
                ],
                "lines": [{"name": "gate", "a": [0, 200], "b": [640, 200], "in": "left"}],
            },
            "health": {"enabled": False},
            "snapshot_every_s": 0,
        }
    ],
    "evidence": {"snapshot": False, "clip": False},
    "stats": {"ingest_every_s": 0.2},
}


def _car_through_the_depot(pub: Publisher, track: int, frame0: int, pts0: float) -> int:
    """One car driving down through the depot zone and across the gate line: 12 frames."""
    for k in range(12):
        y = 60 + 25 * k
        ev = TracksEvent(
            cam="cam1", seq=0, frame=frame0 + k, pts=pts0 + k * 0.2,
            t_ns=T0 + int((pts0 + k * 0.2) * 1e9), w=640, h=360,
            track_id=np.array([track], np.int64), class_id=np.array([2], np.int32),
            score=np.array([0.9], np.float32),
            xyxy=np.array([[150, y - 40, 250, y]], np.float32),
        )  # fmt: skip
        assert pub.publish(ev)
        time.sleep(0.01)
    return frame0 + 12


def _service(config: Path, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "smartcity", "incidents", "--config", str(config),
         "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "smartcity incidents:" in line, line
    time.sleep(0.5)  # its subscription reaches the broker


def test_sigkill_loses_nothing_committed_and_counts_what_it_missed(run_dir, tmp_path):
    cfg = dict(_CONFIG, data_dir=str(tmp_path / "data"))
    config = tmp_path / "incidents.yaml"
    config.write_text(yaml.safe_dump(cfg))
    db = tmp_path / "data" / "smartcity.db"
    with Broker(run_dir), Publisher(publisher_endpoint(run_dir)) as pub:
        proc = _service(config, run_dir)
        try:
            _wait_ready(proc)
            frame = _car_through_the_depot(pub, 1, 0, 0.0)
            frame = _car_through_the_depot(pub, 2, frame, 3.0)

            def two_stored() -> bool:
                if not db.exists():
                    return False
                with Store.open(f"sqlite:///{db}") as s:
                    c = s.ingest.get("cam1")
                    return len(s.incidents.list(camera_id="cam1").items) == 2 and (
                        c is not None and c.received == 24
                    )

            assert wait_for(two_stored, 20)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()
            # 12 tracks messages published while the service is dead: lost to it.
            frame = _car_through_the_depot(pub, 3, frame, 6.0)
            proc = _service(config, run_dir)
            _wait_ready(proc)
            frame = _car_through_the_depot(pub, 4, frame, 9.0)

            def four_seen() -> bool:
                with Store.open(f"sqlite:///{db}") as s:
                    c = s.ingest.get("cam1")
                    return c is not None and c.received == 36 and c.missed == 12

            assert wait_for(four_seen, 20)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
            assert proc.returncode == 0, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    with Store.open(f"sqlite:///{db}") as s:
        assert s.integrity_check() == []
        incidents = s.incidents.list(camera_id="cam1").items
        assert sorted(i.key for i in incidents) == [
            "zone:depot:track:1",
            "zone:depot:track:2",
            "zone:depot:track:4",
        ]
        # The minute in progress lives in memory until it closes (SIGTERM writes it): the
        # counts of cars 1 and 2 died with the killed process, car 3 was never seen.
        counts = s.traffic.query("cam1", "1m", source_kind="line")
        assert sum(b.count for b in counts) == 1


def test_bad_configuration_names_camera_and_field(tmp_path):
    bad = dict(_CONFIG)
    bad["cameras"] = [dict(_CONFIG["cameras"][0], rules={"speeding": {}})]
    with pytest.raises(IncidentsConfigError, match=r"cameras\.cam1\.rules\.speeding"):
        parse_incidents_config(bad)
    bad["cameras"] = [dict(_CONFIG["cameras"][0], health={"frozen_s": 0})]
    with pytest.raises(IncidentsConfigError, match=r"cameras\.cam1\.health\.frozen_s"):
        parse_incidents_config(bad)
    with pytest.raises(IncidentsConfigError, match=r"evidence\.pre_s"):
        parse_incidents_config(dict(_CONFIG, evidence={"pre_s": -1}))
    with pytest.raises(IncidentsConfigError, match="cameras: must be a non-empty list"):
        parse_incidents_config({"cameras": []})
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(dict(_CONFIG, retention={"evidence_dayz": 3})))
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", "incidents", "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2 and "retention.evidence_dayz: unknown field" in out.stderr


def test_real_engine_evidence_for_a_zone_intrusion(vtest, run_dir, tmp_path):
    """The person model on the real clip, a zone over the whole picture that forbids people:
    incidents with a real annotated snapshot and an MP4 clip from the engine's packet ring."""
    engine_cfg = parse_engine_config(
        {
            "model": "person-ssdlite",
            "models_root": str(ROOT / "models"),
            "max_batch": 4,
            "cameras": [
                {"id": "gate", "url": str(vtest), "analyze_fps": 5, "loop": True, "realtime": True},
            ],
        }  # fmt: skip
    )
    cfg = {
        "data_dir": str(tmp_path / "data"),
        "evidence": {"pre_s": 1, "post_s": 1},
        "cameras": [
            {
                "id": "gate",
                "geometry": {
                    "zones": [
                        {
                            "name": "all",
                            "polygon": [[0, 0], [768, 0], [768, 576], [0, 576]],
                            "forbidden": ["person"],
                            "min_dwell_s": 1,
                        }
                    ]
                },
                "snapshot_every_s": 1,
            }
        ],
    }
    settings = parse_incidents_config(cfg)
    with Broker(run_dir):
        engine = Engine(engine_cfg, publisher_endpoint(run_dir))
        service = IncidentsService(settings, str(run_dir))
        stop = threading.Event()
        threads = [
            threading.Thread(target=engine.run, args=(stop,)),
            threading.Thread(target=service.run, args=(stop,)),
        ]
        for t in threads:
            t.start()
        try:

            def clips_stored() -> bool:
                return service.evidence.counts["clips"] >= 2

            assert wait_for(clips_stored, 40), service.evidence.counts
        finally:
            stop.set()
            for t in threads:
                t.join(15)
            service.close()
            engine.close()
    import av
    import cv2

    store = Store.open(data_dir=tmp_path / "data")
    incidents = store.incidents.list(camera_id="gate").items
    assert incidents and all(i.type == "zone_intrusion" for i in incidents)
    with_clip = [i for i in incidents if any(e.kind == "clip" for e in store.evidence.list(i.id))]
    assert with_clip
    ev = {e.kind: e for e in store.evidence.list(with_clip[0].id)}
    img = cv2.imread(str(store.evidence.abspath(ev["snapshot"])))
    assert img is not None and img.shape == (576, 768, 3)
    with av.open(str(store.evidence.abspath(ev["clip"]))) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n >= 10  # about 2 s of a 10 fps clip (from the keyframe before)
    assert service.counters.health_frames > 0  # the camera-health snapshots flowed
    assert not [i for i in store.incidents.list(type="camera_health").items]
    store.close()


def test_example_configuration_parses():
    from smartcity.incidents.config import load_incidents_config

    s = load_incidents_config(ROOT / "appliance" / "incidents.example.yaml")
    assert [c.cam for c in s.cameras] == ["demo-1"]
    assert s.lifecycle.cooldown("speeding") == 120


def test_retention_alarm_is_a_system_incident_until_the_disk_recovers(
    run_dir, tmp_path, monkeypatch
):
    from smartcity.incidents import service as service_module
    from smartcity.store.retention import RetentionReport

    reports = [RetentionReport(alarm="only evidence under legal hold is left; 1.0 GB short")]
    monkeypatch.setattr(service_module, "apply_retention", lambda store, policy: reports[-1])
    settings = parse_incidents_config(dict(_CONFIG, data_dir=str(tmp_path / "data")))
    with Broker(run_dir):
        service = IncidentsService(settings, str(run_dir), evidence_factory=FakeEvidence)
        try:
            service._retention()
            service._retention()  # the same alarm again: still one incident
            (inc,) = service.store.incidents.list(type="system").items
            assert inc.key == "disk_reserve" and inc.state == "open"
            assert "legal hold" in inc.details["message"]
            reports.append(RetentionReport())  # the reserve is kept again
            service._retention()
            now = time.time_ns()
            service.manager.advance("appliance", now / 1e9 + 3600, now)
            assert service.store.incidents.get(inc.id).state == "resolved"
        finally:
            service.close()


def test_malformed_messages_are_counted_and_skipped(run_dir, tmp_path):
    import msgpack

    settings = parse_incidents_config(dict(_CONFIG, data_dir=str(tmp_path / "data")))
    with Broker(run_dir):
        service = IncidentsService(settings, str(run_dir), evidence_factory=FakeEvidence)
        stop = threading.Event()
        runner = threading.Thread(target=service.run, args=(stop,))
        runner.start()
        try:
            with Publisher(publisher_endpoint(run_dir)) as pub:
                time.sleep(0.5)  # the service's subscription reaches the broker
                future = {"v": 99, "cam": "cam1", "seq": 0}
                assert pub.send_raw(b"tracks.cam1", msgpack.packb(future))  # newer version
                assert pub.send_raw(b"tracks.cam1", msgpack.packb({"v": 1})[:-1] + b"\xc1")
                assert pub.send_raw(b"tracks.cam1", b"\x92\x01")  # truncated msgpack
                _car_through_the_depot(pub, 1, 0, 0.0)

                def seen() -> bool:
                    c = service.store.ingest.get("cam1")
                    return c is not None and c.received == 12 and c.decode_errors == 3

                assert wait_for(seen, 20)
            assert [i.key for i in service.store.incidents.list(camera_id="cam1").items] == [
                "zone:depot:track:1"
            ]
        finally:
            stop.set()
            runner.join(10)
            service.close()
