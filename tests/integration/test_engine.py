"""The engine process end to end: real clip -> person model -> trackers -> bus -> subscriber."""

from __future__ import annotations

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
    HealthEvent,
    Subscriber,
    TracksEvent,
    publisher_endpoint,
    subscriber_endpoint,
)
from smartcity.bus.evidence import EvidenceClient, EvidenceError
from smartcity.engine.process import (
    Engine,
    EngineConfigError,
    parse_engine_config,
)
from tests.conftest import ROOT, VTEST


def _config(vtest: Path, **extra) -> dict:
    cfg = {
        "model": "person-ssdlite",
        "models_root": str(ROOT / "models"),
        "max_batch": 4,
        "health_interval_s": 0.5,
        "cameras": [
            {"id": "gate-1", "url": str(vtest), "analyze_fps": 5, "loop": True, "realtime": True},
            {
                "id": "gate-2",
                "url": str(vtest),
                "analyze_fps": 5,
                "loop": True,
                "realtime": True,
                "image_to_ground": [[0.02, 0, 0], [0, 0.02, 0], [0, 0, 1]],
            },
        ],
    }
    cfg.update(extra)
    return cfg


def test_engine_publishes_tracks_and_health(vtest, run_dir):
    with Broker(run_dir) as _broker:
        with Subscriber(subscriber_endpoint(run_dir), ["tracks.", "health."]) as sub:
            time.sleep(0.2)  # let the subscription reach the broker
            settings = parse_engine_config(_config(vtest, heap_trim_interval_s=1.0))
            engine = Engine(settings, publisher_endpoint(run_dir))
            stop = threading.Event()
            runner = threading.Thread(target=engine.run, args=(stop, 6.0))
            runner.start()
            events = []
            snapshot = None
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and runner.is_alive():
                ev = sub.recv(timeout_s=0.5)
                if ev is not None:
                    events.append(ev)
                if snapshot is None and len(events) > 10:  # the evidence server runs with it
                    with EvidenceClient(run_dir) as evidence:
                        snapshot = evidence.snapshot("gate-2", timeout_s=10)
            runner.join()
            engine.close()
            with EvidenceClient(run_dir) as evidence, pytest.raises(EvidenceError):
                evidence.snapshot("gate-2", timeout_s=0.3)  # stopped with the engine
            while (ev := sub.recv(timeout_s=0.3)) is not None:
                events.append(ev)
            totals = sub.totals()
    tracks = [e for e in events if isinstance(e, TracksEvent)]
    health = [e for e in events if isinstance(e, HealthEvent)]
    for cam in ("gate-1", "gate-2"):
        mine = [e for e in tracks if e.cam == cam]
        assert len(mine) >= 15, (cam, len(mine))  # ~5 analysed frames per second
        assert [e.seq for e in mine] == list(range(mine[0].seq, mine[0].seq + len(mine)))
        with_people = [e for e in mine if len(e) > 0]
        assert len(with_people) >= 0.8 * len(mine)
        assert all((e.class_id == 0).all() for e in with_people)  # person
        assert all(e.w == 768 and e.h == 576 for e in mine)
        assert any(h.cam == cam and h.state == "running" for h in health)
    # Ground position only where the camera is calibrated; speed needs a track's history.
    uncal = [e for e in tracks if e.cam == "gate-1" and len(e)]
    assert all(np.isnan(e.ground_xy).all() and np.isnan(e.speed_kmh).all() for e in uncal)
    cal = [e for e in tracks if e.cam == "gate-2" and len(e)]
    assert all(np.isfinite(e.ground_xy).all() for e in cal)
    assert any(np.isfinite(e.speed_kmh).any() for e in cal)
    assert totals.gaps == 0
    assert engine.counters.tracks_dropped == 0
    assert engine.counters.heap_trims >= 4  # every second of the 6 s run
    assert snapshot is not None and (snapshot.w, snapshot.h) == (768, 576)
    assert snapshot.jpeg[:2] == b"\xff\xd8"  # JPEG


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": ""}, "model"),
        ({"cameras": []}, "cameras"),
        ({"cameras": [{"id": "a"}]}, "cameras[0].url"),
        ({"cameras": [{"id": "a", "url": "x", "analyze_fps": -1}]}, "cameras[0].analyze_fps"),
        ({"cameras": [{"id": "a", "url": "x", "image_to_ground": [[1, 2]]}]}, "image_to_ground"),
        ({"cameras": [{"id": "a", "url": str(VTEST)}, {"id": "a", "url": "y"}]}, "cameras[1].id"),
        ({"max_batch": 0}, "max_batch"),
        ({"tracking": {"speed": 1}}, "tracking.speed"),
        ({"tracking": {"duplicate_iou": 2}}, "duplicate_iou"),
        ({"tracking": {"crowd_class": 0.5}}, "tracking.crowd_class"),
        ({"tracking": {"recover_classes": ["car", "lorry"]}}, "tracking.recover_classes"),
        ({"tracking": {"recover_s": -1}}, "recover_s"),
        ({"colour": "red"}, "colour"),
        ({"hwaccel": "nvdec"}, "hwaccel"),
        ({"hw_device": -1}, "hw_device"),
        ({"heap_trim_interval_s": -1}, "heap_trim_interval_s"),
        ({"cameras": [{"id": "a", "url": str(VTEST), "hwaccel": "gpu"}]}, "cameras[0].hwaccel"),
    ],
)
def test_bad_engine_config_names_the_field(vtest, patch, field):
    with pytest.raises(EngineConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_engine_config(_config(vtest, **patch))


def test_recover_classes_are_class_names_handed_on_as_ids(vtest):
    s = parse_engine_config(_config(vtest, tracking={"recover_classes": ["car", "bus"]}))
    assert s.tracking["recover_classes"] == [2, 4]


def test_engine_command_runs_with_its_own_broker(vtest, run_dir, tmp_path):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(yaml.safe_dump(_config(vtest)))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "smartcity",
            "engine",
            "--config",
            str(cfg),
            "--run-dir",
            str(run_dir),
            "--with-broker",
            "--seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "2 cameras (gate-1, gate-2)" in r.stdout
    assert "tracks messages (0 dropped)" in r.stdout


def test_the_example_configuration_is_valid():
    from smartcity.engine.process import load_engine_config

    s = load_engine_config(ROOT / "appliance" / "engine.example.yaml")
    assert s.tracking["duplicate_iou"] == 0.4 and s.tracking["crowd_class"] == 0
    assert s.model == "person-ssdlite" and (s.models_root / s.model / "model.yaml").is_file()
    assert Path(s.cameras[0].url).is_file()  # resolved against the configuration's folder
