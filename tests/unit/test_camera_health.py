"""Camera health (offline, frozen, blinded, moved) on real and rendered frames.

Snapshots are fed 2 s apart on the monitor's clock, as the evidence server would deliver them.
The live sources advance only 1 s between two snapshots (every 10th frame of the real clip,
every 25th of a rendered scene), so a live picture looks twice as still to the monitor as it
would be: the no-false-alarm tests are harder than real life, not easier. Every picture goes
through JPEG, as the evidence server's snapshots do.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

import av
import cv2
import numpy as np
import pytest

from smartcity import scenarios as S
from smartcity.bus.events import HealthEvent
from smartcity.incidents.rules.camera_health import (
    KEYS,
    RULE,
    CameraHealthConfigError,
    CameraHealthMonitor,
    CameraHealthSettings,
    Details,
    measure,
)
from smartcity.incidents.types import Finding
from tests.conftest import VTEST

NS = 1_000_000_000
SNAP_S = 2.0
T0 = 1_700_000_000 * NS
DEFAULTS = CameraHealthSettings()

# --------------------------------------------------------------------------- frames


def jpeg(img: np.ndarray, quality: int = 85) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR))


@cache
def vtest_frames() -> tuple[np.ndarray, ...]:
    """Every 10th frame of the real clip (1 s apart): 80 frames, 768x576."""
    out = []
    with av.open(str(VTEST)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i % 10 == 0:
                out.append(jpeg(fr.to_ndarray(format="bgr24")))
    return tuple(out)


@cache
def scene_frames(name: str, seconds: float = 30.0, step: int = 25) -> tuple[np.ndarray, ...]:
    """A library scenario cut to `seconds` (at most), 640x360, every `step`-th frame (1 s)."""
    seconds = min(seconds, S.load(name).seconds)
    prep = S.prepare(S.load(name), seconds=seconds, resolution="640x360")
    r = S.Renderer(prep)
    return tuple(jpeg(r.render(f)[0]) for f in range(0, r.frames, step))


def source_frames(source: str) -> tuple[np.ndarray, ...]:
    """Live snapshots of a source: the real clip, or a rendered scene (the 16 s shaky scene
    every 12th frame, to have as many snapshots as the others)."""
    if source == "vtest":
        return vtest_frames()
    if source == "speeding_shaky_urban":
        return scene_frames(source, step=12)
    return scene_frames(source)


def view(
    img: np.ndarray, dx: float = 0.0, dy: float = 0.0, rot_deg: float = 0.0, keep: float = 0.75
) -> np.ndarray:
    """What a camera sees of the picture `img` (its world): the centre `keep` of it, the view
    moved by (dx, dy) pixels and turned by rot_deg about its centre. A moved camera sees new
    parts of the world at its borders, not smeared or mirrored ones."""
    h, w = img.shape[:2]
    W, H = int(w * keep) // 2 * 2, int(h * keep) // 2 * 2
    M = cv2.getRotationMatrix2D((w / 2, h / 2), rot_deg, 1.0)
    M[:, 2] += np.array([dx - (w - W) / 2, dy - (h - H) / 2])
    return np.asarray(cv2.warpAffine(img, M, (W, H), borderMode=cv2.BORDER_REPLICATE))


def heavy_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of `sigma` pixels (done at 1/8 size: the same picture, much faster)."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 8)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def h264_roundtrip(frames: Iterable[np.ndarray], gop: int = 10, crf: int = 23) -> list[np.ndarray]:
    """Encodes the frames with libx264 (no B-frames, fixed GOP) and decodes them again."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": str(crf), "g": str(gop), "bf": "0", "preset": "veryfast"}
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf, "r") as c:
        return [fr.to_ndarray(format="bgr24") for fr in c.decode(video=0)]


# --------------------------------------------------------------------------- feeding


def health(state: str = "running", age: float | None = 0.04, **kw: object) -> HealthEvent:
    return HealthEvent(cam="cam1", seq=0, t_ns=0, state=state, last_frame_age_s=age, **kw)  # type: ignore[arg-type]


