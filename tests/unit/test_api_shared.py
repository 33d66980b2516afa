"""What the API's worker processes share (smartcity/api/shared.py): the leader lock, token
buckets in a shared file, the credential-cache generation, the datagrams of operator actions.
Two objects on one file stand for two processes (flock locks belong to the open file, so two
opens in one process conflict as two processes would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smartcity.api.hub import LOCAL, PEER, LiveEvent
from smartcity.api.policy import RateLimiter
from smartcity.api.settings import ApiSettings, ApiSettingsError
from smartcity.api.shared import Leader, PeerLink, SharedCounter, SharedRateLimiter


def test_leader_lock_is_exclusive_and_freed_when_its_holder_ends(tmp_path: Path) -> None:
    path = tmp_path / "api-leader.lock"
    a, b = Leader(path), Leader(path)
    assert a.try_take() and a.held and a.try_take()  # taking again: still held
    assert not b.try_take() and not b.held
    assert b.holder() == os.getpid()
    a.release()
    assert b.try_take() and b.holder() == os.getpid()
    b.release()
    # a holder in another process that dies without releasing: the kernel frees the lock
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from smartcity.api.shared import Leader\n"
         f"assert Leader({str(path)!r}).try_take(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        assert not a.try_take() and a.holder() == child.pid
        child.kill()
        child.wait()
        assert a.try_take() and a.holder() == os.getpid()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()
        a.release()


def test_shared_buckets_are_one_limit_for_every_process(tmp_path: Path) -> None:
    path = tmp_path / "api-limits.bin"
    a, b = SharedRateLimiter(path), SharedRateLimiter(path)
    ref = RateLimiter()  # the in-process limiter: the same answers, in one process
    t = 1_000.0
    for i in range(6):  # 6 a minute: the 6 first pass, alternating "processes"
        assert (a, b)[i % 2].take(("login", "10.0.0.1"), 6, now=t) == 0.0
        assert ref.take(("login", "10.0.0.1"), 6, now=t) == 0.0
    wait = a.take(("login", "10.0.0.1"), 6, now=t)
    assert wait == pytest.approx(10.0) == ref.take(("login", "10.0.0.1"), 6, now=t)
    assert b.take(("login", "10.0.0.1"), 6, now=t) == pytest.approx(10.0)
    assert b.take(("login", "10.0.0.2"), 6, now=t) == 0.0  # another address: its own bucket
    # one token back every 10 s, for both
    assert b.take(("login", "10.0.0.1"), 6, now=t + 10.0) == 0.0
    assert a.take(("login", "10.0.0.1"), 6, now=t + 10.0) > 0.0
    # a clock step back pauses the refill, never refuses forever or grants extra
    assert a.take(("login", "10.0.0.1"), 6, now=t - 100.0) > 0.0
    assert a.take(("login", "10.0.0.1"), 6, now=t + 30.0) == 0.0
    # a new file (another layout) starts empty: nothing refused
    a.close()
    b.close()
    c = SharedRateLimiter(path, slots=64)
    assert c.take(("login", "10.0.0.1"), 6, now=t) == 0.0
    c.close()


def test_a_full_table_takes_over_the_least_recent_slot(tmp_path: Path) -> None:
    lim = SharedRateLimiter(tmp_path / "l.bin", slots=8)  # 8 slots, all probed for every key
    for k in range(8):
        assert lim.take(("key", k), 1, now=100.0 + k) == 0.0
        assert lim.take(("key", k), 1, now=100.0 + k) > 0.0  # each bucket now empty
    assert lim.take(("key", 99), 1, now=110.0) == 0.0  # takes over key 0's slot (oldest)
    assert lim.take(("key", 0), 1, now=110.0) == 0.0  # forgotten: a full bucket again
    assert lim.take(("key", 7), 1, now=110.0) > 0.0  # still known
    # slots idle for two minutes are free again
    assert lim.take(("key", 5), 1, now=300.0) == 0.0
    with pytest.raises(ValueError, match="slots"):
        SharedRateLimiter(tmp_path / "x.bin", slots=4)
    lim.close()


def test_counter_is_seen_by_every_opener(tmp_path: Path) -> None:
    a, b = SharedCounter(tmp_path / "g"), SharedCounter(tmp_path / "g")
    assert a.value() == b.value() == 0
    assert a.bump() == 1 and b.value() == 1
    assert b.bump() == 2 and a.value() == 2
    a.close()
    b.close()


def test_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # one process by default, whatever the machine: operator actions reach the live feed of
    # the process that made them only (docs/api.md, "Worker processes")
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert ApiSettings().workers == 1
    assert ApiSettings.load({"workers": 3}).workers == 3
    assert ApiSettings.load({}, env={"SMARTCITY_API_WORKERS": "2"}).workers == 2
    for bad, said in ((0, "from 1 to 64"), (65, "from 1 to 64"), (2.5, "whole number"),
                      ("two", "number"), (True, "number")):  # fmt: skip
        with pytest.raises(ApiSettingsError, match=f"api.workers: .*{said}"):
            ApiSettings.load({"workers": bad})


def test_peer_link_sends_to_every_other_process_and_drops_the_gone(tmp_path: Path) -> None:
    folder = tmp_path / "api-peers"
    a, b, c = PeerLink(folder), PeerLink(folder), PeerLink(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    a.send(b"one")
    assert b.receive() == [b"one"] and c.receive() == [b"one"] and a.receive() == []
    # a process killed without closing its socket: its file stays, sending removes it
    gone = c.path
    c.sock.close()
    a.send(b"two")
    assert not gone.exists() and b.receive() == [b"two"]
    with pytest.raises(ValueError, match="at most"):
        a.send(b"x" * (PeerLink.MAX_BYTES + 1))
    for p in (a, b):
        p.close()
    assert list(folder.glob("*.sock")) == []


def test_live_event_over_the_wire_and_bad_datagrams() -> None:
    ev = LiveEvent("incident.changed.wrong_way", {"action": "acknowledge", "by": "op"}, "cam1",
                   "high")  # fmt: skip
    assert ev.origin == LOCAL
    back = LiveEvent.from_wire(ev.to_wire())
    assert back.origin == PEER
    assert (back.type, back.payload, back.camera, back.severity, back.id, back.at) == (
        ev.type, ev.payload, ev.camera, ev.severity, ev.id, ev.at)  # fmt: skip
    for bad, said in ((b"\xff", "not JSON"), (b"[1]", "not an object"),
                      (b'{"type": "", "id": "1", "at": "t", "payload": {}}', "type"),
                      (b'{"type": "x", "id": "1", "at": "t", "payload": []}', "payload"),
                      (b'{"type": "x", "id": "1", "at": "t", "payload": {}, "camera": 3}',
                       "camera")):  # fmt: skip
        with pytest.raises(ValueError, match=said):
            LiveEvent.from_wire(bad)
