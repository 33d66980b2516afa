"""Live reconfiguration of the engine: cameras added, changed and removed while it runs.

The engine runs in this process (Engine.run on a thread, as the CLI runs it on its main thread)
against a broker of the test; a subscriber watches what reaches the bus. The untouched cameras
must keep streaming through every change: their frame counters keep increasing, their tracks
keep their sequence and frame numbers without a gap, and they never reconnect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from smartcity.bus import (
    Broker,
    ConfigChangedEvent,
    Publisher,
    Subscriber,
    TracksEvent,
    publisher_endpoint,
    subscriber_endpoint,
)
from smartcity.engine.process import (
    CameraSettings,
    Engine,
    EngineSettings,
    load_engine_config,
)
from smartcity.engine.reload import ReloadRequests, diff_settings
from tests.conftest import wait_for
from tests.support.engine_config import camera, write_config

CALIBRATION = [[0.02, 0, 0], [0, 0.02, 0], [0, 0, 1]]


class Watch:
    """What a subscriber on tracks. and config.changed saw, in arrival order."""

    def __init__(self, run_dir: Path) -> None:
        self.sub = Subscriber(subscriber_endpoint(run_dir), ["tracks.", "config.changed"])
        self.events: list[object] = []

    def until(self, pred: Callable[[], bool], timeout: float = 40.0) -> bool:
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

    def applied(self) -> list[tuple[int, ConfigChangedEvent]]:
        return [
            (i, e)
            for i, e in enumerate(self.events)
            if isinstance(e, ConfigChangedEvent) and e.reason == "applied"
        ]

    def wait_applied(self, n: int) -> tuple[int, ConfigChangedEvent]:
        assert self.until(lambda: len(self.applied()) >= n), "no config.changed (applied)"
        return self.applied()[n - 1]


class Running:
    """An Engine on a thread of its own; stopped and closed at the end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="engine-loop")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.engine.run(self.stop)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def reload(self, reason: str = "test") -> None:
        """Ask for a reload and wait until the loop has taken it."""
        n = len(self.engine.reloads)
        self.engine.request_reload(reason)
        assert wait_for(lambda: len(self.engine.reloads) > n, 30), "the reload was not taken"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.engine.close()
        assert not self.thread.is_alive()
        assert self.error is None, self.error


@pytest.fixture
def engine_env(run_dir: Path, tmp_path: Path) -> Iterator[Callable[..., tuple[Running, Watch]]]:
    """start(cameras) -> (Running engine, Watch): broker, subscriber and engine of one test."""
    made: list[object] = []
    broker = Broker(run_dir).start()

    def start(cameras: list[dict], **extra: object) -> tuple[Running, Watch]:
        cfg = write_config(tmp_path / "engine.yaml", cameras, **extra)
        watch = Watch(run_dir)
        made.append(watch)
        time.sleep(0.2)  # the subscription reaches the broker
        engine = Engine(load_engine_config(cfg), publisher_endpoint(run_dir), config_path=cfg)
        running = Running(engine)
        made.append(running)
        ids = [c["id"] for c in cameras]
        assert watch.until(lambda: all(len(watch.tracks(c)) >= 3 for c in ids)), "no tracks"
        return running, watch

    yield start
    for m in reversed(made):
        if isinstance(m, Running):
            m.close()
        elif isinstance(m, Watch):
            m.sub.close()
    broker.stop()


def assert_untouched(watch: Watch, cam: str, before: dict, after: dict) -> None:
    """cam kept streaming: counters grew, no reconnect, tracks seq and frames without a gap."""
    assert after["frames_decoded"] > before["frames_decoded"]
    assert after["frames_sampled"] > before["frames_sampled"]
    assert after["uptime_s"] > before["uptime_s"]
    assert after["reconnects"] == before["reconnects"] == 0
    mine = watch.tracks(cam)
    seqs = [e.seq for e in mine]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{cam}: tracks lost"
    frames = [e.frame for e in mine]
    assert all(b > a for a, b in zip(frames, frames[1:], strict=False)), f"{cam} restarted"


