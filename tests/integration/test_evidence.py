"""Evidence: clips remuxed from the packet ring (Pipeline.write_clip) and the evidence server
(snapshot, clip) with its client, on the real clip tests/media/vtest-h264.mp4."""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import msgpack
import numpy as np
import pytest
import zmq

from smartcity import _core
from smartcity.bus import defaults as d
from smartcity.bus.evidence import EvidenceClient, EvidenceError, evidence_endpoint
from smartcity.engine.evidence import EvidenceServer
from tests.conftest import ROOT
from tests.support.media import make_clip

VTEST = ROOT / "tests" / "media" / "vtest-h264.mp4"
FPS = 10.0  # the clip: 10 fps, GOP 30 (3 s), 795 frames, no B-frames
GOP_S = 3.0


@pytest.fixture
def tmp() -> Iterator[Path]:
    p = Path(tempfile.mkdtemp(prefix="sc-ev-", dir="/tmp"))
    p.chmod(0o700)
    yield p
    shutil.rmtree(p, ignore_errors=True)


def _wait_for(cond, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _decode(mp4: bytes) -> tuple[list[av.VideoFrame], float]:
    """(frames, duration in s from the container) of an MP4 held in memory."""
    with av.open(io.BytesIO(mp4)) as f:
        s = f.streams.video[0]
        frames = list(f.decode(s))
        assert f.duration is not None
        return frames, f.duration / 1e6


def _frame_times(frames: list[av.VideoFrame]) -> list[float]:
    return [float(fr.pts * fr.time_base) for fr in frames]


# ---------------------------------------------------------------- Pipeline.write_clip


def test_write_clip_from_a_streamed_file(tmp):
    with _core.Pipeline(width=160, height=160) as p:
        p.add_stream(
            _core.StreamConfig(camera_id="c", url=str(VTEST), decode_only=True, pre_event_s=20)
        )
        _wait_for(lambda: p.stream_stats("c")["state"] == "stopped", "the end of the file")
        ring = p.packet_ring("c")
        assert ring["starts_with_keyframe"] and ring["last_s"] == pytest.approx(79.4)
        t0, t1 = ring["first_s"] + 4.2, ring["first_s"] + 9.0
        out = tmp / "clip.mp4"
        info = p.write_clip("c", t0, t1, str(out))
        assert info["keyframe_start"] is True
        assert t0 - GOP_S < info["first_s"] <= t0  # from the keyframe at or before t0
        assert info["last_s"] == pytest.approx(t1)
        assert info["bytes"] == out.stat().st_size and info["codec"] == "h264"
        assert info["packets"] == round((info["last_s"] - info["first_s"]) * FPS) + 1
        # The file decodes, starts with a keyframe near 0, and lasts the range within a GOP.
        frames, duration = _decode(out.read_bytes())
        assert len(frames) == info["packets"]
        assert frames[0].key_frame
        times = _frame_times(frames)
        assert times[0] == pytest.approx(0.0, abs=1e-3)
        assert times == sorted(times)
        assert t1 - t0 <= duration <= t1 - t0 + GOP_S + 1 / FPS
        assert duration == pytest.approx(info["duration_s"], abs=1 / FPS)
        with av.open(str(out)) as f:  # faststart: the index before the media data
            head = out.read_bytes()
            assert head.find(b"moov") < head.find(b"mdat")
            assert f.streams.video[0].codec_context.name == "h264"
            assert (f.streams.video[0].width, f.streams.video[0].height) == (768, 576)


def test_write_clip_errors(tmp):
    with _core.Pipeline(width=160, height=160) as p:
        p.add_stream(
            _core.StreamConfig(camera_id="c", url=str(VTEST), decode_only=True, pre_event_s=10)
        )
        _wait_for(lambda: p.stream_stats("c")["state"] == "stopped", "the end of the file")
        ring = p.packet_ring("c")
        with pytest.raises(_core.UnknownCameraError):
            p.write_clip("nope", 0, 1, str(tmp / "x.mp4"))
        with pytest.raises(_core.ClipRangeError, match="no longer in the ring.*holds"):
            p.write_clip("c", 0.0, 1.0, str(tmp / "x.mp4"))
        with pytest.raises(_core.ClipRangeError, match="not in the ring yet"):
            p.write_clip("c", ring["last_s"] - 1, ring["last_s"] + 5, str(tmp / "x.mp4"))
        with pytest.raises(ValueError, match="before t0"):
            p.write_clip("c", 70.0, 69.0, str(tmp / "x.mp4"))
        with pytest.raises(_core.ClipWriteError, match="cannot write"):
            p.write_clip("c", 75.0, 76.0, str(tmp / "missing" / "x.mp4"))
        assert not (tmp / "x.mp4").exists()


def test_clip_times_are_the_batch_pts_clock_across_loops(tmp):
    """Batch.pts (and the tracks messages' pts) and the ring's times are one clock that keeps
    increasing when a file loops, so a pts range picks the packets of those frames."""
    with _core.Pipeline(width=160, height=160, max_batch=4) as p:
        p.add_stream(
            _core.StreamConfig(
                camera_id="c", url=str(VTEST), loop=True, analyze_fps=2, pre_event_s=30
            )
        )
        pts: list[float] = []
        while p.stream_stats("c")["loops"] < 1 or max(pts, default=0) < 85:
            b = p.next_batch(4, 100)
            if b is not None:
                with b:
                    pts += [float(x) for x in b.pts]
        assert pts == sorted(pts) and max(pts) > 79.5  # past the first loop
        # A range across the loop point (79.5 s) and one after it.
        for t0, t1 in [(77.5, 82.0), (pts[-1] - 4, pts[-1] - 1)]:
            info = p.write_clip("c", t0, t1, str(tmp / "l.mp4"))
            frames, _ = _decode((tmp / "l.mp4").read_bytes())
            times = _frame_times(frames)
            assert frames[0].key_frame and times == sorted(times)
            assert len(frames) == info["packets"]
            # The clip's frame k is at stream time first_s + k / FPS: no jump at the loop.
            np.testing.assert_allclose(np.diff(times), 1 / FPS, atol=2e-3)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("h264_b.mp4", dict(codec="h264", fps=25, seconds=4, gop=25, bframes=2)),
        ("hevc.mkv", dict(codec="hevc", fps=25, seconds=4, gop=25, bframes=2)),
        ("mpeg4.avi", dict(codec="mpeg4", fps=25, seconds=4, gop=25)),
        ("mjpeg.avi", dict(codec="mjpeg", fps=25, seconds=4)),
    ],
)
def test_write_clip_of_other_codecs_and_b_frames(tmp, name, args):
    """B-frames (pts after dts) and the other codecs MP4 holds; sources in other containers."""
    src = make_clip(tmp / name, size=(320, 240), **args)
    with _core.Pipeline(width=160, height=160) as p:
        p.add_stream(_core.StreamConfig(camera_id="c", url=str(src), decode_only=True))
        _wait_for(lambda: p.stream_stats("c")["state"] == "stopped", "the end of the file")
        ring = p.packet_ring("c")
        t0, t1 = ring["first_s"] + 1.5, ring["first_s"] + 3.0
        info = p.write_clip("c", t0, t1, str(tmp / "out.mp4"))
    frames, duration = _decode((tmp / "out.mp4").read_bytes())
    assert frames[0].key_frame and info["keyframe_start"]
    # A reference frame shown after t1 may come along for the B-frames before it.
    assert info["first_s"] <= t0 and info["last_s"] <= t1 + (args.get("bframes", 0) + 1) / 25
    times = _frame_times(frames)
    assert times == sorted(times) and len(set(times)) == len(times)
    # With B-frames, packets after t1 in display order are not in the clip, those before are.
    assert len(frames) >= round((t1 - info["first_s"]) * args["fps"]) - args.get("bframes", 0)
    assert len(frames) <= info["packets"]
    assert t1 - t0 - 0.1 <= duration <= t1 - t0 + 1.0 + 0.1


