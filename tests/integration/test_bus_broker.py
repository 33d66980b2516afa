"""The broker: pub -> broker -> sub over ipc:// in a 0700 run dir, run dir checks, gap counting,
and the CURVE TCP endpoint (authorized vs unauthorized subscribers, refusal without keys)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from smartcity.bus import (
    Broker,
    BusSecurityError,
    CurveClient,
    Publisher,
    RunDirError,
    StatsEvent,
    Subscriber,
    TcpEndpoint,
    encode_tracks,
    ensure_run_dir,
)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short path: ipc:// paths must stay under 107 bytes."""
    d = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _prime(pub: Publisher, sub: Subscriber, cam: str = "prime") -> None:
    """Publish until the subscription has reached the publisher (slow joiner)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pub.publish(StatsEvent(cam=cam, seq=0, t0_ns=0, t1_ns=0))
        if sub.recv(0.05) is not None:
            while sub.recv(0.05) is not None:
                pass
            return
    raise AssertionError("subscription never reached the publisher")


def test_run_dir_is_created_private(run_dir):
    p = ensure_run_dir(run_dir / "new")
    assert (os.stat(p).st_mode & 0o777) == 0o700


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777, 0o710])
def test_run_dir_reachable_by_others_is_refused(run_dir, mode):
    os.chmod(run_dir, mode)
    with pytest.raises(RunDirError, match="mode"):
        Broker(run_dir)


def test_run_dir_symlink_is_refused(run_dir):
    (run_dir / "real").mkdir(mode=0o700)
    (run_dir / "link").symlink_to(run_dir / "real")
    with pytest.raises(RunDirError, match="symlink"):
        ensure_run_dir(run_dir / "link")


def test_run_dir_of_another_user_is_refused(run_dir):
    if os.getuid() == 0:
        other = run_dir / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        with pytest.raises(RunDirError, match="owned by uid 65534"):
            ensure_run_dir(other)
    else:
        with pytest.raises(RunDirError, match="owned by uid 0"):
            ensure_run_dir("/")


def test_long_ipc_path_is_refused(run_dir):
    deep = run_dir / ("x" * 100)
    deep.mkdir(mode=0o700)
    with pytest.raises(ValueError, match="shorter run dir"):
        Broker(deep)


def test_pub_broker_sub_over_ipc(run_dir):
    with Broker(run_dir) as broker:
        assert broker.xsub_endpoint.startswith("ipc://" + str(run_dir))
        with (
            Subscriber(broker.xpub_endpoint, ["stats."]) as sub,
            Publisher(broker.xsub_endpoint) as pub,
        ):
            _prime(pub, sub)
            sent = [
                StatsEvent(cam="c1", seq=0, t0_ns=i, t1_ns=i + 1, counts={"car": i})
                for i in range(50)
            ]
            for ev in sent:
                assert pub.publish(ev)
            got = [e for e in sub.events(1.0) if e.cam == "c1"]
            assert [e.counts["car"] for e in got] == list(range(50))
            assert [e.seq for e in got] == list(range(50))
            assert sub.stats["stats.c1"].gaps == 0
            assert sub.stats["stats.c1"].received == 50


def test_garbage_is_counted_not_delivered(run_dir):
    with Broker(run_dir) as broker:
        with (
            Subscriber(broker.xpub_endpoint, ["stats.", "tracks."]) as sub,
            Publisher(broker.xsub_endpoint) as pub,
        ):
            _prime(pub, sub)
            pub.send_raw(b"tracks.c", b"\xc1\xc1 not msgpack")
            pub.send_raw(
                b"tracks.c",
                encode_tracks(
                    "other",
                    0,
                    frame=0,
                    pts=0,
                    t_ns=0,
                    w=1,
                    h=1,
                    track_id=[],
                    class_id=[],
                    score=[],
                    xyxy=np.zeros((0, 4)),
                )[1],
            )
            pub.publish(StatsEvent(cam="ok", seq=0, t0_ns=0, t1_ns=0))
            got = list(sub.events(0.5))
            assert [e.topic for e in got] == ["stats.ok"]
            st = sub.stats["tracks.c"]
            assert st.decode_errors == 2 and st.received == 0
            assert st.last_error.startswith("cam:")


def test_gaps_and_restarts_are_counted(run_dir):
    with Broker(run_dir) as broker:
        with (
            Subscriber(broker.xpub_endpoint, ["tracks."]) as sub,
            Publisher(broker.xsub_endpoint) as pub,
        ):
            empty = dict(
                frame=0,
                pts=0.0,
                t_ns=0,
                w=8,
                h=8,
                track_id=[],
                class_id=[],
                score=[],
                xyxy=np.zeros((0, 4)),
            )
            deadline = time.monotonic() + 10
            while sub.recv(0.05) is None:  # prime: seq 0 on tracks.p
                pub.send_raw(*encode_tracks("p", 0, **empty))
                assert time.monotonic() < deadline
            while sub.recv(0.05) is not None:
                pass
            # seqs sent on purpose with holes, then a restart at 0
            seqs = [0, 1, 2, 5, 6, 10, 0, 1, 4]
            for s in seqs:
                pub.send_raw(*encode_tracks("g", s, **empty))
            got = [e.seq for e in sub.events(0.5) if e.cam == "g"]
            assert got == seqs
            st = sub.stats["tracks.g"]
            assert st.gaps == 2 + 3 + 2
            assert st.restarts == 1


def test_slow_subscriber_sees_gaps(run_dir):
    """A subscriber with a tiny queue that does not read: the broker drops for it, and the
    subscriber counts exactly the messages it missed."""
    with Broker(run_dir, hwm=100) as broker:
        with (
            Subscriber(broker.xpub_endpoint, ["stats."], rcvhwm=5) as sub,
            Publisher(broker.xsub_endpoint) as pub,
        ):
            _prime(pub, sub)
            n = 20000
            for i in range(n):
                pub.publish(StatsEvent(cam="s", seq=0, t0_ns=i, t1_ns=i))
            time.sleep(0.5)
            got = [e for e in sub.events(0.5) if e.cam == "s"]
            assert pub.dropped + len(got) < n  # something was lost on the way ...
            # a loss at the end of a burst shows when the next message arrives
            pub.publish(StatsEvent(cam="s", seq=0, t0_ns=n, t1_ns=n))
            got += [e for e in sub.events(0.5) if e.cam == "s"]
            assert got[-1].t0_ns == n
            st = sub.stats["stats.s"]
            assert st.received == len(got)
            # ... and every loss is counted: received + gaps covers the seqs from the first seen
            first = st.first_seq or 0
            assert st.received + st.gaps == n + 1 - first
            assert st.gaps > 0


# ---------------------------------------------------------------- CURVE / ZAP


@pytest.fixture
def keys(run_dir) -> dict[str, Path]:
    k = run_dir / "keys"
    allowed = run_dir / "allowed"
    k.mkdir(mode=0o700)
    allowed.mkdir(mode=0o700)
    server_pub, server_sec = zmq.auth.create_certificates(k, "server")
    good_pub, good_sec = zmq.auth.create_certificates(k, "good")
    _, bad_sec = zmq.auth.create_certificates(k, "bad")
    shutil.copy(good_pub, allowed / "good.key")
    return dict(
        server_pub=Path(server_pub),
        server_sec=Path(server_sec),
        good=Path(good_sec),
        bad=Path(bad_sec),
        allowed=allowed,
    )


def test_tcp_endpoint_refuses_to_start_without_keys(run_dir, keys):
    for tcp in [
        TcpEndpoint(
            server_secret_key=None, allowed_clients_dir=keys["allowed"], bind="tcp://127.0.0.1:0"
        ),
        TcpEndpoint(
            server_secret_key=keys["server_pub"],
            allowed_clients_dir=keys["allowed"],
            bind="tcp://127.0.0.1:0",
        ),  # public key only
        TcpEndpoint(
            server_secret_key=keys["server_sec"], allowed_clients_dir=None, bind="tcp://127.0.0.1:0"
        ),
        TcpEndpoint(
            server_secret_key=keys["server_sec"],
            allowed_clients_dir=run_dir / "keys" / "none",
            bind="tcp://127.0.0.1:0",
        ),
    ]:
        broker = Broker(run_dir, tcp=tcp)
        with pytest.raises(BusSecurityError):
            broker.start()
        assert not broker.running


def test_curve_authorized_receives_unauthorized_does_not(run_dir, keys):
    tcp = TcpEndpoint(
        server_secret_key=keys["server_sec"],
        allowed_clients_dir=keys["allowed"],
        bind="tcp://127.0.0.1:0",
    )
    with Broker(run_dir, tcp=tcp) as broker:
        ep = broker.tcp_endpoint
        assert ep is not None and ep.startswith("tcp://127.0.0.1:")
        good = CurveClient.from_files(keys["server_pub"], keys["good"])
        bad = CurveClient.from_files(keys["server_pub"], keys["bad"])
        with (
            Subscriber(ep, ["stats."], curve=good) as ok_sub,
            Subscriber(ep, ["stats."], curve=bad) as bad_sub,
            Subscriber(ep, ["stats."]) as plain_sub,
            Publisher(broker.xsub_endpoint) as pub,
        ):
            _prime(pub, ok_sub)
            for i in range(20):
                pub.publish(StatsEvent(cam="t", seq=0, t0_ns=i, t1_ns=i))
            got = [e for e in ok_sub.events(0.5) if e.cam == "t"]
            assert len(got) == 20
            assert bad_sub.recv(0.3) is None and plain_sub.recv(0.3) is None
            assert bad_sub.stats == {} and plain_sub.stats == {}
