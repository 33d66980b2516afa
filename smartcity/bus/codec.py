"""msgpack codec of bus messages: multipart [topic, payload] (docs/events.md).

Decoding treats every payload as untrusted: size and unpacker limits first, then a type check of
every field. Any problem raises DecodeError naming the field; nothing else escapes decode().
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import msgspec
import numpy as np

from smartcity import _core
from smartcity.bus import defaults as d
from smartcity.bus.events import (
    CONFIG_CHANGED,
    HEALTH,
    INCIDENT,
    STATS,
    TRACK_COLUMNS,
    TRACK_COLUMNS_MIN,
    TRACKS,
    ConfigChangedEvent,
    Event,
    HealthEvent,
    IncidentEvent,
    StatsEvent,
    TracksEvent,
)

_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


class DecodeError(ValueError):
    """A message that does not follow docs/events.md. `field` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# ---------------------------------------------------------------- topics


def topic_of(family: str, key: str = "") -> bytes:
    """The topic bytes of a family and key: topic_of("tracks", "cam1") == b"tracks.cam1"."""
    if family == CONFIG_CHANGED:
        if key:
            raise ValueError("config.changed has no key")
        return CONFIG_CHANGED.encode()
    if family not in (TRACKS, HEALTH, INCIDENT, STATS):
        raise ValueError(f"unknown topic family {family!r}")
    if not key:
        raise ValueError(f"{family} topics need a key (camera or incident type)")
    topic = f"{family}.{key}".encode()
    if len(topic) > d.MAX_TOPIC_BYTES:
        raise ValueError(f"topic longer than {d.MAX_TOPIC_BYTES} bytes")
    return topic


def parse_topic(topic: bytes) -> tuple[str, str]:
    """(family, key) of a topic; DecodeError("topic", ...) for anything else."""
    if not isinstance(topic, bytes | bytearray | memoryview):
        raise DecodeError("topic", "not bytes")
    if len(topic) > d.MAX_TOPIC_BYTES:
        raise DecodeError("topic", f"{len(topic)} bytes, more than {d.MAX_TOPIC_BYTES}")
    try:
        text = bytes(topic).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("topic", "not UTF-8") from None
    if text == CONFIG_CHANGED:
        return CONFIG_CHANGED, ""
    family, dot, key = text.partition(".")
    if not dot or not key or family not in (TRACKS, HEALTH, INCIDENT, STATS):
        raise DecodeError("topic", f"unknown topic {text[:64]!r}")
    return family, key


# ---------------------------------------------------------------- msgpack with limits


def pack(obj: Any) -> bytes:
    """msgpack bytes of obj (floats as float64)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(payload: bytes) -> Any:
    """msgpack object of an untrusted payload, within the limits of defaults.py."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise DecodeError("payload", "not bytes")
    if len(payload) > d.MAX_BUFFER_SIZE:
        raise DecodeError("payload", f"{len(payload)} bytes, more than {d.MAX_BUFFER_SIZE}")
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=d.MAX_STR_LEN,
            max_bin_len=d.MAX_BIN_LEN,
            max_ext_len=d.MAX_EXT_LEN,
            max_array_len=d.MAX_ARRAY_LEN,
            max_map_len=d.MAX_MAP_LEN,
        )
    except (ValueError, msgpack.UnpackException, RecursionError) as e:
        # ExtraData, FormatError, StackError and limit errors are ValueError subclasses.
        raise DecodeError(
            "payload", f"not a valid msgpack message ({type(e).__name__}: {e})"
        ) from None


# ---------------------------------------------------------------- field checks


def _get(m: Mapping[str, Any], key: str, required: bool = True) -> Any:
    if key not in m:
        if required:
            raise DecodeError(key, "missing")
        return None
    return m[key]


def _int(m: Mapping[str, Any], key: str, lo: int, hi: int, required: bool = True) -> int | None:
    v = _get(m, key, required)
    if v is None and not required:
        return None
    return _check_int(v, key, lo, hi)