class Feed:
    """Drives a monitor the way the incidents service does: a health message and a snapshot
    every SNAP_S, on a clock of its own; records every Finding with its time."""

    def __init__(self, mon: CameraHealthMonitor | None = None, state: str = "running") -> None:
        self.mon = mon or CameraHealthMonitor("cam1")
        self.t = T0
        self.pts = 0.0
        self.state = state
        self.findings: list[tuple[float, Finding]] = []

    @property
    def elapsed_s(self) -> float:
        return (self.t - T0) / NS

    def snap(self, img: np.ndarray) -> list[Finding]:
        self.t += int(SNAP_S * NS)
        self.pts += SNAP_S
        got = self.mon.update_health(health(self.state), self.t)
        got += self.mon.update_frame(img, self.pts, self.t)
        self.findings += [(self.elapsed_s, f) for f in got]
        return got

    def run(self, frames: Iterable[np.ndarray]) -> list[Finding]:
        out: list[Finding] = []
        for img in frames:
            out += self.snap(img)
        return out

    def first(self, key: str, closed: bool = False) -> tuple[float, Finding]:
        for t, f in self.findings:
            if f.key == key and f.closed == closed:
                return t, f
        raise AssertionError(f"no {key} finding (closed={closed}) in {self.findings}")


def cycle(frames: tuple[np.ndarray, ...], n: int) -> Iterator[np.ndarray]:
    for i in range(n):
        yield frames[i % len(frames)]


def snaps(seconds: float) -> int:
    return int(seconds / SNAP_S) + 1


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_errors_name_camera_and_field() -> None:
    s = CameraHealthSettings.from_mapping("cam1", None)
    assert s == DEFAULTS
    s = CameraHealthSettings.from_mapping("cam1", {"frozen_s": 30, "moved_px": 20.5})
    assert s.frozen_s == 30.0 and s.moved_px == 20.5 and s.moved_limit_px(1920) == 20.5
    assert DEFAULTS.moved_limit_px(640) == pytest.approx(9.6)
    assert CameraHealthSettings.from_mapping("cam1", {"moved_px": None}).moved_px is None
    bad: list[tuple[dict[str, Any], str]] = [
        ({"frozen_s": 0}, "cameras.cam1.health.frozen_s: must be > 0"),
        ({"offline_s": -1}, "cameras.cam1.health.offline_s: must be > 0"),
        ({"moved_px": 0}, "cameras.cam1.health.moved_px: must be > 0 or null"),
        ({"moved_px": "far"}, "cameras.cam1.health.moved_px: must be a number or null"),
        ({"frozen_s": "long"}, "cameras.cam1.health.frozen_s: must be a number"),
        ({"frozen_s": True}, "cameras.cam1.health.frozen_s: must be a number"),
        ({"frozen_cells": 1.5}, "cameras.cam1.health.frozen_cells: must be a whole number"),
        ({"enabled": 1}, "cameras.cam1.health.enabled: must be true or false"),
        ({"blinded_edges": 2}, "cameras.cam1.health.blinded_edges: must be in [0, 1)"),
        ({"severity_moved": "urgent"}, "cameras.cam1.health.severity_moved: must be one of"),
        ({"frozen": 3}, "cameras.cam1.health.frozen: unknown setting"),
    ]
    for data, msg in bad:
        with pytest.raises(
            CameraHealthConfigError, match=msg.replace("[", r"\[").replace(")", r"\)")
        ):
            CameraHealthSettings.from_mapping("cam1", data)
    with pytest.raises(CameraHealthConfigError, match=r"^cameras\.cam7\.health: must be a mapping"):
        CameraHealthMonitor("cam7", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CameraHealthConfigError) as e:
        CameraHealthMonitor("cam7", CameraHealthSettings(moved_s=0))
    assert e.value.field == "cameras.cam7.health.moved_s"


def test_measure_reduces_any_size_to_fixed_thumbnails() -> None:
    for shape in [(1080, 1920, 3), (360, 640, 3), (576, 768, 3), (120, 160), (90, 1600, 4)]:
        m = measure(np.full(shape, 77, np.uint8))
        assert (m.h, m.w) == shape[:2]
        assert m.thumb.shape == (36, 64) and m.edges.shape == (90, 160)
        assert m.mean == pytest.approx(77, abs=0.5) and m.std < 0.5 and m.edge_frac == 0
    with pytest.raises(ValueError, match="expected an image"):
        measure(np.zeros((5,), np.uint8))


# --------------------------------------------------------------------------- offline


