"""Camera health: offline, frozen picture, blinded (near-uniform frame), moved.

One `CameraHealthMonitor` per camera, fed from two sides:

- ``update_health(ev, now_ns)`` with each ``health.<cam>`` message, and ``tick(now_ns)`` now and
  then (every second or so) so that silence is noticed: **offline** when the stream has been
  connecting / in backoff / failed for ``offline_s``, when it is running but its last frame is
  older than ``frame_age_s``, or when no health message came for ``offline_s``.
- ``update_frame(bgr, pts, t_ns)`` with the engine's evidence snapshots (every few seconds, any
  size): **frozen** (the picture has not changed for ``frozen_s`` while the stream runs),
  **blinded** (no edges or no contrast for ``blinded_s``), **moved** (the view no longer lines
  up with the reference taken at commissioning for ``moved_s``).

Each snapshot is reduced once to a 320x180 grey image, a 160x90 edge map and a 64x36 grey
thumbnail (area averaging, which also averages sensor noise away); everything else works on
those, so a call costs a millisecond or two whatever the frame's size. A condition raises one
`Finding` (rule ``camera_health``, key ``offline`` / ``frozen`` / ``blinded`` / ``moved``) when
it has held for its time, and a Finding with ``closed=True`` once it has been absent for
``clear_s``; the same condition is not raised again within ``cooldown_s`` of its clearing.
docs/incidents.md ("Camera health checks") explains the measures and the thresholds.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from smartcity.bus.events import HealthEvent
from smartcity.incidents.types import SEVERITIES, Finding

RULE = "camera_health"
KEYS = ("offline", "frozen", "blinded", "moved")

F32 = npt.NDArray[np.float32]
Details = dict[str, str | int | float | bool | None]

#: Working sizes (width, height): the grey image the edges are measured on, the edge map the
#: shift is measured on, and the thumbnail the picture change and the contrast are measured on.
#: A frame larger than PRE is first sampled down to it (nearest pixel: cheap at any size).
PRE = (640, 360)
WORK = (320, 180)
SHIFT = (160, 90)
THUMB = (64, 36)
#: Stream states (docs/engine.md) in which no frames can come.
DOWN_STATES = frozenset({"connecting", "backoff", "failed"})
#: Default moved limit as a fraction of the frame width (9.6 px at 640, 28.8 px at 1920): the
#: shift is measured on a 160-wide map, so its noise in full-frame pixels grows with the width.
MOVED_FRACTION = 0.015
#: The view's displacement is the median of the estimates of this many last snapshots.
MOVED_MEDIAN_OF = 3
_NS = 1_000_000_000

# Tiles for the shift estimate: a 3x3 grid of overlapping 64x36 tiles of the 160x90 edge map.
_TILE = (64, 36)
_TILE_X0 = (0, 48, 96)
_TILE_Y0 = (0, 27, 54)


class CameraHealthConfigError(ValueError):
    """A bad camera-health setting; ``field`` is the dotted path (``cameras.cam1.health.x``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CameraHealthSettings:
    """Thresholds, times and cool-downs of one camera's health monitor (seconds, grey levels,
    full-frame pixels). docs/incidents.md ("Camera health checks") gives the reasons for the
    defaults."""

    enabled: bool = True
    # offline
    offline_s: float = 10.0  # down state or no health message for this long
    frame_age_s: float = 10.0  # running, but the last frame is older than this
    # frozen
    frozen_s: float = 60.0  # still picture for this long (>> the longest key-frame interval)
    frozen_diff: float = 0.6  # mean |thumbnail - thumbnail at the start of the still period|
    frozen_cell_diff: float = 6.0  # thumbnail cells that changed by more than this ...
    frozen_cells: int = 0  # ... in a number above this mean the picture is alive
    # blinded
    blinded_s: float = 10.0
    blinded_std: float = 3.0  # thumbnail standard deviation, grey levels
    blinded_edges: float = 0.008  # fraction of the 320x180 image with a gradient > edge_level
    edge_level: float = 6.0  # grey levels per pixel of the 320x180 image
    # moved
    moved_s: float = 20.0
    # largest corner displacement, full-frame pixels; None: MOVED_FRACTION of the frame width
    moved_px: float | None = None
    moved_min_response: float = 0.2  # phase-correlation peak a tile needs to count
    moved_min_tiles: int = 5  # a trusted fit has this many tiles of 9 ...
    moved_sure_response: float = 0.4  # ... and this median peak
    moved_light_tol: float = 40.0  # a view that matches nothing is "moved" only in like light
    # frozen, blinded, moved: polygons of the picture left out (a burnt-in clock, a screen, a
    # flag), each [[x, y], ...] in fractions of the frame's width and height (0 to 1)
    mask: tuple[tuple[tuple[float, float], ...], ...] = ()
    # all
    clear_s: float = 5.0  # a raised condition clears after being absent this long
    cooldown_s: float = 30.0  # no new raise of the same condition within this after a clear
    severity_offline: str = "high"
    severity_frozen: str = "high"
    severity_blinded: str = "high"
    severity_moved: str = "medium"

    @classmethod
    def from_mapping(cls, cam: str, data: Mapping[str, Any] | None) -> CameraHealthSettings:
        """Settings from the ``cameras.<cam>.health`` mapping (None: defaults), validated."""
        path = f"cameras.{cam}.health"
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise CameraHealthConfigError(path, f"must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        defaults = cls()
        kw: dict[str, Any] = {}
        for k, v in data.items():
            fp = f"{path}.{k}"
            if k not in known:
                raise CameraHealthConfigError(
                    fp, f"unknown setting (allowed: {', '.join(sorted(known))})"
                )
            want = getattr(defaults, k)
            if k == "mask":
                v = _parse_mask(fp, v)
            elif isinstance(want, bool):
                if not isinstance(v, bool):
                    raise CameraHealthConfigError(fp, f"must be true or false, got {v!r}")
            elif isinstance(want, str):
                if not isinstance(v, str):
                    raise CameraHealthConfigError(fp, f"must be a string, got {v!r}")
            elif want is None:  # an optional number
                if v is not None and (
                    isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                ):
                    raise CameraHealthConfigError(fp, f"must be a number or null, got {v!r}")
                v = None if v is None else float(v)
            elif isinstance(want, int):
                if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
                    raise CameraHealthConfigError(fp, f"must be a whole number, got {v!r}")
                v = int(v)
            else:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise CameraHealthConfigError(fp, f"must be a number, got {v!r}")
                v = float(v)
            kw[k] = v
        out = cls(**kw)
        out.validate(path)
        return out

    def validate(self, path: str = "health") -> None:
        """Raises CameraHealthConfigError naming ``path.field`` for a value out of range."""

        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise CameraHealthConfigError(
                    f"{path}.{name}", f"{msg}, got {getattr(self, name)!r}"
                )

        for name in ("offline_s", "frame_age_s", "frozen_s", "blinded_s", "moved_s"):
            need(getattr(self, name) > 0, name, "must be > 0")
        need(self.moved_px is None or self.moved_px > 0, "moved_px", "must be > 0 or null")
        for name in ("frozen_diff", "frozen_cell_diff", "blinded_std", "edge_level"):
            need(getattr(self, name) > 0, name, "must be > 0")
        for name in ("clear_s", "cooldown_s", "moved_light_tol"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        need(self.frozen_cells >= 0, "frozen_cells", "must be >= 0")
        need(0 <= self.blinded_edges < 1, "blinded_edges", "must be in [0, 1)")
        need(0 < self.moved_min_response < 1, "moved_min_response", "must be in (0, 1)")
        need(0 < self.moved_sure_response < 1, "moved_sure_response", "must be in (0, 1)")
        need(3 <= self.moved_min_tiles <= 9, "moved_min_tiles", "must be in [3, 9]")
        for key in KEYS:
            name = f"severity_{key}"
            need(getattr(self, name) in SEVERITIES, name, f"must be one of {', '.join(SEVERITIES)}")
        if self.mask:
            _parse_mask(f"{path}.mask", self.mask)
            m = make_mask(self.mask)
            if m is not None and m.thumb.mean() < MASK_KEEP_MIN:
                raise CameraHealthConfigError(
                    f"{path}.mask",
                    f"leaves {m.thumb.mean():.0%} of the picture to judge; at least "
                    f"{MASK_KEEP_MIN:.0%} must stay",
                )

    def severity(self, key: str) -> str:
        return str(getattr(self, f"severity_{key}"))

    def moved_limit_px(self, width: int) -> float:
        """The corner displacement above which a view of this width is off its reference."""
        return self.moved_px if self.moved_px is not None else MOVED_FRACTION * width


# --------------------------------------------------------------------------- mask

#: A mask must leave at least this share of the thumbnail's cells to judge.
MASK_KEEP_MIN = 0.25
_MASK_RASTER = (1280, 720)  # the polygons are drawn this size, then area-averaged


def _parse_mask(path: str, v: Any) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The ``mask`` setting: a list of polygons of 3 or more [x, y] points in [0, 1]."""
    if not isinstance(v, list | tuple):
        raise CameraHealthConfigError(path, f"must be a list of polygons, got {v!r}")
    out = []
    for i, poly in enumerate(v):
        if not isinstance(poly, list | tuple) or len(poly) < 3:
            raise CameraHealthConfigError(
                f"{path}[{i}]", f"must be a polygon of 3 or more [x, y] points, got {poly!r}"
            )
        pts = []
        for j, pt in enumerate(poly):
            ok = isinstance(pt, list | tuple) and len(pt) == 2
            ok = ok and all(
                not isinstance(c, bool) and isinstance(c, int | float) and 0 <= c <= 1 for c in pt
            )
            if not ok:
                raise CameraHealthConfigError(
                    f"{path}[{i}][{j}]",
                    f"must be [x, y], fractions of the frame's width and height (0 to 1), "
                    f"got {pt!r}",
                )
            pts.append((float(pt[0]), float(pt[1])))
        out.append(tuple(pts))
    return tuple(out)


@dataclass(frozen=True)
class Mask:
    """The part of the picture the frame checks judge, at each working size."""

    work: npt.NDArray[np.bool_]  # (180, 320): pixels mostly outside the mask
    shift: F32  # (90, 160): 1 where no part of the pixel is masked, else 0
    thumb: npt.NDArray[np.bool_]  # (36, 64): cells mostly outside the mask


@functools.cache
def make_mask(polygons: tuple[tuple[tuple[float, float], ...], ...]) -> Mask | None:
    """The polygons (fractions of the frame) rasterised at the working sizes; None for none.
    Cached: the settings' check and each monitor of the same mask share one raster."""
    if not polygons:
        return None
    w, h = _MASK_RASTER
    img = np.zeros((h, w), np.uint8)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float64) * [w, h]).astype(np.int32)
        cv2.fillPoly(img, [pts], 255)
    cover = img.astype(np.float32) / 255.0

    def at(size: tuple[int, int]) -> F32:
        return np.asarray(cv2.resize(cover, size, interpolation=cv2.INTER_AREA), np.float32)

    m = Mask(
        work=at(WORK) < 0.5,
        shift=(at(SHIFT) < 1e-6).astype(np.float32),
        thumb=at(THUMB) < 0.5,
    )
    for a in (m.work, m.shift, m.thumb):
        a.setflags(write=False)  # shared by every monitor of the mask
    return m


# --------------------------------------------------------------------------- measures


@dataclass(frozen=True)
class FrameMeasures:
    """What one snapshot is reduced to (the rest of the frame is not kept)."""

    w: int  # full frame size, pixels
    h: int
    thumb: F32  # (36, 64) grey, area-averaged
    edges: F32  # (90, 160) gradient magnitude of the smoothed grey image, for the shift
    mean: float  # thumbnail mean, grey levels
    std: float  # thumbnail standard deviation
    edge_frac: float  # fraction of the 320x180 image whose gradient exceeds edge_level


def measure(bgr: np.ndarray, edge_level: float = 6.0, mask: Mask | None = None) -> FrameMeasures:
    """Reduces a BGR (or grey) uint8 frame of any size to the monitor's measures; with a
    ``mask``, the contrast, the edges and the edge map leave its polygons out."""
    img = np.asarray(bgr)
    if img.ndim not in (2, 3) or img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"expected an image (H, W[, 3]), got shape {img.shape}")
    h, w = int(img.shape[0]), int(img.shape[1])
    if w > PRE[0] or h > PRE[1]:
        img = cv2.resize(img, PRE, interpolation=cv2.INTER_NEAREST)
    small = cv2.resize(img, WORK, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(
            small, cv2.COLOR_BGR2GRAY if small.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        )
    grey = np.asarray(small, np.float32)
    thumb = np.asarray(cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA), np.float32)
    judged = thumb if mask is None else thumb[mask.thumb]
    smooth = np.asarray(cv2.GaussianBlur(grey, (5, 5), 1.0), np.float32)
    mag = _gradient(smooth)  # grey levels per pixel of the 320-wide image
    if mask is not None:
        mag = mag[mask.work]
    edge_frac = float(np.count_nonzero(mag > edge_level)) / max(mag.size, 1)
    edges = _gradient(
        np.asarray(cv2.resize(smooth, SHIFT, interpolation=cv2.INTER_AREA), np.float32)
    )
    if mask is not None:
        edges = edges * mask.shift
    return FrameMeasures(
        w=w, h=h, thumb=thumb, edges=edges, mean=float(judged.mean()), std=float(judged.std()),
        edge_frac=edge_frac,
    )  # fmt: skip