# ---------------------------------------------------------------- the evidence server


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[_core.Pipeline, EvidenceServer, Path]]:
    """A realtime, looping stream (a camera) with the evidence server on <run dir>/evidence,
    shared by the tests of this module (each leaves it serving)."""
    tmp = Path(tempfile.mkdtemp(prefix="sc-ev-", dir="/tmp"))
    tmp.chmod(0o700)
    p = _core.Pipeline(width=160, height=160, max_batch=4)
    p.add_stream(
        _core.StreamConfig(
            camera_id="gate-1", url=str(VTEST), loop=True, realtime=True, analyze_fps=5
        )
    )
    server = EvidenceServer(p, evidence_endpoint(tmp), tmp_dir=str(tmp)).start()
    stop = threading.Event()

    def consume() -> None:  # the batch loop: take batches so that frames are sampled
        while not stop.is_set():
            b = p.next_batch(4, 50)
            if b is not None:
                b.release()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    _wait_for(lambda: p.packet_ring("gate-1")["last_s"] >= 3.5, "3.5 s of packets")
    try:
        yield p, server, tmp
    finally:
        server.stop()
        stop.set()
        t.join()
        p.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_snapshot_is_a_jpeg_of_the_frame(served):
    p, server, run = served
    before = server.counters.snapshots
    with EvidenceClient(run) as ev:
        snap = ev.snapshot("gate-1", timeout_s=10)
    img = cv2.imdecode(np.frombuffer(snap.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (576, 768, 3)
    assert (snap.w, snap.h, snap.cam) == (768, 576, "gate-1")
    assert snap.frame >= 0 and snap.pts >= 0
    assert abs(snap.t_ns - time.time_ns()) < 60 * 10**9  # a wall-clock time, not stream time
    assert server.counters.snapshots == before + 1


def test_clip_of_a_past_range_and_of_a_range_slightly_in_the_future(served):
    p, server, run = served
    before = server.counters.clips
    with EvidenceClient(run) as ev:
        ring = p.packet_ring("gate-1")
        past = ev.clip("gate-1", ring["last_s"] - 2.5, ring["last_s"] - 0.5, timeout_s=20)
        assert past.keyframe and not past.partial and past.packets > 0
        frames, duration = _decode(past.mp4)
        assert frames[0].key_frame and len(frames) == past.packets
        assert 2.0 <= duration <= 2.0 + GOP_S + 1 / FPS
        assert past.t1 == pytest.approx(ring["last_s"] - 0.5, abs=1 / FPS)

        # t1 about a second ahead of the newest packet: the server waits for it.
        last = p.packet_ring("gate-1")["last_s"]
        fut = ev.clip("gate-1", last - 1.0, last + 1.0, wait_s=15, timeout_s=30)
        assert not fut.partial and fut.t1 == pytest.approx(last + 1.0, abs=1 / FPS)
        frames, _ = _decode(fut.mp4)
        assert frames[0].key_frame and len(frames) == fut.packets
    assert server.counters.clips == before + 2
    assert not list(run.glob("clip-*.mp4"))  # temp files removed


def test_clip_wait_ends_with_what_the_ring_holds(served):
    p, _, run = served
    with EvidenceClient(run) as ev:
        last = p.packet_ring("gate-1")["last_s"]
        clip = ev.clip("gate-1", last - 1.0, last + 100.0, wait_s=0.3, timeout_s=20)
        assert clip.partial and last <= clip.t1 < last + 100.0
        assert _decode(clip.mp4)[0][0].key_frame
        with pytest.raises(EvidenceError, match="not in the ring yet"):
            ev.clip("gate-1", last + 300, last + 301, wait_s=0.2, timeout_s=20)


def _raw(sock: zmq.Socket, payload: bytes, timeout_s: float = 10.0) -> dict:
    sock.send(payload)
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    return msgpack.unpackb(sock.recv(), raw=False)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"v": 1, "id": 1, "op": "dance", "cam": "gate-1"}, "op: unknown op 'dance'"),
        ({"v": 1, "id": 2, "cam": "gate-1"}, "op: missing"),
        ({"v": 1, "id": 3, "op": "snapshot"}, "cam: missing"),
        ({"v": 1, "id": 4, "op": "snapshot", "cam": 7}, "cam: expected a string, got int"),
        ({"v": 1, "id": 5, "op": "clip", "cam": "gate-1", "t1": 2.0}, "t0: missing"),
        ({"v": 1, "id": 6, "op": "clip", "cam": "gate-1", "t0": "a", "t1": 2}, "t0: expected a"),
        ({"v": 1, "id": 7, "op": "clip", "cam": "gate-1", "t0": 5, "t1": 2}, "t1: 2.000 is before"),
        (
            {"v": 1, "id": 8, "op": "clip", "cam": "gate-1", "t0": 0, "t1": 1, "wait_s": -1},
            "wait_s",
        ),
        ({"v": 1, "id": 9, "op": "snapshot", "cam": "nope"}, "cam: no camera 'nope'"),
        ({"v": 1, "id": 10, "op": "clip", "cam": "nope", "t0": 0, "t1": 1}, "cam: no camera"),
        ({"v": 2, "id": 11, "op": "snapshot", "cam": "gate-1"}, "v: version 2"),
        ({"id": 12, "op": "snapshot", "cam": "gate-1"}, "v: missing"),
        ({"v": 1, "op": "snapshot", "cam": "gate-1"}, "id: missing"),
        ({"v": 1, "id": [1], "op": "snapshot", "cam": "gate-1"}, "id: expected"),
        ([1, 2, 3], "payload: expected a map"),
    ],
)
def test_bad_requests_get_errors_naming_the_field(served, request_, message):
    _, server, run = served
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(evidence_endpoint(run))
        reply = _raw(sock, msgpack.packb(request_))
        assert reply["ok"] is False and message in reply["error"], reply
        if isinstance(request_, dict) and type(request_.get("id")) is int:
            assert reply["id"] == request_["id"]
        # The server keeps serving.
        ok = _raw(sock, msgpack.packb({"v": 1, "id": 99, "op": "snapshot", "cam": "gate-1"}))
        assert ok["ok"] is True and ok["id"] == 99


