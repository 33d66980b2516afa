"""Pinhole camera over the ground plane, and the exact image <-> ground homography.

World frame: metres, x east, y north, z up; the ground is z = 0. Headings and the camera's yaw
are compass bearings in degrees: 0 looks along +y (north), 90 along +x (east). Pitch is the
angle below the horizon (positive looks down); roll turns the image clockwise.

Camera frame (OpenCV): x right, y down, z forward. A world point X maps to
``x_cam = R (X - C)`` and to pixels ``u = fx x/z + cx, v = fy y/z + cy``. On the ground (z = 0)
this is the homography ``H = K [r1 r2 -R C]`` (r1, r2: the first two columns of R), and its
inverse maps pixels back to the ground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RESOLUTIONS: dict[str, tuple[int, int]] = {
    "640x360": (640, 360),
    "1280x720": (1280, 720),
    "1920x1080": (1920, 1080),
}
NEAR_M = 0.2  # the near plane: geometry closer than this (camera z) is clipped away


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: position, orientation, lens and image size.

    ``focal_mm`` over ``sensor_width_mm`` sets the horizontal field of view, the same at every
    resolution (a 1/2.8" sensor is 5.6 mm wide; 8 mm on it sees about 39 degrees).
    """

    x_m: float = 0.0
    y_m: float = 0.0
    height_m: float = 8.0
    yaw_deg: float = 0.0
    pitch_deg: float = 15.0
    roll_deg: float = 0.0
    focal_mm: float = 6.0
    sensor_width_mm: float = 5.6
    width: int = 1280
    height: int = 720
    R: FloatArray = field(init=False, repr=False, compare=False)
    K: FloatArray = field(init=False, repr=False, compare=False)
    C: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        yaw, pitch, roll = (math.radians(a) for a in (self.yaw_deg, self.pitch_deg, self.roll_deg))
        fwd = np.array(
            [math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), -math.sin(pitch)]
        )
        right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
        down = np.cross(fwd, right)
        if roll:
            c, s = math.cos(roll), math.sin(roll)
            right, down = c * right + s * down, -s * right + c * down
        object.__setattr__(self, "R", np.stack([right, down, fwd]))
        f = self.focal_mm / self.sensor_width_mm * self.width
        K = np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "C", np.array([self.x_m, self.y_m, self.height_m]))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def t(self) -> FloatArray:
        """Translation of the extrinsics: x_cam = R X + t."""
        return np.asarray(-self.R @ self.C)

    def at_resolution(self, width: int, height: int) -> Camera:
        """The same view at another image size (same field of view)."""
        return Camera(
            x_m=self.x_m,
            y_m=self.y_m,
            height_m=self.height_m,
            yaw_deg=self.yaw_deg,
            pitch_deg=self.pitch_deg,
            roll_deg=self.roll_deg,
            focal_mm=self.focal_mm,
            sensor_width_mm=self.sensor_width_mm,
            width=width,
            height=height,
        )

    def ground_to_image(self) -> FloatArray:
        """3x3 homography from ground (x, y, 1) in metres to pixels, H[2, 2] = 1."""
        H = self.K @ np.column_stack([self.R[:, 0], self.R[:, 1], self.t])
        return np.asarray(H / H[2, 2])

    def image_to_ground(self) -> FloatArray:
        """3x3 homography from pixels (u, v, 1) to ground metres, H[2, 2] = 1."""
        Hi = np.linalg.inv(self.ground_to_image())
        return np.asarray(Hi / Hi[2, 2])

    def to_camera(self, pts: FloatArray) -> FloatArray:
        """World points (..., 3) to camera coordinates (..., 3)."""
        return np.asarray((pts - self.C) @ self.R.T)

    def project(self, pts: FloatArray) -> tuple[FloatArray, FloatArray]:
        """World points (..., 3) to pixels (..., 2) and camera depth (...,)."""
        cam = self.to_camera(pts)
        z = cam[..., 2]
        zs = np.where(z > 1e-9, z, 1e-9)
        uv = cam[..., :2] / zs[..., None] * self.K[0, 0] + self.K[:2, 2]
        return uv, z

    def cam_to_pixels(self, cam: FloatArray) -> FloatArray:
        return np.asarray(cam[..., :2] / cam[..., 2:3] * self.K[0, 0] + self.K[:2, 2])

    def horizon_v(self) -> float:
        """Image row of the horizon at the image centre column (may lie outside the image)."""
        far = (
            self.C
            + np.array(
                [math.sin(math.radians(self.yaw_deg)), math.cos(math.radians(self.yaw_deg)), 0.0]
            )
            * 1e7
        )
        far[2] = 0.0
        uv, _ = self.project(far[None, :])
        return float(uv[0, 1])

    def to_dict(self) -> dict[str, object]:
        """Intrinsics, extrinsics and both homographies, as written to the truth files."""
        return {
            "position_m": [self.x_m, self.y_m, self.height_m],
            "yaw_deg": self.yaw_deg,
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "focal_mm": self.focal_mm,
            "sensor_width_mm": self.sensor_width_mm,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "R": self.R.tolist(),
            "t": self.t.tolist(),
            "ground_to_image": self.ground_to_image().tolist(),
            "image_to_ground": self.image_to_ground().tolist(),
        }


def apply_homography(H: FloatArray, pts: FloatArray) -> FloatArray:
    """Maps (N, 2) points through a 3x3 homography."""
    p = np.asarray(pts, dtype=np.float64)
    h = np.column_stack([p, np.ones(len(p))]) @ np.asarray(H, dtype=np.float64).T
    return np.asarray(h[:, :2] / h[:, 2:3])


def clip_near(cam_poly: FloatArray, near: float = NEAR_M) -> FloatArray:
    """Sutherland-Hodgman clip of one polygon (N, 3, camera frame) against z >= near."""
    z = cam_poly[:, 2]
    if bool(np.all(z >= near)):
        return cam_poly
    out: list[FloatArray] = []
    n = len(cam_poly)
    for i in range(n):
        a, b = cam_poly[i], cam_poly[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            k = (near - a[2]) / (b[2] - a[2])
            out.append(a + k * (b - a))
    if len(out) < 3:
        return np.zeros((0, 3))
    return np.stack(out)