def test_hot_add_and_remove_keep_the_other_streams(vtest, engine_env, tmp_path):
    running, watch = engine_env([camera("keep", vtest), camera("gone", vtest)])
    engine = running.engine
    before = engine.pipeline.stream_stats("keep")
    write_config(tmp_path / "engine.yaml", [camera("keep", vtest), camera("new", vtest)])
    running.reload()
    idx, ev = watch.wait_applied(1)
    assert ev.cams == ("gone", "new")
    assert watch.until(lambda: len(watch.tracks("new")) >= 5)
    assert watch.until(lambda: len(watch.tracks("keep", since=idx)) >= 5)
    after = engine.pipeline.stream_stats("keep")
    result = engine.reloads[-1]
    print(f"reload took effect; keep: {before['frames_decoded']} -> {after['frames_decoded']}")

    assert not result.refused and not result.errors
    assert [c.camera_id for c in result.diff.added] == ["new"]
    assert result.diff.removed == ("gone",)
    assert sorted(engine.pipeline.camera_ids()) == ["keep", "new"]
    assert [c.camera_id for c in engine.settings.cameras] == ["keep", "new"]
    assert not watch.tracks("gone", since=idx), "tracks of a removed camera after the change"
    assert watch.tracks("new")[0].frame < 10  # a stream of its own, from its start
    assert_untouched(watch, "keep", before, after)
    assert engine.counters.tracks_dropped == 0
    assert watch.sub.totals().gaps == 0


def test_calibration_only_change_keeps_the_stream(vtest, engine_env, tmp_path):
    cams = [camera("cal", vtest), camera("other", vtest, image_to_ground=CALIBRATION)]
    running, watch = engine_env(cams)
    engine = running.engine
    assert all(np.isnan(e.ground_xy).all() for e in watch.tracks("cal"))
    before = {c: engine.pipeline.stream_stats(c) for c in ("cal", "other")}
    other_ground = [e.ground_xy for e in watch.tracks("other") if len(e)]
    assert other_ground and np.isfinite(other_ground[-1]).all()

    # cal gets a calibration, other a different one: neither stream restarts.
    cams = [
        camera("cal", vtest, image_to_ground=CALIBRATION),
        camera("other", vtest, image_to_ground=[[0.04, 0, 0], [0, 0.04, 0], [0, 0, 1]]),
    ]
    write_config(tmp_path / "engine.yaml", cams)
    running.reload()
    idx, ev = watch.wait_applied(1)
    assert ev.cams == ("cal", "other")
    result = engine.reloads[-1]
    assert [c.camera_id for c in result.diff.recalibrated] == ["cal", "other"]
    assert not result.diff.restarted and not result.diff.added and not result.diff.removed
    assert watch.until(lambda: sum(len(e) > 0 for e in watch.tracks("cal", since=idx)) >= 5)
    cal = [e for e in watch.tracks("cal", since=idx) if len(e)]
    assert all(np.isfinite(e.ground_xy).all() for e in cal)
    after = {c: engine.pipeline.stream_stats(c) for c in ("cal", "other")}
    for c in ("cal", "other"):
        assert_untouched(watch, c, before[c], after[c])
    # The same boxes, twice the scale: the new homography is the one in use.
    other_after = [e for e in watch.tracks("other", since=idx) if len(e)]
    last = other_after[-1]
    bottom_centre = np.stack([(last.xyxy[:, 0] + last.xyxy[:, 2]) / 2, last.xyxy[:, 3]], 1)
    np.testing.assert_allclose(last.ground_xy, 0.04 * bottom_centre, rtol=1e-4)


def test_changed_stream_settings_restart_that_camera_only(vtest, engine_env, tmp_path):
    cams = [
        camera("steady", vtest),
        camera("moved", vtest, image_to_ground=CALIBRATION),
    ]
    running, watch = engine_env(cams)
    engine = running.engine
    assert watch.until(lambda: watch.tracks("moved")[-1].frame >= 20)
    before = engine.pipeline.stream_stats("steady")
    # analyze_fps changes, and the calibration is dropped: both need the stream restarted.
    write_config(
        tmp_path / "engine.yaml", [camera("steady", vtest), camera("moved", vtest, analyze_fps=3)]
    )
    running.reload()
    idx, ev = watch.wait_applied(1)
    assert ev.cams == ("moved",)
    result = engine.reloads[-1]
    assert [c.camera_id for c in result.diff.restarted] == ["moved"]
    assert watch.until(lambda: sum(len(e) > 0 for e in watch.tracks("moved", since=idx)) >= 3)
    after = engine.pipeline.stream_stats("steady")
    old, new = (
        watch.tracks("moved")[: -len(watch.tracks("moved", since=idx))],
        watch.tracks("moved", since=idx),
    )
    assert new[0].frame < old[-1].frame  # a new stream: its frames counted from 0 again
    assert all(b.frame > a.frame for a, b in zip(new, new[1:], strict=False))  # no stale ones
    assert all(np.isnan(e.ground_xy).all() for e in new)  # calibration gone with the restart
    assert engine.settings.cameras[1].analyze_fps == 3
    assert_untouched(watch, "steady", before, after)