def test_malformed_and_huge_messages(served):
    _, server, run = served
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(evidence_endpoint(run))
        assert "payload: not a valid msgpack" in _raw(sock, b"\xc1\x00")["error"]
        big = msgpack.packb({"v": 1, "id": 1, "op": "snapshot", "cam": "x" * 100_000})
        reply = _raw(sock, big)
        assert reply["ok"] is False and "payload:" in reply["error"]
        assert f"more than {d.EVIDENCE_MAX_REQUEST_BYTES}" in reply["error"]
        binary = msgpack.packb({"v": 1, "id": 1, "op": "snapshot", "cam": b"gate-1"})
        assert "payload: not a valid msgpack" in _raw(sock, binary)["error"]  # no bin
    # Beyond ZMQ_MAXMSGSIZE the connection is dropped: no reply, the client's time-out says so.
    with ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(evidence_endpoint(run))
        sock.send(b"\x00" * (d.EVIDENCE_MAX_MSG_SIZE + 1))
        assert not sock.poll(300)
    with EvidenceClient(run) as ev:
        assert ev.snapshot("gate-1").w == 768  # still serving
        with pytest.raises(EvidenceError, match="cam: no camera 'zzz'"):
            ev.snapshot("zzz")


def test_client_times_out_without_a_server(tmp):
    with EvidenceClient(tmp) as ev:
        with pytest.raises(EvidenceError, match="no reply .* within 0.2 s"):
            ev.snapshot("gate-1", timeout_s=0.2)


