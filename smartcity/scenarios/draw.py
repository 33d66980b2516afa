"""Vectorized drawing: the static background once per scene, then objects per frame.

Everything is cv2.fillPoly / fillConvexPoly on numpy images with 4 bits of sub-pixel
precision; geometry is projected with one matrix product per object. Objects are drawn far to
near (painter's order), each as a few shaded boxes (only the faces that look at the camera)
plus decals (windows, lights), people as upright prisms with a head.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from smartcity.scenarios.camera import Camera, FloatArray, clip_near
from smartcity.scenarios.motion import Body, rng_for
from smartcity.scenarios.world import SKY, Scene

SHIFT = 4
ONE = 1 << SHIFT
GLASS = (70, 58, 52)
TYRE = (28, 28, 30)
SUN = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])  # towards the sun
NIGHT_GAIN = 0.28
LOD_PX = 14.0  # objects shorter than this on screen are drawn without decals or shadow

# box corners: index = 4*ix + 2*iy + iz (x forward, y left, z up)
_CORNERS = np.array([[ix, iy, iz] for ix in (0, 1) for iy in (0, 1) for iz in (0, 1)], float)
# faces (front, back, left, right, top) as corner indices, and their local normals
_FACES = np.array(
    [[4, 6, 7, 5], [0, 1, 3, 2], [2, 3, 7, 6], [0, 4, 5, 1], [1, 5, 7, 3]], dtype=np.int64
)
_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
_RING = np.array(
    [[math.cos(a), math.sin(a)] for a in np.linspace(0, 2 * math.pi, 9)[:-1]], dtype=np.float64
)


def to_fixed(uv: np.ndarray) -> np.ndarray:
    return np.round(np.clip(uv, -1e6, 1e6) * ONE).astype(np.int32)


# --------------------------------------------------------------------------- background


def fill_world_poly(
    img: np.ndarray, cam: Camera, pts: FloatArray, colour: tuple[float, ...], near: float = 1.0
) -> None:
    camp = clip_near(cam.to_camera(pts), near)
    if len(camp) < 3:
        return
    uv = cam.cam_to_pixels(camp)
    cv2.fillPoly(img, [to_fixed(uv)], colour, cv2.LINE_AA, SHIFT)


def _box_corners(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> FloatArray:
    lo = np.array([x0, y0, z0])
    hi = np.array([x1, y1, z1])
    return np.asarray(lo + _CORNERS * (hi - lo))


def _shade(colour: tuple[int, ...], normal: FloatArray, gain: float = 1.0) -> tuple[int, ...]:
    k = (0.55 + 0.5 * max(0.0, float(normal @ SUN))) * gain
    return tuple(int(min(255, c * k)) for c in colour)


def draw_static_box(
    img: np.ndarray, cam: Camera, corners: FloatArray, colour: tuple[int, ...]
) -> None:
    for face, normal in zip(_FACES, _NORMALS, strict=True):
        q = corners[face]
        if float(normal @ (cam.C - q.mean(axis=0))) <= 0:
            continue
        fill_world_poly(img, cam, q, _shade(colour, normal), near=0.3)


def render_background(scene: Scene, cam: Camera, night: bool, rain: float, seed: int) -> np.ndarray:
    """The static part of every frame: sky, ground, markings, static boxes, haze, grain."""
    h, w = cam.height, cam.width
    img = np.empty((h, w, 3), np.uint8)
    img[:] = SKY
    hv = cam.horizon_v()
    rows = np.arange(h, dtype=np.float64)
    # sky: lighter towards the horizon
    t = np.clip((hv - rows) / max(h * 0.6, 1), 0, 1)[:, None]
    sky = np.array(SKY, float) * (1 - 0.25 * t) + np.array([255, 230, 190]) * 0.0
    img[:] = np.clip(sky[:, None, :], 0, 255).astype(np.uint8)
    for poly in scene.ground:
        pts = np.column_stack([poly.pts, np.full(len(poly.pts), poly.z)])
        fill_world_poly(img, cam, pts, poly.colour)
    boxes = sorted(
        scene.boxes,
        key=lambda b: -float(np.hypot((b.x0 + b.x1) / 2 - cam.x_m, (b.y0 + b.y1) / 2 - cam.y_m)),
    )
    for b in boxes:
        draw_static_box(img, cam, _box_corners(b.x0, b.x1, b.y0, b.y1, b.z0, b.z1), b.colour)
    # haze: blend towards the sky colour with ground distance along each row
    Hinv = cam.image_to_ground()
    v = rows + 0.5
    den = Hinv[2, 1] * v + Hinv[2, 0] * (w / 2) + Hinv[2, 2]
    gx = (Hinv[0, 1] * v + Hinv[0, 0] * (w / 2) + Hinv[0, 2]) / np.where(den == 0, 1e-9, den)
    gy = (Hinv[1, 1] * v + Hinv[1, 0] * (w / 2) + Hinv[1, 2]) / np.where(den == 0, 1e-9, den)
    dist = np.hypot(gx - cam.x_m, gy - cam.y_m)
    below = v > hv
    fog = np.where(below, 1 - np.exp(-dist / 700.0), 0.0)[:, None, None]
    out = img.astype(np.float32) * (1 - fog) + np.array(SKY, np.float32) * fog
    if rain > 0:
        grey = out.mean(axis=2, keepdims=True)
        out = (out * (1 - 0.4 * rain) + grey * 0.4 * rain) * (1 - 0.25 * rain)
    if night:
        out = _night(out, scene, cam, rows, hv)
    grain = rng_for(seed, "grain").normal(0, 2.2, (h, w, 1)).astype(np.float32)
    return np.asarray(np.clip(out + grain, 0, 255).astype(np.uint8))


def _night(out: np.ndarray, scene: Scene, cam: Camera, rows: FloatArray, hv: float) -> np.ndarray:
    h, w = cam.height, cam.width
    dark = out * np.array([0.2, 0.16, 0.14], np.float32) * 0.9
    sky = rows[:, None, None] < hv
    dark = np.where(sky, np.array([32, 18, 12], np.float32), dark)
    light: np.ndarray = np.zeros((h, w), np.float32)
    for lx, ly in scene.lamps:
        circle = np.column_stack(
            [lx + 7.0 * np.cos(np.linspace(0, 2 * np.pi, 25)[:-1]), ly + 7.0 * np.sin(
                np.linspace(0, 2 * np.pi, 25)[:-1]
            ), np.zeros(24)]
        )  # fmt: skip
        fill_world_poly(light, cam, circle, (1.0,), near=1.0)
    k = max(3, int(w / 40) | 1)
    light = cv2.GaussianBlur(light, (k, k), 0)
    lit = out * light[:, :, None] * np.array([0.55, 0.75, 0.95], np.float32)
    dark = dark + lit
    for lx, ly in scene.lamps:
        uv, z = cam.project(np.array([[lx, ly, 7.0]]))
        if z[0] > 1:
            r = max(1, int(0.25 * cam.fx / z[0]))
            cv2.circle(dark, (int(uv[0, 0]), int(uv[0, 1])), r, (200, 235, 255), -1, cv2.LINE_AA)
    return np.asarray(dark)


# --------------------------------------------------------------------------- objects


@dataclass
class Part:
    """A box (local extents) with per-face colours (front, back, left, right, top)."""

    lo: FloatArray
    hi: FloatArray
    colours: list[tuple[int, int, int]]


@dataclass
class Decal:
    """A flat convex polygon on one face of the model (window, light, wheel)."""

    face: int  # index into _FACES: whose normal decides whether it faces the camera
    poly: FloatArray  # (K, 3) local, a hair outside the face
    colour: tuple[int, int, int]
    night_colour: tuple[int, int, int]


@dataclass
class Model:
    parts: list[Part]
    decals: list[Decal]  # drawn after the parts
    under: list[Decal]  # drawn before the parts (wheels: the body hides what it should)
    prisms: list[tuple[float, float, float, float, tuple[int, int, int]]]  # x, z0, z1, r, colour
    head: tuple[float, float, tuple[int, int, int]] | None  # (z, radius, colour)
    lo: FloatArray = dataclasses.field(init=False)
    hi: FloatArray = dataclasses.field(init=False)
    base: FloatArray = dataclasses.field(init=False)  # (P, 5, 3) face colours

    def __post_init__(self) -> None:
        self.lo = np.array([p.lo for p in self.parts]).reshape(-1, 3)
        self.hi = np.array([p.hi for p in self.parts]).reshape(-1, 3)
        self.base = np.array([p.colours for p in self.parts], np.float64).reshape(-1, 5, 3)


def _box(
    x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, col: tuple[int, int, int],
    sides: tuple[int, int, int] | None = None, top: tuple[int, int, int] | None = None,
) -> Part:  # fmt: skip
    s = sides or col
    return Part(np.array([x0, y0, z0]), np.array([x1, y1, z1]), [s, s, s, s, top or col])


def _decal_x(x: float, y0: float, y1: float, z0: float, z1: float, col: tuple[int, int, int],
             night: tuple[int, int, int], front: bool) -> Decal:  # fmt: skip
    e = 0.02 if front else -0.02
    q = np.array([[x + e, y0, z0], [x + e, y1, z0], [x + e, y1, z1], [x + e, y0, z1]])
    return Decal(0 if front else 1, q, col, night)


def _decal_y(y: float, x0: float, x1: float, z0: float, z1: float, col: tuple[int, int, int],
             left: bool) -> Decal:  # fmt: skip
    e = 0.02 if left else -0.02
    q = np.array([[x0, y + e, z0], [x1, y + e, z0], [x1, y + e, z1], [x0, y + e, z1]])
    dark = tuple(int(c * 0.5) for c in col)
    return Decal(2 if left else 3, q, col, dark)  # type: ignore[arg-type]


def _wheels(xs: list[float], w: float, r: float) -> list[Decal]:
    """Wheels as discs on both sides (only the side facing the camera is drawn)."""
    out = []
    for x in xs:
        for left in (True, False):
            y = (w / 2 + 0.02) if left else -(w / 2 + 0.02)
            disc = np.column_stack([x + r * _RING[:, 0], np.full(8, y), r + r * _RING[:, 1]])
            out.append(Decal(2 if left else 3, disc, TYRE, TYRE))
    return out


def _lights(L: float, W: float, z0: float, z1: float) -> list[Decal]:
    out = []
    for sgn in (1, -1):
        ya, yb = sorted((sgn * (W / 2 - 0.12), sgn * (W / 2 - 0.38)))
        out.append(_decal_x(L / 2, ya, yb, z0, z1, (200, 215, 220), (255, 255, 255), True))
        out.append(_decal_x(-L / 2, ya, yb, z0, z1, (40, 40, 150), (70, 70, 255), False))
    return out


def build_model(b: Body) -> Model:
    L, W, H, c, c2 = b.length, b.width, b.height, b.colour, b.colour2
    if b.cls == "car":
        zb = 0.3 + 0.4 * H
        parts = [
            _box(-L / 2, L / 2, -W / 2, W / 2, 0.3, zb, c),
            _box(-0.33 * L, 0.17 * L, -W / 2 + 0.1, W / 2 - 0.1, zb, H, c, sides=GLASS, top=c),
        ]
        under = _wheels([L / 2 - 0.85, -L / 2 + 0.85], W - 0.1, 0.32)
        return Model(parts, _lights(L, W, zb - 0.25, zb - 0.1), under, [], None)
    if b.cls == "bus":
        parts = [_box(-L / 2, L / 2, -W / 2, W / 2, 0.35, H, c)]
        decals = _lights(L, W, 0.6, 0.85)
        decals.append(
            _decal_x(L / 2, -W / 2 + 0.15, W / 2 - 0.15, 1.1, H - 0.3, GLASS, GLASS, True)
        )
        for left in (True, False):
            y = W / 2 if left else -W / 2
            decals.append(_decal_y(y, -L / 2 + 0.6, L / 2 - 0.4, 1.25, H - 0.45, GLASS, left))
        under = _wheels([L / 2 - 2.3, -L / 2 + 2.6], W - 0.1, 0.5)
        return Model(parts, decals, under, [], None)
    if b.cls == "truck":
        cab = 2.3
        zt = min(H, 3.0)
        parts = [
            _box(-L / 2, L / 2 - cab, -W / 2 + 0.2, W / 2 - 0.2, 0.5, 1.1, TYRE),
            _box(L / 2 - cab, L / 2, -W / 2, W / 2, 0.45, zt, c),
            _box(-L / 2, L / 2 - cab - 0.15, -W / 2, W / 2, 1.1, H, c2),
        ]
        decals = _lights(L, W, 0.6, 0.85)
        decals.append(
            _decal_x(L / 2, -W / 2 + 0.15, W / 2 - 0.15, 1.7, zt - 0.3, GLASS, GLASS, True)
        )
        for left in (True, False):
            y = W / 2 if left else -W / 2
            decals.append(_decal_y(y, L / 2 - cab + 0.3, L / 2 - 0.4, 1.7, zt - 0.35, GLASS, left))
        under = _wheels([L / 2 - 1.2, -L / 2 + 1.3, -L / 2 + 2.5], W - 0.1, 0.5)
        return Model(parts, decals, under, [], None)
    if b.cls in ("bicycle", "motorcycle"):
        moto = b.cls == "motorcycle"
        r = 0.32 if moto else 0.34
        frame = (40, 40, 40) if moto else (c2[0] // 2 + 60, 60, 60)
        if moto:
            parts = [_box(-0.55, 0.6, -0.22, 0.22, 0.3, 0.85, c)]
        else:
            parts = [_box(-0.4, 0.45, -0.03, 0.03, 0.3, 0.8, frame)]
        under = _wheels([L / 2 - r, -L / 2 + r], 0.1, r)
        seat = 0.8 if moto else 0.95
        prisms = [
            (-0.15, 0.25, seat + 0.05, 0.13, c2),
            (-0.15, seat + 0.05, seat + 0.55 * (H - seat), 0.2, c if not moto else c2),
        ]
        helmet = (30, 30, 30) if moto else (60, 80, 100)
        return Model(parts, [], under, prisms, (H - 0.12, 0.12, helmet))
    # person
    hip = 0.48 * H
    prisms = [(0.0, 0.0, hip, 0.16, c2), (0.0, hip, 0.83 * H, 0.22, c)]
    skin = (120, 150, 190)
    return Model([], [], [], prisms, (0.91 * H, 0.075 * H, skin))


def _rot(heading_deg: float) -> FloatArray:
    """Local (x forward, y left, z up) to world rotation for a compass heading."""
    h = math.radians(heading_deg)
    fwd = np.array([math.sin(h), math.cos(h), 0.0])
    left = np.array([-math.cos(h), math.sin(h), 0.0])
    return np.stack([fwd, left, [0.0, 0.0, 1.0]], axis=1)


@dataclass
class Drawn:
    """What the truth needs from drawing one object: its silhouette hull in pixels."""

    hull: np.ndarray | None  # (K, 2) float pixels, None when not drawn


class ObjectPainter:
    """Draws objects into a frame; keeps per-object models between frames."""

    def __init__(self, cam: Camera, night: bool) -> None:
        self.cam = cam
        self.night = night
        self.models: dict[int, Model] = {}
        self.sun_ground = -SUN[:2] / SUN[2]  # shadow offset per metre of height

    def model(self, b: Body) -> Model:
        m = self.models.get(b.id)
        if m is None:
            m = self.models[b.id] = build_model(b)
        return m

    def _poly(self, img: np.ndarray, cam_pts: FloatArray, colour: tuple[int, ...]) -> None:
        if bool(np.all(cam_pts[:, 2] >= 0.2)):
            uv = cam_pts[:, :2] / cam_pts[:, 2:3] * self.cam.fx + self.cam.K[:2, 2]
        else:
            c = clip_near(cam_pts, 0.2)
            if len(c) < 3:
                return
            uv = self.cam.cam_to_pixels(c)
        cv2.fillConvexPoly(img, to_fixed(uv), colour, cv2.LINE_8, SHIFT)

    def shadow(self, img: np.ndarray, b: Body, x: float, y: float, heading: float) -> None:
        R = _rot(heading)
        L, W, H = b.length, b.width, b.height
        if b.cls == "person":
            L = W = 0.45
        depth = float(self.cam.to_camera(np.array([[x, y, 0.0]]))[0, 2])
        if depth > 0 and H * self.cam.fx / depth < LOD_PX:
            return
        foot = _box_corners(-L / 2, L / 2, -W / 2, W / 2, 0.0, H) @ R.T + np.array([x, y, 0.0])
        ground = foot[:, :2] + foot[:, 2:3] * self.sun_ground
        pts = np.column_stack([ground, np.full(8, 0.01)])
        camp = self.cam.to_camera(pts)
        if bool(np.any(camp[:, 2] < 0.5)):
            return
        uv = self.cam.cam_to_pixels(camp)
        hull = cv2.convexHull(uv.astype(np.float32)).reshape(-1, 2)
        x0, y0 = np.floor(hull.min(axis=0)).astype(int)
        x1, y1 = np.ceil(hull.max(axis=0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, img.shape[1]), min(y1, img.shape[0])
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, to_fixed(hull - np.array([x0, y0])), 1, cv2.LINE_8, SHIFT)
        roi = img[y0:y1, x0:x1]
        dark = cv2.convertScaleAbs(roi, alpha=0.625)
        cv2.copyTo(dark, mask, roi)

    def beam(self, img: np.ndarray, b: Body, x: float, y: float, heading: float) -> None:
        """Headlight beam on the road ahead (night)."""
        R = _rot(heading)
        L, W = b.length, b.width
        quad = np.array([[L / 2, -W / 2, 0.02], [L / 2 + 18, -W / 2 - 2.5, 0.02],
                         [L / 2 + 18, W / 2 + 2.5, 0.02], [L / 2, W / 2, 0.02]])  # fmt: skip
        camp = self.cam.to_camera(quad @ R.T + np.array([x, y, 0.0]))
        c = clip_near(camp, 0.5)
        if len(c) < 3:
            return
        uv = self.cam.cam_to_pixels(c)
        x0, y0 = np.floor(uv.min(axis=0)).astype(int)
        x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, img.shape[1]), min(y1, img.shape[0])
        if x1 <= x0 or y1 <= y0:
            return
        add = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        cv2.fillConvexPoly(add, to_fixed(uv - [x0, y0]), (45, 60, 70), cv2.LINE_8, SHIFT)
        cv2.add(img[y0:y1, x0:x1], add, dst=img[y0:y1, x0:x1])

    def _decals(
        self, img: np.ndarray, decals: list[Decal], R: FloatArray, pos: FloatArray,
        light: FloatArray,
    ) -> None:  # fmt: skip
        cam = self.cam
        normals = _NORMALS @ R.T
        for d in decals:
            world = d.poly @ R.T + pos
            if float(normals[d.face] @ (cam.C - world[0])) <= 0:
                continue
            col = d.night_colour if self.night else d.colour
            if not self.night:
                col = tuple(int(min(255.0, ch * light[d.face])) for ch in col)  # type: ignore[assignment]
            self._poly(img, cam.to_camera(world), col)

    def draw(self, img: np.ndarray, b: Body, x: float, y: float, heading: float) -> Drawn:
        m = self.model(b)
        R = _rot(heading)
        pos = np.array([x, y, 0.0])
        gain = NIGHT_GAIN if self.night else 1.0
        cam = self.cam
        hull_pts: list[FloatArray] = []
        normals = _NORMALS @ R.T  # (5, 3)
        light = 0.55 + 0.5 * np.maximum(0.0, normals @ SUN)
        depth0 = float(cam.to_camera(pos[None, :])[0, 2])
        detail = depth0 <= 0 or b.height * cam.fx / depth0 >= LOD_PX  # small: no decals
        if m.under and detail:
            self._decals(img, m.under, R, pos, light)
        if m.parts:
            local = m.lo[:, None, :] + _CORNERS[None, :, :] * (m.hi - m.lo)[:, None, :]
            world = local @ R.T + pos  # (P, 8, 3)
            camp = cam.to_camera(world)
            centres = world[:, _FACES].mean(axis=2)  # (P, 5, 3)
            facing = np.einsum("fk,pfk->pf", normals, cam.C - centres) > 0
            cols = np.minimum(m.base * (light * gain)[None, :, None], 255).astype(int).tolist()
            depth = camp[:, :, 2].mean(axis=1)
            order = np.argsort(-depth, kind="stable").tolist()
            fast = bool(np.all(camp[:, :, 2] >= 0.2))
            if fast:
                uv = to_fixed(camp[..., :2] / camp[..., 2:3] * cam.fx + cam.K[:2, 2])
            for i in order:
                for fi in np.nonzero(facing[i])[0].tolist():
                    if fast:
                        cv2.fillConvexPoly(img, uv[i][_FACES[fi]], cols[i][fi], cv2.LINE_8, SHIFT)
                    else:
                        self._poly(img, camp[i][_FACES[fi]], tuple(cols[i][fi]))
            hull_pts.append(camp.reshape(-1, 3))
        if m.decals and detail:
            self._decals(img, m.decals, R, pos, light)
        for px, z0, z1, r, colour in m.prisms:
            ring = np.column_stack([_RING * r, np.zeros(8)]) + [px, 0.0, 0.0]
            pts = np.concatenate([ring + [0, 0, z0], ring + [0, 0, z1]]) @ R.T + pos
            camp = cam.to_camera(pts)
            hull_pts.append(camp)
            if bool(np.any(camp[:, 2] < 0.2)):
                continue
            uvp = cam.cam_to_pixels(camp)
            hull = cv2.convexHull(uvp.astype(np.float32)).reshape(-1, 2)
            col = tuple(int(ch * 0.9 * gain) for ch in colour)
            cv2.fillConvexPoly(img, to_fixed(hull), col, cv2.LINE_8, SHIFT)
        if m.head is not None:
            hz, hr, colour = m.head
            hx = m.prisms[-1][0] if m.prisms else 0.0
            c = cam.to_camera((R @ np.array([hx, 0.0, hz]) + pos)[None, :])
            if c[0, 2] > 0.2:
                uvh = cam.cam_to_pixels(c)[0]
                rad = hr * cam.fx / c[0, 2]
                col = tuple(int(ch * gain) for ch in colour)
                centre = (int(round(uvh[0] * ONE)), int(round(uvh[1] * ONE)))
                cv2.circle(img, centre, max(ONE, int(rad * ONE)), col, -1, cv2.LINE_8, SHIFT)
                ring = np.column_stack([_RING * hr, np.zeros(8)])
                hp = np.concatenate([ring + [hx, 0, hz + hr], ring + [hx, 0, hz - hr]])
                hull_pts.append(cam.to_camera(hp @ R.T + pos))
        allp = np.concatenate(hull_pts)
        allp = allp[allp[:, 2] >= 0.2]
        if len(allp) < 3:
            return Drawn(None)
        uvs = cam.cam_to_pixels(allp)
        return Drawn(cv2.convexHull(uvs.astype(np.float32)).reshape(-1, 2).astype(np.float64))


# --------------------------------------------------------------------------- batched drawing


@dataclass
class Geom:
    """A model flattened for projecting all objects of a frame at once.

    Vertex rows: part corners (P x 8), prism rings (16 each), head ring (16), head centre (1),
    then the decals' polygons (under first). ``hull`` rows (corners, prisms, head ring) make
    the silhouette the truth is computed from.
    """

    verts: FloatArray
    parts: int
    hull: int  # the first `hull` rows
    prisms: list[tuple[int, tuple[int, int, int]]]  # (first row, colour before gain)
    head: tuple[int, float, tuple[int, int, int]] | None  # (centre row, radius, colour)
    decal_rows: list[np.ndarray]  # vertex rows of each decal
    decal_face: np.ndarray  # (D,)
    decal_colour: FloatArray  # (D, 3)
    decal_night: list[tuple[int, int, int]]
    n_under: int


def build_geom(m: Model) -> Geom:
    rows: list[FloatArray] = []
    if m.parts:
        rows.append((m.lo[:, None, :] + _CORNERS[None] * (m.hi - m.lo)[:, None, :]).reshape(-1, 3))
    prisms = []
    n = len(m.parts) * 8
    for px, z0, z1, r, colour in m.prisms:
        ring = np.column_stack([_RING * r, np.zeros(8)]) + [px, 0.0, 0.0]
        rows.append(np.concatenate([ring + [0, 0, z0], ring + [0, 0, z1]]))
        prisms.append((n, colour))
        n += 16
    head = None
    hull = n
    if m.head is not None:
        hz, hr, colour = m.head
        hx = m.prisms[-1][0] if m.prisms else 0.0
        ring = np.column_stack([_RING * hr, np.zeros(8)])
        rows.append(np.concatenate([ring + [hx, 0, hz + hr], ring + [hx, 0, hz - hr]]))
        rows.append(np.array([[hx, 0.0, hz]]))
        hull = n + 16
        head = (n + 16, hr, colour)
        n += 17
    decal_rows = []
    for d in m.under + m.decals:
        rows.append(d.poly)
        decal_rows.append(np.arange(n, n + len(d.poly)))
        n += len(d.poly)
    ds = m.under + m.decals
    return Geom(
        verts=np.concatenate(rows) if rows else np.zeros((0, 3)),
        parts=len(m.parts),
        hull=hull,
        prisms=prisms,
        head=head,
        decal_rows=decal_rows,
        decal_face=np.array([d.face for d in ds], np.int64),
        decal_colour=np.array([d.colour for d in ds], np.float64).reshape(-1, 3),
        decal_night=[d.night_colour for d in ds],
        n_under=len(m.under),
    )


class FramePainter(ObjectPainter):
    """ObjectPainter that projects every object of a frame in one pass.

    Objects that come closer than 0.2 m to the camera plane (rare: they need near-plane
    clipping) are drawn by ObjectPainter.draw one by one; the others share one projection, one
    facing test and one colour computation, and Python only loops over the polygons to fill.
    """

    def __init__(self, cam: Camera, night: bool) -> None:
        super().__init__(cam, night)
        self.geoms: dict[int, Geom] = {}
        self.shadow_mask = np.zeros((cam.height, cam.width), np.uint8)

    def geom(self, b: Body) -> Geom:
        g = self.geoms.get(b.id)
        if g is None:
            g = self.geoms[b.id] = build_geom(self.model(b))
        return g

    def shadows(
        self, img: np.ndarray, bodies: list[Body], xs: FloatArray, ys: FloatArray,
        headings: FloatArray,
    ) -> None:  # fmt: skip
        """Every object's shadow (day), the union darkened once."""
        cam = self.cam
        n = len(bodies)
        if n == 0:
            return
        hs = np.array([b.height for b in bodies])
        depth = cam.to_camera(np.column_stack([xs, ys, np.zeros(n)]))[:, 2]
        small = (depth > 0) & (hs * cam.fx / np.where(depth > 0, depth, 1.0) < LOD_PX)
        lo = np.array(
            [
                [-0.225, -0.225] if b.cls == "person" else [-b.length / 2, -b.width / 2]
                for b in bodies
            ]
        )
        rad = np.radians(headings)
        s, c = np.sin(rad), np.cos(rad)
        # footprint corners at the ground and at the top, then moved along the sun's rays
        cx = np.array([1, 1, -1, -1, 1, 1, -1, -1], float)
        cy = np.array([1, -1, -1, 1, 1, -1, -1, 1], float)
        cz = np.array([0, 0, 0, 0, 1, 1, 1, 1], float)
        lx = -lo[:, :1] * cx  # (n, 8)
        ly = -lo[:, 1:] * cy
        gx = xs[:, None] + lx * s[:, None] - ly * c[:, None]
        gy = ys[:, None] + lx * c[:, None] + ly * s[:, None]
        z = hs[:, None] * cz
        gx = gx + z * self.sun_ground[0]
        gy = gy + z * self.sun_ground[1]
        pts = np.stack([gx, gy, np.full_like(gx, 0.01)], axis=-1)
        camp = cam.to_camera(pts)  # (n, 8, 3)
        ok = ~small & np.all(camp[:, :, 2] >= 0.5, axis=1)
        if not ok.any():
            return
        uv = camp[ok][:, :, :2] / camp[ok][:, :, 2:3] * cam.fx + cam.K[:2, 2]
        W, H = cam.width, cam.height
        x0 = max(0, int(np.floor(uv[..., 0].min())))
        y0 = max(0, int(np.floor(uv[..., 1].min())))
        x1 = min(W, int(np.ceil(uv[..., 0].max())) + 1)
        y1 = min(H, int(np.ceil(uv[..., 1].max())) + 1)
        if x1 <= x0 or y1 <= y0:
            return
        mask = self.shadow_mask[y0:y1, x0:x1]
        mask.fill(0)
        fixed = to_fixed(uv - [x0, y0])
        for q, p in zip(fixed, uv.astype(np.float32), strict=True):
            hull = cv2.convexHull(p, returnPoints=False).reshape(-1)
            cv2.fillConvexPoly(mask, q[hull], 1, cv2.LINE_8, SHIFT)
        roi = img[y0:y1, x0:x1]
        dark = cv2.convertScaleAbs(roi, alpha=0.625)
        cv2.copyTo(dark, mask, roi)

    def draw_all(
        self, img: np.ndarray, bodies: list[Body], xs: FloatArray, ys: FloatArray,
        headings: FloatArray,
    ) -> list[np.ndarray | None]:  # fmt: skip
        """Draws the objects in the order given (far to near); each one's silhouette hull."""
        cam = self.cam
        n = len(bodies)
        if n == 0:
            return []
        geoms = [self.geom(b) for b in bodies]
        Rs = [_rot(float(h)) for h in headings]
        pos = np.column_stack([xs, ys, np.zeros(n)])
        world = np.concatenate([g.verts @ R.T + p for g, R, p in zip(geoms, Rs, pos, strict=True)])
        counts = np.array([len(g.verts) for g in geoms])
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        camp = cam.to_camera(world)
        z = camp[:, 2]
        near = np.minimum.reduceat(z, starts) < 0.2 if len(z) else np.zeros(n, bool)
        uv = camp[:, :2] / np.maximum(z, 0.2)[:, None] * cam.fx + cam.K[:2, 2]
        fixed = to_fixed(uv)
        uv32 = uv.astype(np.float32)
        normals = np.stack([_NORMALS @ R.T for R in Rs])  # (n, 5, 3)
        light = 0.55 + 0.5 * np.maximum(0.0, normals @ SUN)  # (n, 5)
        gain = NIGHT_GAIN if self.night else 1.0
        depth0 = cam.to_camera(pos)[:, 2]
        hs = np.array([b.height for b in bodies])
        detail = (depth0 <= 0) | (hs * cam.fx / np.where(depth0 > 0, depth0, 1.0) >= LOD_PX)
        # part faces: facing test and colours for all parts of all objects at once
        part_obj = np.repeat(np.arange(n), [g.parts for g in geoms])
        part_rows = np.concatenate(
            [starts[k] + np.arange(g.parts * 8) for k, g in enumerate(geoms) if g.parts]
            or [np.zeros(0, np.int64)]
        )
        corners = world[part_rows].reshape(-1, 8, 3)
        centres = corners[:, _FACES].mean(axis=2)  # (Q, 5, 3)
        facing = np.einsum("qfk,qfk->qf", normals[part_obj], cam.C - centres) > 0
        base = np.concatenate(
            [self.model(b).base for b, g in zip(bodies, geoms, strict=True) if g.parts]
            or [np.zeros((0, 5, 3))]
        )
        pcols = np.minimum(base * (light[part_obj] * gain)[:, :, None], 255).astype(int).tolist()
        pdepth = camp[part_rows, 2].reshape(-1, 8).mean(axis=1)
        # decals: facing test (at their first vertex) and colours
        dec_obj = np.repeat(np.arange(n), [len(g.decal_rows) for g in geoms])
        dfacing_l: list[bool] = []
        dcols: list[Any] = []
        if len(dec_obj):
            first = np.array(
                [starts[k] + r[0] for k, g in enumerate(geoms) for r in g.decal_rows], np.int64
            )
            faces = np.concatenate([g.decal_face for g in geoms])
            dnorm = normals[dec_obj, faces]
            dfacing = np.einsum("dk,dk->d", dnorm, cam.C - world[first]) > 0
            if self.night:
                dcols = [c for g in geoms for c in g.decal_night]
            else:
                dcol = np.concatenate([g.decal_colour for g in geoms])
                dcols = (
                    np.minimum(255.0, dcol * light[dec_obj, faces][:, None]).astype(int).tolist()
                )
            dfacing_l = dfacing.tolist()
        hulls: list[np.ndarray | None] = []
        q = 0
        d = 0
        fill = cv2.fillConvexPoly
        for k, (b, g) in enumerate(zip(bodies, geoms, strict=True)):
            nd = len(g.decal_rows)
            if near[k]:
                hulls.append(self.draw(img, b, xs[k], ys[k], headings[k]).hull)
                q += g.parts
                d += nd
                continue
            s = starts[k]
            fx_k = fixed[s : s + len(g.verts)]
            show = bool(detail[k])
            if show:
                for i in range(g.n_under):
                    if dfacing_l[d + i]:
                        fill(img, fx_k[g.decal_rows[i]], dcols[d + i], 8, SHIFT)
            if g.parts:
                order = np.argsort(-pdepth[q : q + g.parts], kind="stable").tolist()
                for i in order:
                    pf = facing[q + i]
                    rows = fx_k[i * 8 : i * 8 + 8]
                    for fi in range(5):
                        if pf[fi]:
                            fill(img, rows[_FACES[fi]], pcols[q + i][fi], 8, SHIFT)
            if show:
                for i in range(g.n_under, nd):
                    if dfacing_l[d + i]:
                        fill(img, fx_k[g.decal_rows[i]], dcols[d + i], 8, SHIFT)
            uv_k = uv32[s : s + len(g.verts)]
            for row, colour in g.prisms:
                hull = cv2.convexHull(uv_k[row : row + 16]).reshape(-1, 2)
                col = tuple(int(ch * 0.9 * gain) for ch in colour)
                fill(img, to_fixed(hull), col, 8, SHIFT)
            if g.head is not None:
                row, hr, colour = g.head
                zc = float(camp[s + row, 2])
                u, v = uv[s + row]
                rad = hr * cam.fx / zc
                col = tuple(int(ch * gain) for ch in colour)
                centre = (int(round(u * ONE)), int(round(v * ONE)))
                cv2.circle(img, centre, max(ONE, int(rad * ONE)), col, -1, cv2.LINE_8, SHIFT)
            q += g.parts
            d += nd
            if g.hull >= 3:
                hp = uv[s : s + g.hull]
                hulls.append(
                    cv2.convexHull(hp.astype(np.float32)).reshape(-1, 2).astype(np.float64)
                )
            else:
                hulls.append(None)
        return hulls