def test_offline_from_states_then_cleared_when_frames_flow() -> None:
    mon = CameraHealthMonitor("cam1")
    t = T0
    assert mon.update_health(health("connecting", None), t) == []
    assert mon.tick(t + 9 * NS) == []  # down, not yet for offline_s
    [f] = mon.tick(t + 10 * NS)
    assert (f.rule, f.cam, f.key, f.closed, f.severity) == (RULE, "cam1", "offline", False, "high")
    assert f.details["reason"] == "state" and f.details["state"] == "connecting"
    assert f.t_ns == t + 10 * NS
    assert (
        mon.update_health(health("backoff", None, last_error="connection refused"), t + 11 * NS)
        == []
    )
    assert mon.active == {"offline"}
    # frames flow again: cleared after clear_s of good health, not at once
    assert mon.update_health(health("running", 0.04), t + 12 * NS) == []
    assert mon.update_health(health("running", 0.04), t + 16 * NS) == []
    [c] = mon.update_health(health("running", 0.04), t + 17 * NS)
    assert c.key == "offline" and c.closed and c.details["lasted_s"] == 7.0
    assert mon.active == frozenset()


def test_offline_when_failed_with_its_error() -> None:
    mon = CameraHealthMonitor("cam1", {"offline_s": 5})
    mon.update_health(health("failed", None, last_error="host 'cam7' does not resolve"), T0)
    [f] = mon.tick(T0 + 5 * NS)
    assert f.details["state"] == "failed"
    assert f.details["last_error"] == "host 'cam7' does not resolve"


def test_offline_when_running_without_new_frames() -> None:
    mon = CameraHealthMonitor("cam1")
    assert mon.update_health(health("running", 3.0), T0) == []
    [f] = mon.update_health(health("running", 10.5), T0 + NS)
    assert f.details["reason"] == "frame_age" and f.details["last_frame_age_s"] == 10.5
    # running but never a frame: counts like a down state
    mon = CameraHealthMonitor("cam1")
    mon.update_health(health("running", None), T0)
    assert mon.tick(T0 + 9 * NS) == []
    [f] = mon.tick(T0 + 10 * NS)
    assert f.details["reason"] == "no_frames"


def test_offline_on_silence_with_cooldown() -> None:
    mon = CameraHealthMonitor("cam1")  # offline_s 10, clear_s 5, cooldown_s 30
    assert mon.tick(T0) == []
    [f] = mon.tick(T0 + 10 * NS)  # never a health message
    assert f.details == {"silent_s": 10.0, "reason": "silent"}
    mon.update_health(health(), T0 + 11 * NS)
    [c] = mon.update_health(health(), T0 + 16 * NS)
    assert c.closed
    # silent again at once: within the cool-down after the clear (t=16), no new raise ...
    for s in range(17, 46):
        assert mon.tick(T0 + s * NS) == [], s
    # ... until the cool-down is over, while the silence lasts
    [f] = mon.tick(T0 + 46 * NS)
    assert f.key == "offline" and f.details["reason"] == "silent" and f.details["silent_s"] == 30.0


def test_stopped_file_is_not_offline() -> None:
    mon = CameraHealthMonitor("cam1")
    for s in range(0, 60, 2):
        assert mon.update_health(health("stopped", float(s)), T0 + s * NS) == []


# --------------------------------------------------------------------------- no false alarms


@pytest.mark.parametrize(
    "source",
    ["vtest", "quiet_urban", "quiet_square_night", "speeding_shaky_urban"],
)
def test_no_false_alarms_on_live_pictures(source: str) -> None:
    feed = Feed()
    seen: list[Details] = []
    for img in source_frames(source):
        assert feed.snap(img) == []
        seen.append(dict(feed.mon.last))
    assert feed.elapsed_s >= DEFAULTS.frozen_s
    assert feed.mon.has_reference
    # margins: the view's displacement, the still time and the edges stay well inside
    limit = float(seen[-1]["moved_px"])  # type: ignore[arg-type]
    medians = [float(d["median_shift_px"]) for d in seen if "median_shift_px" in d]  # type: ignore[arg-type]
    assert len(medians) >= len(seen) - 1 and max(medians) < 0.75 * limit
    assert max(float(d.get("still_s") or 0) for d in seen) <= DEFAULTS.frozen_s / 4  # type: ignore[arg-type]
    assert min(float(d["edges"]) for d in seen) > 5 * DEFAULTS.blinded_edges  # type: ignore[arg-type]
    assert min(float(d["std"]) for d in seen) > 5 * DEFAULTS.blinded_std  # type: ignore[arg-type]


def test_dark_night_is_not_blinded() -> None:
    darker = tuple((f * 0.5).astype(np.uint8) for f in scene_frames("quiet_square_night"))
    feed = Feed()
    assert feed.run(darker) == []
    assert float(feed.mon.last["mean"]) < 20  # type: ignore[arg-type]


# --------------------------------------------------------------------------- frozen