# ---------------------------------------------------------------- several engines: EvidenceRouter


class _FakePipeline:
    """What EvidenceServer needs for snapshots: one camera with a frame."""

    def __init__(self, cams: dict[str, int]) -> None:
        self.cams = cams  # camera -> grey level of its picture

    def snapshot(self, cam: str):
        if cam not in self.cams:
            raise _core.UnknownCameraError(cam)
        bgr = np.full((48, 64, 3), self.cams[cam], np.uint8)
        return {"image": bgr, "frame": 7, "pts": 1.5, "t_ns": 123}


def test_router_finds_each_camera_in_its_engine(tmp):
    from smartcity.bus.evidence import (
        EvidenceRouter,
        evidence_endpoints,
        named_evidence_endpoint,
    )

    a = EvidenceServer(_FakePipeline({"a1": 40}), evidence_endpoint(tmp)).start()
    b = EvidenceServer(_FakePipeline({"b1": 200}), named_evidence_endpoint(tmp, "people")).start()
    try:
        eps = evidence_endpoints(tmp)
        assert eps == [evidence_endpoint(tmp), evidence_endpoint(tmp) + ".people"]
        with EvidenceRouter(tmp) as ev:
            for cam, grey in (("b1", 200), ("a1", 40), ("b1", 200)):
                snap = ev.snapshot(cam, timeout_s=5)
                img = cv2.imdecode(np.frombuffer(snap.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
                assert snap.cam == cam and abs(int(img.mean()) - grey) < 5
            assert ev._home == {"b1": eps[1], "a1": eps[0]}
            with pytest.raises(EvidenceError, match="no camera 'zz' in any engine"):
                ev.snapshot("zz", timeout_s=5)
    finally:
        a.stop()
        b.stop()
    with pytest.raises(ValueError, match="evidence name"):
        named_evidence_endpoint(tmp, "../x")


def test_router_skips_an_engine_that_does_not_answer(tmp):
    from smartcity.bus.evidence import EvidenceRouter, named_evidence_endpoint

    # A socket file nobody serves (an engine that died): bound, then the context goes away
    # without unlinking it.
    ctx = zmq.Context()
    dead = ctx.socket(zmq.ROUTER)
    dead.bind(evidence_endpoint(tmp))
    live = EvidenceServer(_FakePipeline({"c": 90}), named_evidence_endpoint(tmp, "b")).start()
    try:
        with EvidenceRouter(tmp) as ev:
            assert ev.snapshot("c", timeout_s=0.5).cam == "c"  # the silent one timed out
            assert evidence_endpoint(tmp) in ev._down
            assert ev.snapshot("c", timeout_s=0.5).cam == "c"  # remembered
            assert ev._home["c"].endswith("evidence.b")
            # A camera nobody runs: the silent engine is skipped while it is down, so the
            # answer is the live engine's refusal, not a time-out.
            with pytest.raises(EvidenceError, match="in any engine"):
                ev.snapshot("nobody", timeout_s=0.5)
    finally:
        live.stop()
        dead.close(linger=0)
        ctx.term()