def _gradient(img: F32) -> F32:
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return np.asarray(cv2.magnitude(gx, gy), np.float32)


@dataclass(frozen=True)
class Shift:
    """How the current view maps onto the reference: a similarity fitted to tile shifts."""

    ok: bool  # enough tiles matched for a fit
    tiles: int  # tiles that matched (of 9)
    response: float  # median phase-correlation peak of the matched tiles
    dx: float = 0.0  # translation of the centre, full-frame pixels
    dy: float = 0.0
    rot_deg: float = 0.0
    scale: float = 1.0
    corner_px: float = 0.0  # largest displacement of the frame's four corners, full-frame px


_HANN: dict[tuple[int, int], F32] = {}


def _hann(size: tuple[int, int]) -> F32:
    win = _HANN.get(size)
    if win is None:
        win = _HANN[size] = np.asarray(cv2.createHanningWindow(size, cv2.CV_32F), np.float32)
    return win


def estimate_shift(
    ref: F32,
    cur: F32,
    w: int,
    h: int,
    min_response: float,
    sure_response: float = 0.4,
    small_px: float = 0.0,
) -> Shift:
    """Fits translation, rotation and scale between two 160x90 edge maps from the phase
    correlation of 9 tiles; displacements in pixels of a w x h frame.

    Tiles are compared in place, and again around the shift of the whole maps' correlation
    when that is not zero (a shift of a good part of a tile is found that way); the fit with
    the stronger median peak is kept. A sure in-place fit (5 tiles or more, median peak at
    least ``sure_response``) that moves no corner more than ``small_px`` is kept at once: the
    usual case of a camera that did not move costs 9 small correlations."""
    first = _tile_fit(ref, cur, w, h, min_response, 0, 0)
    if _rank(first) >= (True, True, sure_response) and first.corner_px <= small_px:
        return first
    # (cv2.phaseCorrelate windows its inputs in place: give it copies)
    (gdx, gdy), _ = cv2.phaseCorrelate(ref.copy(), cur.copy(), _hann(SHIFT))
    if not (math.isfinite(gdx) and math.isfinite(gdy)):
        return first
    ox, oy = int(round(gdx)), int(round(gdy))
    if ox == 0 and oy == 0:
        return first
    second = _tile_fit(ref, cur, w, h, min_response, ox, oy)
    if _rank(second) > _rank(first):
        return second
    return first