def _frozen_case(live: tuple[np.ndarray, ...], still: list[np.ndarray]) -> Feed:
    feed = Feed()
    assert feed.run(live[:10]) == []
    t_freeze = feed.elapsed_s
    feed.run(still)
    t, f = feed.first("frozen")
    assert f.severity == "high" and f.details["frozen_diff"] is not None
    # The still period may have begun a little before the freeze (a quiet moment of the scene)
    assert t - t_freeze <= DEFAULTS.frozen_s + 2 * SNAP_S
    assert float(f.details["still_s"]) >= DEFAULTS.frozen_s  # type: ignore[arg-type]
    assert [x.key for _, x in feed.findings] == ["frozen"]  # nothing else
    # the picture lives again (seconds later in the scene): cleared after clear_s
    t_live = feed.elapsed_s
    feed.run(live[-10:])
    tc, c = feed.first("frozen", closed=True)
    assert DEFAULTS.clear_s <= tc - t_live <= DEFAULTS.clear_s + 2 * SNAP_S
    return feed


@pytest.mark.parametrize("source", ["vtest", "quiet_square_night"])
def test_frozen_repeated_frame(source: str) -> None:
    live = source_frames(source)
    _frozen_case(live, [live[9]] * snaps(DEFAULTS.frozen_s + 10))


@pytest.mark.parametrize("source", ["vtest", "quiet_square_night"])
def test_frozen_with_reencoding_noise(source: str) -> None:
    """A frozen source that still goes through encoders: each snapshot differs a little."""
    live = source_frames(source)
    n = snaps(DEFAULTS.frozen_s + 10)
    # the camera's encoder keeps coding the same picture (key frames every 5): decoded frames
    # differ by re-quantisation; then each snapshot is a JPEG of varying quality
    decoded = h264_roundtrip([live[9]] * (2 * n), gop=5)[::2]
    still = [jpeg(f, 70 + (7 * i) % 26) for i, f in enumerate(decoded)]
    diffs = [float(np.abs(still[i].astype(np.int16) - still[0]).mean()) for i in range(1, 6)]
    assert max(diffs) > 0.3  # not bit-identical: re-encoding noise is really there
    _frozen_case(live, still)


def test_frozen_only_while_running() -> None:
    """A stream in backoff hands out its last frame: that is offline, not a frozen picture."""
    live = vtest_frames()
    feed = Feed()
    feed.run(live[:5])
    feed.state = "backoff"
    feed.run([live[4]] * snaps(DEFAULTS.frozen_s + 10))
    assert {f.key for _, f in feed.findings} == {"offline"}


def test_same_pts_twice_is_not_frozen_evidence() -> None:
    """The same frame handed out again (no new frame decoded) says nothing about the picture."""
    live = vtest_frames()
    mon = CameraHealthMonitor("cam1")
    t = T0
    for img in live[:3]:
        t += 2 * NS
        mon.update_frame(img, 1.0 * t / NS, t)
    for _ in range(snaps(DEFAULTS.frozen_s + 10)):
        t += 2 * NS
        mon.update_health(health(), t)
        assert mon.update_frame(live[3], 123.0, t) == []


# --------------------------------------------------------------------------- blinded


def _blinders(live: tuple[np.ndarray, ...]) -> dict[str, Callable[[int], np.ndarray]]:
    h, w = live[0].shape[:2]
    rng = np.random.default_rng(5)
    grey = np.full((h, w, 3), 128, np.float32)
    sigma = w / 32.0
    return {
        "black": lambda i: np.zeros((h, w, 3), np.uint8),
        "white": lambda i: np.full((h, w, 3), 255, np.uint8),
        "grey_noise": lambda i: np.clip(grey + rng.normal(0, 12, grey.shape), 0, 255).astype(
            np.uint8
        ),
        "blur": lambda i: heavy_blur(live[i % len(live)], sigma),
    }


