"""`smartcity engine` with `cameras_from_store`: the store's cameras (the API's) run besides the
file's, and a camera change made through the store plus the API's `config.changed` request
reaches the running engine without a restart, camera by camera.

The engine runs in this process on a thread (as in test_engine_reload.py) against a broker of
the test; the store is a SQLite file in tmp_path, changed the way the API changes it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from smartcity.bus import Broker, ConfigChangedEvent, Publisher, publisher_endpoint
from smartcity.engine.process import (
    Engine,
    EngineConfigError,
    load_engine_config,
    parse_engine_config,
)
from smartcity.engine.reload import ReloadResult
from smartcity.store import Store
from tests.conftest import ROOT, wait_for
from tests.integration.test_engine_reload import Running, Watch, assert_untouched
from tests.support.engine_config import camera, write_config

CALIBRATION = {"homography": [[0.02, 0, 0], [0, 0.02, 0], [0, 0, 1]]}
DEFAULTS = {"analyze_fps": 4, "loop": True, "realtime": True}


def _block(data: Path, **extra: object) -> dict:
    return {"data_dir": str(data), "defaults": DEFAULTS, **extra}


def _announce(
    run_dir: Path, watch: Watch, engine: Engine, cams: tuple[str, ...], reason: str
) -> tuple[int, ConfigChangedEvent, ReloadResult]:
    """What the API does after a camera change: config.changed (cams, "api: ..."), repeated
    until the engine reports a change applied. Repeats still in flight then make reloads that
    find nothing to do (an "applied" report with no cameras): the change is the last report
    and reload that name cameras."""
    n = len(watch.applied())
    k = len(engine.reloads)

    def changed() -> bool:
        return any(ev.cams for _, ev in watch.applied()[n:])

    with Publisher(publisher_endpoint(run_dir)) as api:

        def applied() -> bool:
            api.publish(ConfigChangedEvent(seq=0, t_ns=time.time_ns(), cams=cams, reason=reason))
            return watch.until(changed, timeout=1.0)

        assert wait_for(applied, 30, interval=0), f"{reason}: not applied"
    # let the repeats still queued run (each a reload with nothing to do) before the test
    # changes the store again, so that none of them applies the next change early
    quiet_until = time.monotonic() + 10
    while time.monotonic() < quiet_until:
        before = len(engine.reloads)
        time.sleep(0.5)
        if len(engine.reloads) == before:
            break
    idx, ev = next((i, e) for i, e in reversed(watch.applied()[n:]) if e.cams)
    result = next(r for r in reversed(engine.reloads[k:]) if r.diff.cams)
    return idx, ev, result


def test_store_cameras_follow_the_api(vtest, run_dir, tmp_path):
    data = tmp_path / "data"
    store = Store.open(data_dir=data)
    store.cameras.add("s1", "From the store", str(vtest))
    store.cameras.add("y1", "Also in the file", "rtsp://elsewhere.example/y1")  # the file wins
    store.cameras.add("e1", "A file camera of the incidents service", "engine:e1")  # no stream
    store.cameras.add("off", "Disabled", str(vtest), enabled=False)
    cfg = write_config(
        tmp_path / "engine.yaml", [camera("y1", vtest)], cameras_from_store=_block(data)
    )
    broker = Broker(run_dir).start()
    watch = Watch(run_dir)
    running = None
    try:
        time.sleep(0.2)  # the subscription reaches the broker
        engine = Engine(load_engine_config(cfg), publisher_endpoint(run_dir), config_path=cfg)
        running = Running(engine)
        cams = [(c.camera_id, c.from_store, c.url) for c in engine.settings.cameras]
        assert cams == [("y1", False, str(vtest)), ("s1", True, str(vtest))]
        assert watch.until(lambda: all(len(watch.tracks(c)) >= 3 for c in ("y1", "s1")))
        before = engine.pipeline.stream_stats("y1")

        # The API adds a calibrated camera: it starts, with its calibration.
        store.cameras.add("s2", "Added", str(vtest), geometry={"calibration": CALIBRATION})
        idx, ev, result = _announce(run_dir, watch, engine, ("s2",), "api: camera added")
        assert ev.cams == ("s2",)
        assert [c.camera_id for c in result.diff.added] == ["s2"]
        assert any("api: camera added" in r for r in result.reasons)

        def s2_ground() -> bool:
            return sum(len(e) > 0 for e in watch.tracks("s2", since=idx)) >= 3

        assert watch.until(s2_ground), "no tracks of the added store camera"
        assert all(np.isfinite(e.ground_xy).all() for e in watch.tracks("s2") if len(e))

        # The API disables s1, and y1's row in the store: s1 goes, y1 (the file's) stays.
        store.cameras.update("s1", enabled=False)
        store.cameras.update("y1", enabled=False)
        idx, ev, result = _announce(run_dir, watch, engine, ("s1", "y1"), "api: camera changed")
        assert ev.cams == ("s1",)
        assert result.diff.removed == ("s1",)
        assert sorted(engine.pipeline.camera_ids()) == ["s2", "y1"]
        assert watch.until(lambda: len(watch.tracks("y1", since=idx)) >= 5)
        assert not watch.tracks("s1", since=idx), "tracks of a disabled camera after the change"

        # A new calibration for s2 in the store: swapped live, its stream goes on.
        s2_before = engine.pipeline.stream_stats("s2")
        doubled = {"homography": [[0.04, 0, 0], [0, 0.04, 0], [0, 0, 1]]}
        store.cameras.update("s2", geometry={"calibration": doubled})
        _, _, result = _announce(run_dir, watch, engine, ("s2",), "api: camera changed")
        assert [c.camera_id for c in result.diff.recalibrated] == ["s2"]
        assert engine.pipeline.stream_stats("s2")["reconnects"] == s2_before["reconnects"] == 0

        # A store that cannot be opened at a reload: refused, the running set kept, and the
        # database password is not in the report.
        bad = "postgresql+psycopg://smartcity:s3cret@127.0.0.1:1/smartcity"
        cfg.write_text(
            yaml.safe_dump(dict(yaml.safe_load(cfg.read_text()), cameras_from_store={"url": bad}))
        )
        running.reload()
        refused = engine.reloads[-1].refused
        assert refused.startswith("cameras_from_store: cannot open the store"), refused
        assert "s3cret" not in refused and "***" in refused
        assert sorted(engine.pipeline.camera_ids()) == ["s2", "y1"]
        assert watch.until(lambda: bool(_refused(watch)), timeout=10)
        assert "s3cret" not in _refused(watch)[0]

        assert_untouched(watch, "y1", before, engine.pipeline.stream_stats("y1"))
        assert engine.counters.tracks_dropped == 0
    finally:
        if running is not None:
            running.close()
        watch.sub.close()
        broker.stop()
        store.close()


def _refused(watch: Watch) -> list[str]:
    return [
        e.reason
        for e in watch.events
        if isinstance(e, ConfigChangedEvent) and e.reason.startswith("refused: ")
    ]


def test_store_cameras_that_do_not_validate_are_left_out_and_named(vtest, tmp_path, caplog):
    data = tmp_path / "data"
    with Store.open(data_dir=data) as store:
        store.cameras.add("ok", "Fine", str(vtest))
        store.cameras.add("udp", "A scheme the API takes", "udp://user:pw@10.0.0.9:5000")
        store.cameras.add("cal", "Bad calibration", str(vtest), geometry={"calibration": {}})
    cfg = write_config(tmp_path / "engine.yaml", [], cameras_from_store=_block(data))
    problems: list[str] = []
    settings = load_engine_config(cfg, problems)
    assert [c.camera_id for c in settings.cameras] == ["ok"]
    assert settings.cameras[0].analyze_fps == 4 and settings.cameras[0].loop
    assert problems == [
        "store camera 'cal': geometry.calibration: needs exactly one of points or homography",
        "store camera 'udp': url: scheme 'udp' is not supported (a file path, rtsp://, "
        "rtsps://, http://, https://)",
    ]
    assert "store camera 'udp'" in caplog.text and "user:pw" not in caplog.text


def test_the_block_is_checked_with_the_file(tmp_path):
    base = {"model": "person-ssdlite", "models_root": str(ROOT / "models")}
    # With the block, the file may have no cameras of its own.
    assert parse_engine_config(dict(base, cameras_from_store={"data_dir": "d"})).cameras == ()
    with pytest.raises(EngineConfigError, match="cameras: must be a non-empty list"):
        parse_engine_config(base)
    cases = [
        ({"data_dir": "d", "defaults": {"url": "x"}}, r"cameras_from_store\.defaults\.url: unk"),
        ({"data_dir": "d", "defaults": {"analyze_fps": -1}}, r"defaults\.analyze_fps: must not"),
        ({"data_dir": "d", "defaults": {"rtsp_transport": "x"}}, r"defaults\.rtsp_transport"),
        ({"url": "nonsense"}, r"cameras_from_store\.url: must be a database URL"),
        ({"folder": "d"}, r"cameras_from_store\.folder: unknown field"),
        ({}, "cameras_from_store: give data_dir or url"),
    ]
    for block, pattern in cases:
        with pytest.raises(EngineConfigError, match=pattern):
            parse_engine_config(dict(base, cameras_from_store=block))