def test_a_bad_new_file_changes_nothing(vtest, engine_env, tmp_path, caplog):
    running, watch = engine_env([camera("a", vtest), camera("b", vtest)])
    engine = running.engine
    settings = engine.settings
    before = engine.pipeline.stream_stats("a")
    # b removed and c added, but c's URL is refused: the whole file is refused.
    write_config(
        tmp_path / "engine.yaml",
        [camera("a", vtest), camera("c", vtest, url="ftp://cams.example/c")],
    )
    running.reload()
    result = engine.reloads[-1]
    assert "cameras[1].url (camera 'c')" in result.refused
    assert "scheme 'ftp'" in result.refused
    assert "nothing changed" in caplog.text and "cameras[1].url" in caplog.text
    (tmp_path / "engine.yaml").write_text("cameras: [\n")  # not even YAML
    running.reload()
    assert "cannot read the engine configuration" in engine.reloads[-1].refused
    assert engine.counters.reloads_refused == 2
    assert engine.settings is settings
    assert sorted(engine.pipeline.camera_ids()) == ["a", "b"]
    n = len(watch.events)
    assert watch.until(lambda: len(watch.tracks("b", since=n)) >= 3)
    assert not watch.applied()
    refused = [e for e in watch.events if isinstance(e, ConfigChangedEvent)]
    assert [e.reason.split(":")[0] for e in refused] == ["refused", "refused"]
    assert "cameras[1].url (camera 'c')" in refused[0].reason and refused[0].cams == ()
    assert_untouched(watch, "a", before, engine.pipeline.stream_stats("a"))


def test_settings_that_need_a_restart_are_reported_not_applied(vtest, engine_env, tmp_path):
    running, watch = engine_env([camera("a", vtest)])
    engine = running.engine
    write_config(
        tmp_path / "engine.yaml",
        [camera("a", vtest)],
        model="synthetic-traffic",
        max_batch=2,
        max_wait_ms=20,
    )
    running.reload()
    result = engine.reloads[-1]
    assert set(result.diff.needs_restart) == {"model", "max_batch"}
    assert result.diff.live == ("max_wait_ms",)
    assert not result.diff.cams and not result.applied
    assert engine.settings.model == "person-ssdlite" and engine.settings.max_batch == 4
    assert engine.settings.max_wait_ms == 20  # applied live
    assert engine.card.name == "person-ssdlite"
    n = len(watch.events)
    assert watch.until(lambda: len(watch.tracks("a", since=n)) >= 3)
    assert not watch.applied()  # no camera changed: nothing to announce


def test_config_changed_on_the_bus_reloads(vtest, engine_env, tmp_path, run_dir):
    running, watch = engine_env([camera("a", vtest)])
    engine = running.engine
    write_config(tmp_path / "engine.yaml", [camera("a", vtest), camera("b", vtest)])
    with Publisher(publisher_endpoint(run_dir)) as admin:
        # Repeated until the engine's subscription is known to have reached the broker; a
        # request after the change finds nothing more to do.
        def applied() -> bool:
            admin.publish(ConfigChangedEvent(seq=0, t_ns=time.time_ns(), cams=("b",), reason="x"))
            return watch.until(lambda: bool(watch.applied()), timeout=0.5)

        assert wait_for(applied, 30, interval=0)
    idx, ev = watch.applied()[0]
    assert ev.cams == ("b",)
    assert watch.until(lambda: len(watch.tracks("b")) >= 3)
    assert any("config.changed (x; cams b)" in r for r in engine.reloads[0].reasons)
    # Its own "applied" message did not make it reload again.
    watch.until(lambda: False, timeout=1.0)
    assert all(not any("applied" in r for r in res.reasons) for res in engine.reloads)
    assert len(watch.applied()) == 1