@pytest.mark.parametrize("kind", ["black", "white", "grey_noise", "blur"])
@pytest.mark.parametrize("source", ["vtest", "quiet_urban"])
def test_blinded(source: str, kind: str) -> None:
    live = source_frames(source)
    make = _blinders(live)[kind]
    feed = Feed()
    assert feed.run(live[:10]) == []
    t_cover = feed.elapsed_s
    feed.run(jpeg(make(10 + i)) for i in range(snaps(DEFAULTS.blinded_s + 10)))
    t, f = feed.first("blinded")
    assert DEFAULTS.blinded_s <= t - t_cover <= DEFAULTS.blinded_s + 2 * SNAP_S
    assert f.severity == "high"
    assert (
        float(f.details["std"]) < DEFAULTS.blinded_std  # type: ignore[arg-type]
        or float(f.details["edges"]) < DEFAULTS.blinded_edges  # type: ignore[arg-type]
    )
    assert [x.key for _, x in feed.findings] == ["blinded"]  # not moved, not frozen
    t_back = feed.elapsed_s
    feed.run(live[10:20])
    tc, _ = feed.first("blinded", closed=True)
    assert DEFAULTS.clear_s <= tc - t_back <= DEFAULTS.clear_s + 2 * SNAP_S


# --------------------------------------------------------------------------- mask

#: The top left of the picture, where a camera burns in its clock.
CLOCK_MASK = [[[0, 0], [0.55, 0], [0.55, 0.1], [0, 0.1]]]


