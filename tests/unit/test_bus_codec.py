"""The bus codec: round trips, and refusal of malformed, oversized or mistyped payloads."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from smartcity.bus import codec, defaults
from smartcity.bus.codec import DecodeError, decode, encode, encode_tracks
from smartcity.bus.events import (
    ConfigChangedEvent,
    HealthEvent,
    IncidentEvent,
    StatsEvent,
    TracksEvent,
)
from smartcity.bus.subscriber import TopicStats


def _tracks(n: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 700, (n, 2)).astype(np.float32)
    wh = rng.uniform(1, 60, (n, 2)).astype(np.float32)
    return dict(
        frame=int(rng.integers(0, 10**9)),
        pts=float(rng.uniform(0, 1e5)),
        t_ns=int(rng.integers(0, 2**62)),
        w=768,
        h=576,
        track_id=rng.integers(0, 2**40, n),
        class_id=rng.integers(0, 6, n).astype(np.int32),
        score=rng.uniform(0, 1, n).astype(np.float32),
        xyxy=np.hstack([xy, xy + wh]),
        ground_xy=rng.uniform(-50, 50, (n, 2)).astype(np.float32),
        speed_kmh=rng.uniform(0, 120, n).astype(np.float32),
    )


def test_tracks_round_trip_is_exact():
    t = _tracks(17, seed=3)
    topic, payload = encode_tracks("cam-7", 42, **t)
    assert topic == b"tracks.cam-7"
    ev = decode(topic, payload)
    assert isinstance(ev, TracksEvent)
    assert (ev.cam, ev.seq, ev.frame, ev.pts, ev.t_ns, ev.w, ev.h) == (
        "cam-7",
        42,
        t["frame"],
        t["pts"],
        t["t_ns"],
        768,
        576,
    )
    np.testing.assert_array_equal(ev.track_id, t["track_id"])
    np.testing.assert_array_equal(ev.class_id, t["class_id"])
    np.testing.assert_array_equal(ev.score, t["score"])
    np.testing.assert_array_equal(ev.xyxy, t["xyxy"])
    np.testing.assert_array_equal(ev.ground_xy, t["ground_xy"])
    np.testing.assert_array_equal(ev.speed_kmh, t["speed_kmh"])
    assert ev.xyxy.dtype == np.float32 and ev.track_id.dtype == np.int64
    assert ev.ground_xy.dtype == np.float32 and ev.ground_xy.shape == (17, 2)
    assert ev.speed_kmh.dtype == np.float32 and ev.speed_kmh.shape == (17,)


def test_unknown_ground_and_speed_round_trip_as_nan():
    t = _tracks(4, seed=5)
    t["ground_xy"][1] = np.nan  # uncalibrated camera / unknown speed
    t["speed_kmh"][[0, 1]] = np.nan
    ev = decode(*encode_tracks("c", 0, **t))
    np.testing.assert_array_equal(ev.ground_xy, t["ground_xy"])  # NaN == NaN here
    np.testing.assert_array_equal(ev.speed_kmh, t["speed_kmh"])
    assert np.isnan(ev.ground_xy[1]).all() and np.isnan(ev.speed_kmh[:2]).all()
    # None means unknown for every track
    del t["ground_xy"], t["speed_kmh"]
    ev = decode(*encode_tracks("c", 0, **t))
    assert ev.ground_xy.shape == (4, 2) and np.isnan(ev.ground_xy).all()
    assert ev.speed_kmh.shape == (4,) and np.isnan(ev.speed_kmh).all()


def test_old_seven_column_rows_decode_with_nan_ground_and_speed():
    _, p = encode_tracks("c", 0, **_tracks(3))
    m = msgpack.unpackb(p)
    m["tracks"] = [row[:7] for row in m["tracks"]]
    ev = decode(b"tracks.c", msgpack.packb(m))
    assert len(ev) == 3
    assert ev.ground_xy.shape == (3, 2) and np.isnan(ev.ground_xy).all()
    assert ev.speed_kmh.shape == (3,) and np.isnan(ev.speed_kmh).all()


def test_event_defaults_are_nan_of_the_right_length():
    ev = TracksEvent(cam="c", seq=0, frame=0, pts=0.0, t_ns=0, w=1, h=1, track_id=np.arange(3))
    assert ev.ground_xy.shape == (3, 2) and np.isnan(ev.ground_xy).all()
    assert ev.speed_kmh.shape == (3,) and np.isnan(ev.speed_kmh).all()
    t = _tracks(2)
    full = TracksEvent(cam="c", seq=4, **t)
    back = decode(*encode(full))
    assert isinstance(back, TracksEvent)
    np.testing.assert_array_equal(back.ground_xy, t["ground_xy"])
    np.testing.assert_array_equal(back.speed_kmh, t["speed_kmh"])


def test_tracks_are_compact_rows():
    topic, payload = encode_tracks("c", 0, **_tracks(2))
    raw = msgpack.unpackb(payload)
    assert raw["v"] == defaults.SCHEMA_VERSION
    assert isinstance(raw["tracks"], list) and all(len(r) == 10 for r in raw["tracks"])
    # float32 scores, boxes, ground xy and speed (5 bytes each), ids of at most 9 bytes: at
    # most 52 bytes a row
    _, big = encode_tracks("c", 0, **_tracks(40))
    assert len(big) <= 100 + 40 * 52


def test_empty_tracks():
    t = _tracks(0)
    ev = decode(*encode_tracks("c", 1, **t))
    assert len(ev) == 0 and ev.xyxy.shape == (0, 4)


@pytest.mark.parametrize(
    "event",
    [
        HealthEvent(
            cam="c1",
            seq=3,
            t_ns=5,
            state="running",
            packets=9,
            codec="h264",
            last_frame_age_s=0.25,
            infer_ms=3.5,
        ),
        IncidentEvent(
            type="wrong_way",
            seq=1,
            id="i-1",
            cam="c2",
            state="open",
            t_ns=7,
            track_ids=(4, 5),
            score=0.9,
            details={"lane": 2, "note": "x"},
        ),
        StatsEvent(cam="c3", seq=0, t0_ns=1, t1_ns=2, counts={"car": 12, "bus": 1}),
        ConfigChangedEvent(seq=8, t_ns=3, cams=("a", "b"), reason="reload"),
    ],
)
def test_other_events_round_trip(event):
    topic, payload = encode(event)
    assert topic.decode() == event.topic
    assert decode(topic, payload) == event


def _payload(**override) -> bytes:
    _, p = encode_tracks("c", 0, **_tracks(3))
    m = msgpack.unpackb(p)
    m.update(override)
    return msgpack.packb({k: v for k, v in m.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "payload"),
        (b"\xc1garbage", "payload"),
        (b"\x93\x01\x02", "payload"),  # truncated array
        (msgpack.packb([1, 2, 3]), "payload"),
        (msgpack.packb({"v": 1}) + b"\x00", "payload"),  # extra data
        (msgpack.packb({1: 2}), "payload"),  # non-string map key
        (b"\x00" * (defaults.MAX_BUFFER_SIZE + 1), "payload"),
        (msgpack.packb({"x": b"\x00" * 10}), "payload"),  # bin is not allowed
        (_payload(v=_DROP), "v"),
        (_payload(v="1"), "v"),
        (_payload(v=defaults.SCHEMA_VERSION + 1), "v"),
        (_payload(cam="other"), "cam"),
        (_payload(cam=5), "cam"),
        (_payload(seq=-1), "seq"),
        (_payload(seq=True), "seq"),
        (_payload(frame=1.5), "frame"),
        (_payload(pts="now"), "pts"),
        (_payload(pts=float("nan")), "pts"),
        (_payload(tracks=_DROP), "tracks"),
        (_payload(tracks={"a": 1}), "tracks"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1]]), "tracks[0]"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1, 1], "x"]), "tracks[1]"),
        (_payload(tracks=[[-1, 2, 0.5, 0, 0, 1, 1]]), "tracks[0].id"),
        (_payload(tracks=[[1, "car", 0.5, 0, 0, 1, 1]]), "tracks[0].cls"),
        (_payload(tracks=[[1, 2, None, 0, 0, 1, 1]]), "tracks[0].score"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, float("inf"), 1]]), "tracks[0].x2"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, float("nan"), 1]]), "tracks[0].x2"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1, 1, float("inf"), 0, 0]]), "tracks[0].gx"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1, 1, 0, "north", 0]]), "tracks[0].gy"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1, 1, 0, 0, -float("inf")]]), "tracks[0].kmh"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1, 1, 0, 0, None]]), "tracks[0].kmh"),
        (_payload(tracks=[[1, 2, 0.5, 0, 0, 1, 1]] * (defaults.MAX_TRACKS + 1)), "tracks"),
    ],
)
def test_malformed_payloads_are_refused_naming_the_field(payload, field):
    with pytest.raises(DecodeError) as info:
        decode(b"tracks.c", payload)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(field + ":")


@pytest.mark.parametrize(
    "topic", [b"", b"tracks", b"tracks.", b"nope.c", b"\xff\xfe.c", b"t" * 300]
)
def test_bad_topics_are_refused(topic):
    with pytest.raises(DecodeError) as info:
        decode(topic, encode_tracks("c", 0, **_tracks(1))[1])
    assert info.value.field == "topic"


def test_fuzzed_garbage_never_escapes_as_another_error():
    rng = np.random.default_rng(1)
    _, good = encode_tracks("c", 0, **_tracks(4))
    refused = 0
    for _ in range(3000):
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        cut = int(rng.integers(0, len(b) + 1))
        try:
            decode(b"tracks.c", bytes(b[:cut]))
        except DecodeError:
            refused += 1
    assert refused > 0


def test_newer_fields_are_ignored_older_readers_keep_working():
    _, p = encode_tracks("c", 0, **_tracks(2))
    m = msgpack.unpackb(p)
    m["future_field"] = [1, 2]
    m["tracks"] = [row + [99] for row in m["tracks"]]  # an appended column
    ev = decode(b"tracks.c", msgpack.packb(m))
    assert len(ev) == 2
    m["tracks"] = [row + ["anything"] for row in m["tracks"]]  # unknown columns are not checked
    assert len(decode(b"tracks.c", msgpack.packb(m))) == 2


def test_gap_accounting():
    s = TopicStats()
    for seq in [5, 6, 7, 10, 11, 0, 1, 3, 2]:
        s.see(seq)
    # joined at 5 (not a gap); 8, 9 missing; restart at 0; 2 missing then 2 arrives late (restart)
    assert s.first_seq == 5
    assert s.gaps == 2 + 1 + 2
    assert s.restarts == 2
    assert s.last_seq == 2


def test_peek_seq_of_undecodable_payload():
    assert codec.peek_seq(_payload(seq=12, cam="zzz")) == 12
    assert codec.peek_seq(b"\xc1") is None


def _rows(rng, n, width):
    rows = []
    for i in range(n):
        row = [int(i + 1), int(rng.integers(0, 6)), float(rng.random())]
        row += [float(v) for v in rng.uniform(-50, 2000, 4)]
        if width > 7:
            extra = [float(v) for v in rng.uniform(-100, 100, width - 7)]
            if i % 3 == 0:
                extra[0] = float("nan")
            row += extra
        rows.append(row)
    return rows


@pytest.mark.parametrize("width", [7, 10, 12])
def test_fast_track_decoding_equals_the_checked_path(width):
    from smartcity._core import track_rows_to_arrays
    from smartcity.bus.codec import _track_arrays_checked

    rng = np.random.default_rng(width)
    rows = _rows(rng, 40, width)
    rows[5][3] = 7  # an integer where a float is expected is a number too
    fast = track_rows_to_arrays(rows)
    assert fast is not None
    for a, b in zip(fast, _track_arrays_checked(rows), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (0, True, "tracks[4].id"),
        (0, -1, "tracks[4].id"),
        (1, 2**40, "tracks[4].cls"),
        (2, None, "tracks[4].score"),
        (3, "1", "tracks[4].x1"),
        (6, float("inf"), "tracks[4].y2"),
        (6, float("nan"), "tracks[4].y2"),
        (8, float("-inf"), "tracks[4].gy"),
    ],
)
def test_bad_values_are_named_whichever_path_decodes(index, value, field):
    rows = _rows(np.random.default_rng(0), 10, 10)
    rows[4][index] = value
    payload = msgpack.packb(
        {"v": 1, "cam": "c", "seq": 0, "frame": 0, "pts": 0.0, "t_ns": 0, "w": 640, "h": 360,
         "tracks": rows}
    )  # fmt: skip
    with pytest.raises(DecodeError) as ei:
        decode(b"tracks.c", payload)
    assert ei.value.field == field


def _slow_decode(payload: bytes) -> TracksEvent:
    m = codec._header(codec.unpack(payload), "tracks", "c")
    return codec._decode_tracks(m)


@pytest.mark.parametrize("width", [7, 10, 12])
@pytest.mark.parametrize("single_float", [False, True])
def test_whole_payload_fast_path_equals_the_python_decoder(width, single_float):
    from smartcity._core import decode_tracks_payload

    rng = np.random.default_rng(width)
    rows = _rows(rng, 40, width)
    rows[5][3] = 7  # an int where a float is expected
    rows[6][1] = -3  # a negative class id
    m = {"v": 1, "cam": "c", "seq": 3, "frame": 9, "pts": 1.5, "t_ns": -5, "w": 640, "h": 360,
         "future": "text", "flag": True, "none": None, "tracks": rows}  # fmt: skip
    payload = msgpack.packb(m, use_single_float=single_float)
    fast = decode_tracks_payload(
        payload, defaults.MAX_ARRAY_LEN, defaults.MAX_MAP_LEN, defaults.MAX_STR_LEN
    )
    assert fast is not None  # this payload takes the fast path
    assert fast[0] == {k: v for k, v in msgpack.unpackb(payload).items() if k != "tracks"}
    got, want = decode(b"tracks.c", payload), _slow_decode(payload)
    for f in TracksEvent.__struct_fields__:
        a, b = getattr(got, f), getattr(want, f)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and not a.flags.writeable
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, f


def test_fast_path_declines_what_it_does_not_take():
    from smartcity._core import decode_tracks_payload

    def fast(p: bytes) -> object:
        return decode_tracks_payload(p, 65536, 256, 65536)

    ok = {"v": 1, "cam": "c", "tracks": [[1, 2, 0.5, 0, 0, 1, 1]]}
    assert fast(msgpack.packb(ok)) is not None
    assert fast(msgpack.packb(ok) + b"\x00") is None  # trailing bytes
    assert fast(msgpack.packb({**ok, "x": [1]})) is None  # a nested value
    assert fast(msgpack.packb({**ok, "x": b"1"})) is None  # binary
    assert fast(msgpack.packb({1: 2, **ok})) is None  # a key that is not a string
    assert fast(msgpack.packb({**ok, "tracks": [[1, True, 0.5, 0, 0, 1, 1]]})) is None
    assert (
        fast(
            msgpack.packb({**ok, "cam": "x" * 100}),
        )
        is not None
    )
    assert decode_tracks_payload(msgpack.packb({**ok, "cam": "x" * 100}), 65536, 256, 50) is None
    assert fast(msgpack.packb({"v": 1, "cam": "c"})) is None  # no tracks
    # A later duplicate key wins, as in the Python decoder (dict semantics).
    dup = b"\x83" + msgpack.packb("tracks")[0:] + msgpack.packb([])
    dup += msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("tracks")
    dup += msgpack.packb([[4, 2, 0.5, 0, 0, 1, 1]])
    r = fast(dup)
    assert r is not None and list(r[1]) == [4]
    assert list(msgpack.unpackb(dup)["tracks"][0][:1]) == [4]