def _check_int(v: Any, name: str, lo: int, hi: int) -> int:
    if type(v) is not int:  # bool is an int subclass: refused
        raise DecodeError(name, f"expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise DecodeError(name, f"{v} outside [{lo}, {hi}]")
    return v


def _check_float(v: Any, name: str, finite: bool = True) -> float:
    if type(v) is not float and type(v) is not int:
        raise DecodeError(name, f"expected a number, got {type(v).__name__}")
    f = float(v)
    if finite and not math.isfinite(f):
        raise DecodeError(name, "not finite")
    return f


def _check_float_or_nan(v: Any, name: str) -> float:
    """A finite number or NaN (unknown); infinities are refused."""
    f = _check_float(v, name, finite=False)
    if math.isinf(f):
        raise DecodeError(name, "infinite")
    return f


def _float(m: Mapping[str, Any], key: str, required: bool = True) -> float | None:
    v = _get(m, key, required)
    if v is None and not required:
        return None
    return _check_float(v, key)


def _str(
    m: Mapping[str, Any], key: str, required: bool = True, max_len: int = d.MAX_STR_LEN
) -> str:
    v = _get(m, key, required)
    if v is None and not required:
        return ""
    if type(v) is not str:
        raise DecodeError(key, f"expected a string, got {type(v).__name__}")
    if len(v.encode()) > max_len:
        raise DecodeError(key, f"longer than {max_len} bytes")
    return v


def _header(obj: Any, family: str, key: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise DecodeError("payload", f"expected a map, got {type(obj).__name__}")
    v = _get(obj, "v")
    if type(v) is not int:
        raise DecodeError("v", f"expected an integer, got {type(v).__name__}")
    if v > d.SCHEMA_VERSION:
        raise DecodeError("v", f"schema {v} is newer than this reader's {d.SCHEMA_VERSION}")
    if v < 1:
        raise DecodeError("v", f"schema {v} does not exist")
    if family in (TRACKS, HEALTH, STATS):
        cam = _str(obj, "cam", max_len=d.MAX_CAMERA_BYTES)
        if cam != key:
            raise DecodeError("cam", f"{cam[:64]!r} does not match the topic's camera {key[:64]!r}")
    return obj


# ---------------------------------------------------------------- decoding per family


def _track_arrays_checked(rows: list[Any]) -> tuple[np.ndarray, ...]:
    """Row by row with a check of every value: exact errors (`tracks[3].x2: not finite`)."""
    n = len(rows)
    ids = np.empty(n, np.int64)
    cls = np.empty(n, np.int32)
    score = np.empty(n, np.float32)
    xyxy = np.empty((n, 4), np.float32)
    # gx, gy, kmh: NaN where unknown, and for rows of writers that stop after y2.
    extra = np.full((n, 3), np.nan, np.float32)
    ncol = TRACK_COLUMNS_MIN
    for i, row in enumerate(rows):
        if type(row) is not list or len(row) < ncol:
            raise DecodeError(f"tracks[{i}]", f"expected an array of at least {ncol} values")
        ids[i] = _check_int(row[0], f"tracks[{i}].id", 0, _INT64_MAX)
        cls[i] = _check_int(row[1], f"tracks[{i}].cls", _INT32_MIN, _INT32_MAX)
        score[i] = _check_float(row[2], f"tracks[{i}].score")
        for k in range(4):
            xyxy[i, k] = _check_float(row[3 + k], f"tracks[{i}].{TRACK_COLUMNS[3 + k]}")
        # Columns appended later: NaN allowed (unknown); columns beyond these are ignored.
        for k in range(min(len(row), len(TRACK_COLUMNS)) - ncol):
            extra[i, k] = _check_float_or_nan(
                row[ncol + k], f"tracks[{i}].{TRACK_COLUMNS[ncol + k]}"
            )
    return ids, cls, score, xyxy, extra


def _decode_tracks(m: Mapping[str, Any]) -> TracksEvent:
    rows = _get(m, "tracks")
    if type(rows) is not list:
        raise DecodeError("tracks", f"expected an array, got {type(rows).__name__}")
    n = len(rows)
    if n > d.MAX_TRACKS:
        raise DecodeError("tracks", f"{n} tracks, more than {d.MAX_TRACKS}")
    # One pass in C++ for well-formed rows; the checked path names the field otherwise.
    arrays = _core.track_rows_to_arrays(rows) or _track_arrays_checked(rows)
    return _tracks_event(m, arrays)


def _decode_tracks_fast(payload: bytes, key: str) -> TracksEvent | None:
    """The whole payload parsed in C++ (no Python object per value); None when anything is off
    the fast path's schema, and the Python decoder then names the problem."""
    if type(payload) is not bytes or len(payload) > d.MAX_BUFFER_SIZE:
        return None
    fast = _core.decode_tracks_payload(payload, d.MAX_ARRAY_LEN, d.MAX_MAP_LEN, d.MAX_STR_LEN)
    if fast is None or len(fast[1]) > d.MAX_TRACKS:
        return None
    header, ids, cls, score, xyxy, extra = fast
    return _tracks_event(_header(header, TRACKS, key), (ids, cls, score, xyxy, extra))


def _tracks_event(m: Mapping[str, Any], arrays: tuple[np.ndarray, ...]) -> TracksEvent:
    ids, cls, score, xyxy, extra = arrays
    ground_xy = np.ascontiguousarray(extra[:, :2])
    speed_kmh = np.ascontiguousarray(extra[:, 2])
    for a in (ids, cls, score, xyxy, ground_xy, speed_kmh):
        a.setflags(write=False)
    return TracksEvent(
        cam=m["cam"],
        seq=_check_int(_get(m, "seq"), "seq", 0, _UINT64_MAX),
        frame=_check_int(_get(m, "frame"), "frame", 0, _UINT64_MAX),
        pts=_check_float(_get(m, "pts"), "pts"),
        t_ns=_check_int(_get(m, "t_ns"), "t_ns", -_INT64_MAX - 1, _INT64_MAX),
        w=_check_int(_get(m, "w"), "w", 0, 1 << 20),
        h=_check_int(_get(m, "h"), "h", 0, 1 << 20),
        track_id=ids,
        class_id=cls,
        score=score,
        xyxy=xyxy,
        ground_xy=ground_xy,
        speed_kmh=speed_kmh,
        v=m["v"],
    )


_HEALTH_FIELDS = msgspec.structs.fields(HealthEvent)
_HEALTH_INTS = {f.name for f in _HEALTH_FIELDS if f.type is int} - {"v", "seq", "t_ns"}
_HEALTH_FLOATS = {f.name for f in _HEALTH_FIELDS if f.type is float}
_HEALTH_STRS = {f.name for f in _HEALTH_FIELDS if f.type is str} - {"cam"}


def _decode_health(m: Mapping[str, Any]) -> HealthEvent:
    kw: dict[str, Any] = {
        "cam": m["cam"],
        "seq": _int(m, "seq", 0, _UINT64_MAX),
        "t_ns": _int(m, "t_ns", -_INT64_MAX - 1, _INT64_MAX),
        "state": _str(m, "state", max_len=64),
        "v": m["v"],
    }
    for k in _HEALTH_INTS:
        if k in m:
            kw[k] = _check_int(m[k], k, -_INT64_MAX - 1, _UINT64_MAX)
    for k in _HEALTH_FLOATS:
        if k in m:
            kw[k] = _check_float(m[k], k)
    for k in _HEALTH_STRS - {"state"}:
        if k in m:
            kw[k] = _str(m, k)
    age = m.get("last_frame_age_s")
    kw["last_frame_age_s"] = None if age is None else _check_float(age, "last_frame_age_s")
    return HealthEvent(**kw)


def _scalar(v: Any, name: str) -> str | int | float | bool | None:
    if v is None or type(v) in (str, int, float, bool):
        return v  # type: ignore[no-any-return]
    raise DecodeError(name, f"expected a string, number, bool or nil, got {type(v).__name__}")


def _decode_incident(m: Mapping[str, Any], key: str) -> IncidentEvent:
    typ = _str(m, "type", max_len=d.MAX_TOPIC_BYTES)
    if typ != key:
        raise DecodeError("type", f"{typ[:64]!r} does not match the topic's type {key[:64]!r}")
    state = _str(m, "state", max_len=16)
    if state not in ("open", "update", "closed"):
        raise DecodeError("state", f"expected open, update or closed, got {state[:16]!r}")
    ids = _get(m, "track_ids", required=False) or []
    if type(ids) is not list:
        raise DecodeError("track_ids", "expected an array")
    if len(ids) > d.MAX_TRACKS:
        raise DecodeError("track_ids", f"more than {d.MAX_TRACKS} ids")
    details = _get(m, "details", required=False) or {}
    if type(details) is not dict:
        raise DecodeError("details", "expected a map")
    return IncidentEvent(
        type=typ,
        seq=_check_int(_get(m, "seq"), "seq", 0, _UINT64_MAX),
        id=_str(m, "id", max_len=128),
        cam=_str(m, "cam", max_len=d.MAX_CAMERA_BYTES),
        state=state,
        t_ns=_check_int(_get(m, "t_ns"), "t_ns", -_INT64_MAX - 1, _INT64_MAX),
        track_ids=tuple(_check_int(t, f"track_ids[{i}]", 0, _INT64_MAX) for i, t in enumerate(ids)),
        score=_check_float(m.get("score", 0.0), "score"),
        details={k: _scalar(v, f"details.{k}") for k, v in details.items()},
        v=m["v"],
    )


def _decode_stats(m: Mapping[str, Any]) -> StatsEvent:
    counts = _get(m, "counts")
    if type(counts) is not dict:
        raise DecodeError("counts", "expected a map")
    return StatsEvent(
        cam=m["cam"],
        seq=_check_int(_get(m, "seq"), "seq", 0, _UINT64_MAX),
        t0_ns=_check_int(_get(m, "t0_ns"), "t0_ns", -_INT64_MAX - 1, _INT64_MAX),
        t1_ns=_check_int(_get(m, "t1_ns"), "t1_ns", -_INT64_MAX - 1, _INT64_MAX),
        counts={k: _check_int(v, f"counts.{k}", 0, _UINT64_MAX) for k, v in counts.items()},
        v=m["v"],
    )


def _decode_config(m: Mapping[str, Any]) -> ConfigChangedEvent:
    cams = _get(m, "cams", required=False) or []
    if type(cams) is not list or any(type(c) is not str for c in cams):
        raise DecodeError("cams", "expected an array of strings")
    return ConfigChangedEvent(
        seq=_check_int(_get(m, "seq"), "seq", 0, _UINT64_MAX),
        t_ns=_check_int(_get(m, "t_ns"), "t_ns", -_INT64_MAX - 1, _INT64_MAX),
        cams=tuple(cams),
        reason=_str(m, "reason", required=False),
        v=m["v"],
    )


def decode(topic: bytes, payload: bytes) -> Event:
    """The event of one [topic, payload] message; DecodeError naming the field otherwise."""
    family, key = parse_topic(topic)
    if family == TRACKS:
        fast = _decode_tracks_fast(payload, key)  # type: ignore[arg-type]
        if fast is not None:
            return fast
    m = _header(unpack(payload), family, key)
    if family == TRACKS:
        return _decode_tracks(m)
    if family == HEALTH:
        return _decode_health(m)
    if family == INCIDENT:
        return _decode_incident(m, key)
    if family == STATS:
        return _decode_stats(m)
    return _decode_config(m)


def peek_seq(payload: bytes) -> int | None:
    """The "seq" of a payload that may not decode, for gap counting; None when unreadable."""
    try:
        m = unpack(payload)
    except DecodeError:
        return None
    s = m.get("seq") if isinstance(m, dict) else None
    return s if type(s) is int and 0 <= s <= _UINT64_MAX else None


# ---------------------------------------------------------------- encoding


def encode_tracks(
    cam: str,
    seq: int,
    *,
    frame: int,
    pts: float,
    t_ns: int,
    w: int,
    h: int,
    track_id: Sequence[int] | np.ndarray,
    class_id: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    xyxy: Sequence[Sequence[float]] | np.ndarray,
    ground_xy: Sequence[Sequence[float]] | np.ndarray | None = None,
    speed_kmh: Sequence[float] | np.ndarray | None = None,
) -> tuple[bytes, bytes]:
    """[topic, payload] of a tracks message, the same layout as the C++ publisher's (scores,
    boxes, ground positions and speeds as float32; ground_xy / speed_kmh None: NaN)."""
    ids = np.asarray(track_id, np.int64).reshape(-1)
    cls = np.asarray(class_id, np.int32).reshape(-1)
    sc = np.asarray(score, np.float32).reshape(-1)
    box = np.asarray(xyxy, np.float32).reshape(-1, 4)
    n = len(ids)
    gxy = (
        np.full((n, 2), np.nan, np.float32)
        if ground_xy is None
        else np.asarray(ground_xy, np.float32).reshape(-1, 2)
    )
    kmh = (
        np.full(n, np.nan, np.float32)
        if speed_kmh is None
        else np.asarray(speed_kmh, np.float32).reshape(-1)
    )
    if not n == len(cls) == len(sc) == len(box) == len(gxy) == len(kmh):
        raise ValueError(
            "track_id, class_id, score, xyxy, ground_xy and speed_kmh must have the same length"
        )
    packer = msgpack.Packer(use_bin_type=True, use_single_float=True)
    rows = [
        [int(i), int(c), float(s), *map(float, b), float(g[0]), float(g[1]), float(k)]
        for i, c, s, b, g, k in zip(ids.tolist(), cls.tolist(), sc, box, gxy, kmh, strict=True)
    ]
    body = {
        "v": d.SCHEMA_VERSION,
        "cam": cam,
        "seq": seq,
        "frame": frame,
        "pts": None,  # placeholder keeps the key order of the C++ publisher
        "t_ns": t_ns,
        "w": w,
        "h": h,
        "tracks": rows,
    }
    # pts is float64 while the rows' floats are float32: pack the map by hand.
    out = bytearray(packer.pack_map_header(len(body)))
    for k, v in body.items():
        out += packer.pack(k)
        out += pack(float(pts)) if k == "pts" else packer.pack(v)
    return topic_of(TRACKS, cam), bytes(out)


def encode(event: Event) -> tuple[bytes, bytes]:
    """[topic, payload] of any event (the Python services' publisher uses this)."""
    if isinstance(event, TracksEvent):
        return encode_tracks(
            event.cam,
            event.seq,
            frame=event.frame,
            pts=event.pts,
            t_ns=event.t_ns,
            w=event.w,
            h=event.h,
            track_id=event.track_id,
            class_id=event.class_id,
            score=event.score,
            xyxy=event.xyxy,
            ground_xy=event.ground_xy,
            speed_kmh=event.speed_kmh,
        )
    body: dict[str, Any] = {}
    for f in msgspec.structs.fields(event):
        v = getattr(event, f.name)
        body[f.name] = list(v) if isinstance(v, tuple) else v
    if isinstance(event, ConfigChangedEvent):
        return topic_of(CONFIG_CHANGED), pack(body)
    key = event.type if isinstance(event, IncidentEvent) else event.cam
    return topic_of(event.family, key), pack(body)


def with_seq(event: Event, seq: int) -> Event:
    """A copy of event with another sequence number."""
    return msgspec.structs.replace(event, seq=seq)