def clock(img: np.ndarray, second: int) -> np.ndarray:
    """The snapshot of a camera that burns a running clock into its picture."""
    img = img.copy()
    text = f"2026-11-29 17:{second // 60 % 60:02d}:{second % 60:02d}"
    cv2.putText(img, text, (12, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return jpeg(img)


@pytest.mark.parametrize("masked", [False, True])
def test_a_burnt_in_clock_is_left_out_by_the_mask(masked: bool) -> None:
    """A camera with a running clock in its picture: when the rest of the picture freezes,
    and when the lens is covered (black but for the clock), the clock alone keeps both alive
    (the clock's cells change, its text has edges and contrast); with the clock masked, frozen
    and blinded are raised as for a camera without one. Live, the masked camera is quiet."""
    live = vtest_frames()
    mon = CameraHealthMonitor("cam1", {"mask": CLOCK_MASK} if masked else {})
    feed = Feed(mon)
    assert feed.run(clock(live[i], 2 * i) for i in range(len(live))) == []
    k = 2 * len(live)
    feed.run(clock(live[9], k + 2 * i) for i in range(snaps(DEFAULTS.frozen_s + 10)))
    assert [f.key for _, f in feed.findings if not f.closed] == (["frozen"] if masked else [])
    feed = Feed(CameraHealthMonitor("cam1", {"mask": CLOCK_MASK} if masked else {}))
    feed.run(clock(live[i], 2 * i) for i in range(10))
    black = np.zeros_like(live[0])
    feed.run(clock(black, 20 + 2 * i) for i in range(snaps(DEFAULTS.blinded_s + 10)))
    assert [f.key for _, f in feed.findings if not f.closed] == (["blinded"] if masked else [])


def test_mask_settings_are_checked() -> None:
    s = CameraHealthSettings.from_mapping("cam1", {"mask": CLOCK_MASK})
    assert s.mask == (((0.0, 0.0), (0.55, 0.0), (0.55, 0.1), (0.0, 0.1)),)
    mon = CameraHealthMonitor("cam1", s)
    assert mon.mask is not None and 0.9 < mon.mask.thumb.mean() < 0.97
    assert CameraHealthMonitor("cam1").mask is None
    bad: list[tuple[Any, str]] = [
        ("top", "cameras.cam1.health.mask: must be a list of polygons"),
        ([[[0, 0], [1, 0]]], r"cameras.cam1.health.mask\[0\]: must be a polygon of 3 or more"),
        ([[[0, 0], [1, 0], [1, 1.5]]], r"cameras.cam1.health.mask\[0\]\[2\]: must be \[x, y\]"),
        ([[[0, 0], [1, 0], [0, True]]], r"cameras.cam1.health.mask\[0\]\[2\]: must be \[x, y\]"),
        ([[[0, 0], [1, 0], [1, 1], [0, 1]]], "cameras.cam1.health.mask: leaves 0% of the picture"),
    ]
    for mask, msg in bad:
        with pytest.raises(CameraHealthConfigError, match=msg):
            CameraHealthSettings.from_mapping("cam1", {"mask": mask})


def test_reference_is_not_taken_from_a_blank_frame() -> None:
    live = vtest_frames()
    feed = Feed()
    feed.run([np.zeros_like(live[0])] * 3)
    assert not feed.mon.has_reference
    feed.run(live[:3])
    assert feed.mon.has_reference and feed.findings == []


# --------------------------------------------------------------------------- moved


@pytest.mark.parametrize(
    "move",
    [{"dx": 40.0}, {"dy": -40.0}, {"rot_deg": 3.0}, {"rot_deg": -3.0}],
    ids=["right40", "up40", "rot+3", "rot-3"],
)
@pytest.mark.parametrize("source", ["vtest", "quiet_urban", "speeding_shaky_urban"])
def test_moved(source: str, move: dict[str, float]) -> None:
    live = tuple(view(f) for f in source_frames(source))
    feed = Feed()
    assert feed.run(live[:5]) == []  # the reference is the first good snapshot
    t_move = feed.elapsed_s
    frames = cycle(source_frames(source)[5:], snaps(DEFAULTS.moved_s + 10))
    feed.run(view(f, **move) for f in frames)
    t, f = feed.first("moved")
    assert f.severity == "medium"
    # the median of 3 estimates turns at the second moved snapshot
    assert DEFAULTS.moved_s <= t - t_move <= DEFAULTS.moved_s + 3 * SNAP_S
    shift = float(f.details["shift_px"])  # type: ignore[arg-type]
    limit = DEFAULTS.moved_limit_px(live[0].shape[1])
    assert float(f.details["moved_px"]) == pytest.approx(limit, abs=0.05)  # type: ignore[arg-type]
    if "rot_deg" in move:
        # lines seen along their length hide part of a rotation: the estimate may run low
        assert abs(float(f.details["rot_deg"])) > 1.0  # type: ignore[arg-type]
        assert shift > limit
    else:
        assert 34 < shift < 52, f.details  # the shaky scene adds its shake
        want = (move.get("dx", 0.0), move.get("dy", 0.0))
        got = (float(f.details["dx_px"]), float(f.details["dy_px"]))  # type: ignore[arg-type]
        assert np.hypot(got[0] - want[0], got[1] - want[1]) < 8, f.details
    assert [x.key for _, x in feed.findings] == ["moved"]
    # put back: cleared
    t_back = feed.elapsed_s
    feed.run(live[5:15])
    tc, _ = feed.first("moved", closed=True)
    assert DEFAULTS.clear_s <= tc - t_back <= DEFAULTS.clear_s + 3 * SNAP_S


def test_full_hd_night_no_false_alarm_then_moved() -> None:
    """The night scene seen at 1920x1080, where the default limit is 28.8 px (1.5 %)."""
    world = [cv2.resize(f, (2560, 1440)) for f in source_frames("quiet_square_night")]
    night = tuple(view(f) for f in world)
    assert night[0].shape == (1080, 1920, 3)
    feed = Feed()
    assert feed.run(night) == []
    assert float(feed.mon.last["moved_px"]) == pytest.approx(28.8)  # type: ignore[arg-type]
    feed.run(view(f, rot_deg=3.0) for f in cycle(tuple(world), snaps(DEFAULTS.moved_s + 6)))
    _, f = feed.first("moved")
    assert float(f.details["shift_px"]) > 28.8  # type: ignore[arg-type]


def test_moved_to_another_view_in_the_same_light() -> None:
    feed = Feed(CameraHealthMonitor("cam1", reference=vtest_frames()[0]))
    feed.run(scene_frames("quiet_urban")[:20])  # same brightness, nothing lines up
    _, f = feed.first("moved")
    assert f.details["shift_px"] is None or float(f.details["shift_px"]) > 50  # type: ignore[arg-type]


def test_night_against_a_day_reference_is_no_judgement() -> None:
    feed = Feed(CameraHealthMonitor("cam1", reference=scene_frames("quiet_urban")[0]))
    feed.run(scene_frames("quiet_square_night"))
    assert feed.findings == []


def test_set_reference_recommissions() -> None:
    live = vtest_frames()
    moved = [view(f, dx=40) for f in live[:30]]
    feed = Feed()
    feed.run(view(f) for f in live[:3])
    feed.run(moved[:15])
    assert feed.mon.active == {"moved"}
    feed.mon.set_reference(moved[15])  # the installer re-calibrated the moved camera
    feed.run(moved[16:30])
    _, c = feed.first("moved", closed=True)
    assert c.closed and feed.mon.active == frozenset()


def test_disabled_says_nothing() -> None:
    mon = CameraHealthMonitor("cam1", {"enabled": False})
    assert mon.update_health(health("failed", None), T0) == []
    assert mon.tick(T0 + 100 * NS) == []
    black = np.zeros((360, 640, 3), np.uint8)
    assert all(mon.update_frame(black, i, T0 + i * NS) == [] for i in range(60))


def test_every_key_is_known() -> None:
    assert KEYS == ("offline", "frozen", "blinded", "moved")