def _rank(s: Shift) -> tuple[bool, bool, float]:
    return (s.ok, s.tiles >= 5, s.response)


def _tile_fit(ref: F32, cur: F32, w: int, h: int, min_response: float, ox: int, oy: int) -> Shift:
    sx, sy = w / SHIFT[0], h / SHIFT[1]
    win = _hann(_TILE)
    pts, ds, rs = [], [], []
    tw, th = _TILE
    for y0 in _TILE_Y0:
        for x0 in _TILE_X0:
            cx0 = min(max(x0 + ox, 0), SHIFT[0] - tw)
            cy0 = min(max(y0 + oy, 0), SHIFT[1] - th)
            ra = ref[y0 : y0 + th, x0 : x0 + tw].copy()  # copies: see estimate_shift
            ca = cur[cy0 : cy0 + th, cx0 : cx0 + tw].copy()
            (dx, dy), resp = cv2.phaseCorrelate(ra, ca, win)
            if resp >= min_response and math.isfinite(dx) and math.isfinite(dy):
                dx, dy = dx + cx0 - x0, dy + cy0 - y0
                cx, cy = x0 + tw / 2 - SHIFT[0] / 2, y0 + th / 2 - SHIFT[1] / 2
                pts.append((cx * sx, cy * sy))
                ds.append((dx * sx, dy * sy))
                rs.append(resp)
    if len(pts) < 3:
        return Shift(ok=False, tiles=len(pts), response=float(np.median(rs)) if rs else 0.0)
    P, D = np.asarray(pts, np.float64), np.asarray(ds, np.float64)
    keep = np.ones(len(P), bool)
    sol = np.zeros(4)
    for _ in range(2):  # fit, drop tiles that disagree (a passing vehicle), fit again
        sol = _fit_similarity(P[keep], D[keep])
        res = np.hypot(*(D - _apply(sol, P)).T)
        tol = max(3.0 * float(np.median(res[keep])), 2.0 * max(sx, sy))
        new = res <= tol
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    tx, ty, a, b = sol
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    corner = float(np.hypot(*_apply(sol, corners).T).max())
    return Shift(
        ok=True, tiles=int(keep.sum()), response=float(np.median(np.asarray(rs)[keep])),
        dx=float(tx), dy=float(ty), rot_deg=math.degrees(math.atan2(b, 1.0 + a)),
        scale=math.hypot(1.0 + a, b), corner_px=corner,
    )  # fmt: skip


