"""The core's C++ publisher -> broker -> Python subscriber: tracks and health decode exactly."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smartcity import _core
from smartcity.bus import Broker, HealthEvent, Subscriber, TracksEvent, defaults


@pytest.fixture
def broker() -> Iterator[Broker]:
    d = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    with Broker(d) as b:
        yield b
    shutil.rmtree(d, ignore_errors=True)


def test_core_publisher_defaults_are_the_bus_defaults():
    d = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    try:
        with _core.Publisher(f"ipc://{d}/x") as p:
            assert p.sndhwm == defaults.PUB_SNDHWM
            assert p.linger_ms == defaults.PUB_LINGER_MS
    finally:
        shutil.rmtree(d)


def _frame(rng: np.random.Generator, n: int) -> dict:
    xy = rng.uniform(0, 700, (n, 2)).astype(np.float32)
    return dict(
        track_id=rng.integers(1, 10**6, n).astype(np.int64),
        xyxy=np.hstack([xy, xy + rng.uniform(1, 50, (n, 2)).astype(np.float32)]),
        score=rng.uniform(0, 1, n).astype(np.float32),
        class_id=rng.integers(0, 6, n).astype(np.int32),
    )


def _ground(rng: np.random.Generator, n: int) -> dict:
    g = rng.uniform(-80, 80, (n, 2)).astype(np.float32)
    kmh = rng.uniform(0, 130, n).astype(np.float32)
    g[rng.uniform(size=n) < 0.3] = np.nan  # unknown where uncalibrated
    kmh[rng.uniform(size=n) < 0.3] = np.nan  # track too young
    return dict(ground_xy=g, speed_kmh=kmh)


def test_tracks_and_health_from_the_core(broker):
    rng = np.random.default_rng(7)
    with (
        Subscriber(broker.xpub_endpoint, ["tracks.", "health."]) as sub,
        _core.Publisher(broker.xsub_endpoint) as pub,
    ):
        empty = _frame(rng, 0)
        deadline = time.monotonic() + 10
        while sub.recv(0.05) is None:  # slow joiner: prime on another camera
            pub.publish_tracks("prime", 0, 0.0, 0, 1, 1, **empty)
            assert time.monotonic() < deadline
        while sub.recv(0.05) is not None:
            pass
        frames = [_frame(rng, int(n)) for n in rng.integers(0, 60, 25)]
        for f in frames[::2]:  # the others are sent without ground_xy / speed_kmh: NaN
            f.update(_ground(rng, len(f["track_id"])))
        for i, f in enumerate(frames):
            assert pub.publish_tracks(
                "cam-a", 1000 + i, i / 10, 1_700_000_000_000_000_000 + i, 768, 576, **f
            )
        stats = {
            "state": "running",
            "packets": 123,
            "frames_decoded": 120,
            "codec": "h264",
            "decoder": "cpu",
            "hwaccel_note": "no CUDA device is visible",
            "last_frame_age_s": None,
            "width": 768,
            "decode_p99_ms": 2.5,
        }
        assert pub.publish_health("cam-a", stats, infer_ms=7.25, track_ms=0.5, t_ns=42)
        got = list(sub.events(1.0))
        tracks = [e for e in got if isinstance(e, TracksEvent) and e.cam == "cam-a"]
        assert len(tracks) == len(frames)
        for i, (ev, f) in enumerate(zip(tracks, frames, strict=True)):
            assert (ev.seq, ev.frame, ev.pts, ev.t_ns, ev.w, ev.h) == (
                i,
                1000 + i,
                i / 10,
                1_700_000_000_000_000_000 + i,
                768,
                576,
            )
            np.testing.assert_array_equal(ev.track_id, f["track_id"])
            np.testing.assert_array_equal(ev.xyxy, f["xyxy"])
            np.testing.assert_array_equal(ev.score, f["score"])
            np.testing.assert_array_equal(ev.class_id, f["class_id"])
            n = len(f["track_id"])
            nan_g, nan_k = np.full((n, 2), np.nan, np.float32), np.full(n, np.nan, np.float32)
            np.testing.assert_array_equal(ev.ground_xy, f.get("ground_xy", nan_g))
            np.testing.assert_array_equal(ev.speed_kmh, f.get("speed_kmh", nan_k))
            assert ev.ground_xy.dtype == np.float32 and ev.speed_kmh.dtype == np.float32
        (health,) = [e for e in got if isinstance(e, HealthEvent)]
        assert health.cam == "cam-a" and health.seq == 0 and health.t_ns == 42
        assert (health.state, health.packets, health.frames_decoded, health.codec) == (
            "running",
            123,
            120,
            "h264",
        )
        assert health.last_frame_age_s is None and health.decode_p99_ms == 2.5
        assert (health.decoder, health.hwaccel_note) == ("cpu", "no CUDA device is visible")
        assert (health.infer_ms, health.track_ms) == (7.25, 0.5)
        assert health.bus_sent == pub.sent - 1 and health.bus_dropped == 0
        assert sub.stats["tracks.cam-a"].gaps == 0


def test_core_publisher_counts_drops_and_subscriber_sees_them(broker):
    """No reader downstream and small queues: drops are counted by the publisher, and the
    subscriber's gap count covers every message it did not get."""
    with (
        Subscriber(broker.xpub_endpoint, ["tracks."], rcvhwm=10) as sub,
        _core.Publisher(broker.xsub_endpoint, sndhwm=10, linger_ms=0) as pub,
    ):
        f = _frame(np.random.default_rng(1), 3)
        while sub.recv(0.05) is None:
            pub.publish_tracks("p", 0, 0.0, 0, 1, 1, **f)
        n = 50000
        accepted = sum(pub.publish_tracks("d", i, 0.0, 0, 1, 1, **f) for i in range(n))
        assert pub.dropped > 0
        assert accepted + pub.dropped == n
        assert pub.next_seq("tracks.d") == n
        time.sleep(0.3)
        got = [e for e in sub.events(0.5) if e.cam == "d"]
        while not pub.publish_tracks("d", n, 0.0, 0, 1, 1, **f):
            time.sleep(0.01)
        got += [e for e in sub.events(0.5) if e.cam == "d"]
        st = sub.stats["tracks.d"]
        assert st.received == len(got)
        assert st.received + st.gaps == pub.next_seq("tracks.d") - (st.first_seq or 0)
        assert st.gaps >= pub.dropped - (st.first_seq or 0)


def test_core_publisher_refuses_bad_input(broker):
    with _core.Publisher(broker.xsub_endpoint) as pub:
        f = _frame(np.random.default_rng(2), 3)
        with pytest.raises(ValueError, match="xyxy"):
            pub.publish_tracks(
                "c", 0, 0.0, 0, 1, 1, f["track_id"], f["xyxy"][:2], f["score"], f["class_id"]
            )
        with pytest.raises(ValueError, match="ground_xy"):
            pub.publish_tracks("c", 0, 0.0, 0, 1, 1, **f, ground_xy=np.zeros((3, 3)))
        with pytest.raises(ValueError, match="speed_kmh"):
            pub.publish_tracks("c", 0, 0.0, 0, 1, 1, **f, speed_kmh=np.zeros(2))
        with pytest.raises(ValueError):
            pub.publish_tracks("", 0, 0.0, 0, 1, 1, **f)
        with pytest.raises(ValueError, match="state"):
            pub.publish_health("c", {"state": "dancing"})
    with pytest.raises(RuntimeError):
        pub.publish_tracks("c", 0, 0.0, 0, 1, 1, **f)
    with pytest.raises(ValueError):
        _core.Publisher("bogus://nowhere")