def test_diff_settings_camera_by_camera(vtest):
    def cam(cid: str, **kw: object) -> CameraSettings:
        return CameraSettings(camera_id=cid, url=str(vtest), **kw)  # type: ignore[arg-type]

    h1 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    h2 = ((2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 1.0))
    old = EngineSettings(
        model="m",
        cameras=(
            cam("same"),
            cam("gone"),
            cam("fps"),
            cam("url"),
            cam("transport"),
            cam("loop"),
            cam("realtime"),
            cam("cal", image_to_ground=h1),
            cam("uncal", image_to_ground=h1),
            cam("newcal"),
        ),
    )
    new = EngineSettings(
        model="m2",
        max_wait_ms=10,
        cameras=(
            cam("same"),
            cam("fps", analyze_fps=2.0),
            CameraSettings("url", "rtsp://cam/1"),
            cam("transport", rtsp_transport="udp"),
            cam("loop", loop=True),
            cam("realtime", realtime=True),
            cam("cal", image_to_ground=h2),
            cam("uncal"),
            cam("newcal", image_to_ground=h1),
            cam("added"),
        ),
    )
    d = diff_settings(old, new)
    assert [c.camera_id for c in d.added] == ["added"]
    assert d.removed == ("gone",)
    restarted = [c.camera_id for c in d.restarted]
    assert restarted == ["fps", "url", "transport", "loop", "realtime", "uncal"]
    assert [c.camera_id for c in d.recalibrated] == ["cal", "newcal"]
    assert d.needs_restart == ("model",)
    assert d.live == ("max_wait_ms",)
    assert "same" not in d.cams and len(d.cams) == 10
    assert diff_settings(old, old).empty


def test_reload_requests_from_any_thread():
    q = ReloadRequests()
    assert q.take() == ()
    threads = [threading.Thread(target=q.request, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(q.take()) == [f"t{i}" for i in range(8)]
    assert q.take() == ()


def test_frames_of_a_removed_camera_still_in_the_buffers_are_not_published(
    vtest, run_dir, tmp_path
):
    """The loop driven by hand: frames of both cameras wait in the batch buffers, then b is
    removed; b's frames that come out of next_batch afterwards are skipped, a's published."""
    cfg = write_config(tmp_path / "engine.yaml", [camera("a", vtest), camera("b", vtest)])
    with Broker(run_dir) as _broker:
        watch = Watch(run_dir)
        time.sleep(0.2)  # the subscription reaches the broker
        engine = Engine(load_engine_config(cfg), publisher_endpoint(run_dir), config_path=cfg)
        try:
            stats = engine.pipeline.stream_stats
            assert wait_for(lambda: stats("b")["frames_sampled"] >= 3, 30)
            write_config(cfg, [camera("a", vtest)])
            result = engine.reload(("test",))
            assert result.applied == ("b",)
            assert engine.pipeline.camera_ids() == ["a"]
            for _ in range(6):
                engine.step()
            assert engine.counters.stale_frames >= 1
            assert watch.until(lambda: len(watch.tracks("a")) >= 3)
        finally:
            engine.close()
        watch.until(lambda: False, timeout=0.5)
        watch.sub.close()
    ((idx, ev),) = watch.applied()
    assert ev.cams == ("b",)
    assert not watch.tracks("b")  # b's frames were all taken after it was removed: none sent
    print(f"{engine.counters.stale_frames} frames of b skipped")


def test_a_camera_the_core_refuses_is_reported_and_the_rest_applied(vtest, run_dir, tmp_path):
    """apply() with settings that skipped the file check: the core refuses one camera; the
    others change, the refusal is in the result, and a later apply tries the camera again."""
    cfg = write_config(tmp_path / "engine.yaml", [camera("a", vtest)])
    with Broker(run_dir) as _broker:
        settings = load_engine_config(cfg)
        engine = Engine(settings, publisher_endpoint(run_dir), config_path=cfg)
        try:
            bad = CameraSettings(camera_id="no spaces allowed", url=str(vtest))
            good = CameraSettings(camera_id="b", url=str(vtest), loop=True)
            new = EngineSettings(
                model=settings.model,
                models_root=settings.models_root,
                max_batch=settings.max_batch,
                cameras=(settings.cameras[0], bad, good),
            )
            result = engine.apply(new)
            assert len(result.errors) == 1 and "camera 'no spaces allowed'" in result.errors[0]
            assert result.applied == ("b",)
            assert sorted(engine.pipeline.camera_ids()) == ["a", "b"]
            assert [c.camera_id for c in engine.settings.cameras] == ["a", "b"]
            again = engine.apply(new)
            assert [c.camera_id for c in again.diff.added] == ["no spaces allowed"]
            assert again.applied == ()
        finally:
            engine.close()