def _fit_similarity(P: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Least squares d = t + [[a, -b], [b, a]] p for (tx, ty, a, b)."""
    n = len(P)
    A = np.zeros((2 * n, 4))
    A[0::2, 0], A[0::2, 2], A[0::2, 3] = 1.0, P[:, 0], -P[:, 1]
    A[1::2, 1], A[1::2, 2], A[1::2, 3] = 1.0, P[:, 1], P[:, 0]
    sol, *_ = np.linalg.lstsq(A, D.reshape(-1), rcond=None)
    return np.asarray(sol)


def _apply(sol: np.ndarray, P: np.ndarray) -> np.ndarray:
    tx, ty, a, b = sol
    return np.column_stack([tx + a * P[:, 0] - b * P[:, 1], ty + b * P[:, 0] + a * P[:, 1]])


# --------------------------------------------------------------------------- conditions


class _Condition:
    """Raise after the condition held ``hold_ns``; clear after it was absent ``clear_ns``;
    no new raise within ``cooldown_ns`` of a clear."""

    def __init__(self, hold_s: float, clear_s: float, cooldown_s: float) -> None:
        self.hold_ns = int(hold_s * _NS)
        self.clear_ns = int(clear_s * _NS)
        self.cooldown_ns = int(cooldown_s * _NS)
        self.since: int | None = None  # present continuously since
        self.absent_since: int | None = None
        self.raised = False
        self.raised_at: int | None = None
        self.cleared_at: int | None = None

    def observe(self, present: bool, now: int, since: int | None = None) -> str | None:
        """'raise', 'clear' or None."""
        if present:
            self.absent_since = None
            if self.since is None:
                self.since = now if since is None else min(since, now)
            if (
                not self.raised
                and now - self.since >= self.hold_ns
                and (self.cleared_at is None or now - self.cleared_at >= self.cooldown_ns)
            ):
                self.raised, self.raised_at = True, now
                return "raise"
            return None
        self.since = None
        if not self.raised:
            return None
        if self.absent_since is None:
            self.absent_since = now
        if now - self.absent_since >= self.clear_ns:
            self.raised, self.cleared_at, self.absent_since = False, now, None
            return "clear"
        return None

    def reset(self) -> None:
        """Forget a pending (not raised) condition."""
        self.since = None


# --------------------------------------------------------------------------- monitor


class CameraHealthMonitor:
    """Offline, frozen, blinded and moved for one camera; every method returns the Findings
    that the call raised or cleared (usually none)."""

    def __init__(
        self,
        cam: str,
        settings: CameraHealthSettings | Mapping[str, Any] | None = None,
        reference: np.ndarray | None = None,
    ) -> None:
        if isinstance(settings, CameraHealthSettings):
            settings.validate(f"cameras.{cam}.health")
        else:
            settings = CameraHealthSettings.from_mapping(cam, settings)
        self.cam = cam
        self.s = s = settings
        self.mask = make_mask(s.mask)
        self.conditions = {
            "offline": _Condition(0.0, s.clear_s, s.cooldown_s),  # holds are in the measure
            "frozen": _Condition(s.frozen_s, s.clear_s, s.cooldown_s),
            "blinded": _Condition(s.blinded_s, s.clear_s, s.cooldown_s),
            "moved": _Condition(s.moved_s, s.clear_s, s.cooldown_s),
        }
        self._started: int | None = None  # first call, for silence before any health message
        self._health_at: int | None = None  # when the last health message arrived
        self._health: HealthEvent | None = None
        self._down_since: int | None = None  # state in DOWN_STATES (or running, no frame yet)
        self._pts = 0.0  # last snapshot's pts
        self._prev_pts: float | None = None
        self._anchor: FrameMeasures | None = None  # first snapshot of the still period
        self._anchor_t: int | None = None
        self._ref: FrameMeasures | None = None
        self._shifts: deque[float] = deque(maxlen=MOVED_MEDIAN_OF)  # inf: nothing lines up
        self.last: Details = {}  # the last measured values, for /metrics and the admin page
        if reference is not None:
            self.set_reference(reference)

    # ---------------------------------------------------------------- inputs

    @property
    def active(self) -> frozenset[str]:
        """The conditions raised now."""
        return frozenset(k for k, c in self.conditions.items() if c.raised)

    @property
    def has_reference(self) -> bool:
        return self._ref is not None

    def set_reference(self, bgr: np.ndarray) -> None:
        """The view as commissioned (calibrated): later snapshots are compared with it."""
        self._ref = measure(bgr, self.s.edge_level, self.mask)
        self._shifts.clear()
        self.conditions["moved"].reset()

    def update_health(self, ev: HealthEvent, now_ns: int) -> list[Finding]:
        """A health.<cam> message received at now_ns."""
        if not self.s.enabled:
            return []
        if self._started is None:
            self._started = now_ns
        self._health, self._health_at = ev, now_ns
        no_frame = ev.state == "running" and ev.last_frame_age_s is None
        if ev.state in DOWN_STATES or no_frame:
            if self._down_since is None:
                self._down_since = now_ns
        else:
            self._down_since = None
        return self._offline(now_ns)

    def tick(self, now_ns: int) -> list[Finding]:
        """Call every second or so: notices silence and down states that lasted."""
        if not self.s.enabled:
            return []
        if self._started is None:
            self._started = now_ns
        return self._offline(now_ns)

    def update_frame(self, bgr: np.ndarray, pts: float, t_ns: int) -> list[Finding]:
        """One snapshot of the camera (BGR uint8, any size), its pts (s) and capture time (ns)."""
        if not self.s.enabled:
            return []
        if self._started is None:
            self._started = t_ns
        s = self.s
        m = measure(bgr, s.edge_level, self.mask)
        new_frame = self._prev_pts is None or pts != self._prev_pts
        self._prev_pts, self._pts = pts, pts
        out: list[Finding] = []
        d: Details = {"mean": round(m.mean, 2), "std": round(m.std, 2)}
        d["edges"] = round(m.edge_frac, 4)
        streaming = not self.conditions["offline"].raised and (
            self._health is None or self._health.state == "running"
        )
        if not streaming:
            # Stale snapshots say nothing about the picture: hold every frame condition.
            self._anchor, self._anchor_t = None, None
            self._shifts.clear()
            for k in ("frozen", "blinded", "moved"):
                self.conditions[k].reset()
            self.last = d
            return out

        blind = m.std < s.blinded_std or m.edge_frac < s.blinded_edges
        out += self._emit("blinded", self.conditions["blinded"].observe(blind, t_ns), pts, t_ns, d)

        if new_frame:
            out += self._frozen(m, blind, pts, t_ns, d)

        if not blind:
            if self._ref is None:
                self._ref = m  # the first good snapshot is the reference
            out += self._moved(m, pts, t_ns, d)
        self.last = d
        return out

    # ---------------------------------------------------------------- conditions

    def _frozen(
        self, m: FrameMeasures, blind: bool, pts: float, t_ns: int, d: Details
    ) -> list[Finding]:
        s = self.s
        a = self._anchor
        if blind:  # a blank picture is "blinded", whether it changes or not
            self._anchor, self._anchor_t = None, None
            return self._emit(
                "frozen", self.conditions["frozen"].observe(False, t_ns), pts, t_ns, d
            )
        if a is None or self._anchor_t is None:
            self._anchor, self._anchor_t = m, t_ns
            return []
        diff = np.abs(m.thumb - a.thumb)
        if self.mask is not None:
            diff = diff[self.mask.thumb]
        mad = float(diff.mean())
        cells = int(np.count_nonzero(diff > s.frozen_cell_diff))
        still = mad < s.frozen_diff and cells <= s.frozen_cells
        d["frozen_diff"] = round(mad, 3)
        d["changed_cells"] = cells
        cond = self.conditions["frozen"]
        if still:
            d["still_s"] = round((t_ns - self._anchor_t) / _NS, 1)
            ev = cond.observe(True, t_ns, since=self._anchor_t)
        else:
            if not cond.raised:  # while raised, the frozen picture stays the one compared with
                self._anchor, self._anchor_t = m, t_ns
            ev = cond.observe(False, t_ns)
            if ev == "clear":
                self._anchor, self._anchor_t = m, t_ns
        return self._emit("frozen", ev, pts, t_ns, d)

    def _moved(self, m: FrameMeasures, pts: float, t_ns: int, d: Details) -> list[Finding]:
        s = self.s
        ref = self._ref
        assert ref is not None
        limit = s.moved_limit_px(m.w)
        d["moved_px"] = round(limit, 1)
        sh = estimate_shift(
            ref.edges, m.edges, m.w, m.h, s.moved_min_response, s.moved_sure_response,
            small_px=limit / 2,
        )  # fmt: skip
        d["match_tiles"] = sh.tiles
        d["match_response"] = round(sh.response, 3)
        if sh.ok and sh.tiles >= s.moved_min_tiles and sh.response >= s.moved_sure_response:
            d.update(
                shift_px=round(sh.corner_px, 1), dx_px=round(sh.dx, 1), dy_px=round(sh.dy, 1),
                rot_deg=round(sh.rot_deg, 2), scale=round(sh.scale, 3),
            )  # fmt: skip
            self._shifts.append(sh.corner_px)
        elif abs(m.mean - ref.mean) <= s.moved_light_tol:
            d["shift_px"] = None  # nothing lines up, in light like the reference's
            self._shifts.append(math.inf)
        else:
            return []  # weak match in other light (night against a day reference): no judgement
        # One estimate can be off (headlights sweeping a tile, a gust of wind): the median of
        # the last few decides.
        median = float(np.median(np.asarray(self._shifts)))
        d["median_shift_px"] = round(median, 1) if math.isfinite(median) else None
        present = median > limit
        ev = self.conditions["moved"].observe(present, t_ns)
        return self._emit("moved", ev, pts, t_ns, d)

    def _offline(self, now: int) -> list[Finding]:
        s = self.s
        ev = self._health
        d: Details = {}
        reason: str | None = None
        if self._health_at is None:
            assert self._started is not None
            silent = (now - self._started) / _NS
            if silent >= s.offline_s:
                reason = "silent"
                d["silent_s"] = round(silent, 1)
        else:
            assert ev is not None
            silent = (now - self._health_at) / _NS
            d.update(state=ev.state, last_error=ev.last_error or None)
            d["last_frame_age_s"] = ev.last_frame_age_s
            if self._down_since is not None and now - self._down_since >= s.offline_s * _NS:
                reason = "state" if ev.state in DOWN_STATES else "no_frames"
                d["down_s"] = round((now - self._down_since) / _NS, 1)
            elif silent >= s.offline_s:
                reason = "silent"
                d["silent_s"] = round(silent, 1)
            elif (
                ev.state == "running"
                and ev.last_frame_age_s is not None
                and ev.last_frame_age_s > s.frame_age_s
            ):
                reason = "frame_age"
        if reason is not None:
            d["reason"] = reason
        cond = self.conditions["offline"]
        return self._emit("offline", cond.observe(reason is not None, now), self._pts, now, d)

    def _emit(self, key: str, what: str | None, pts: float, t_ns: int, d: Details) -> list[Finding]:
        if what is None:
            return []
        cond = self.conditions[key]
        details = dict(d)
        if what == "clear" and cond.raised_at is not None:
            details["lasted_s"] = round((t_ns - cond.raised_at) / _NS, 1)
        return [
            Finding(
                rule=RULE, cam=self.cam, key=key, pts=pts, t_ns=t_ns,
                severity=self.s.severity(key), closed=what == "clear", details=details,
            )
        ]  # fmt: skip
