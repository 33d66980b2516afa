"""Per-lane measurements for the traffic statistics: one `LaneSample` per lane per frame.

``vehicles`` present on the lane, their ``mean_speed_kmh`` (NaN when none is known),
``occupancy`` (0..1: the typical lengths of the vehicles present over the lane's length in
view, for a calibrated camera; the share of the lane's pixel area their boxes cover otherwise),
``density_per_km`` and a level of service A-F from density and speed (below). The traffic
statistics aggregate these into minute buckets; the line crossings come from LineCrossing.

Level of service: by density (vehicles per km per lane; HCM basic segments, A <= 7, B <= 11,
C <= 16, D <= 22, E <= 28, F above) and by mean speed over the lane's limit (A > 85 %, B > 67,
C > 50, D > 40, E > 30, F below); the worse of the two. An empty lane is A.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smartcity.incidents.geometry import CameraGeometry, Lane, apply_h, points_in_polygon
from smartcity.incidents.rules.base import CLASS_LENGTH_M, F64, FrameView

LOS = "ABCDEF"
_DENSITY = (7.0, 11.0, 16.0, 22.0, 28.0)
_SPEED_RATIO = (0.85, 0.67, 0.50, 0.40, 0.30)


@dataclass(frozen=True)
class LaneSample:
    lane: str
    group: str  # road:direction of the lane (congestion is judged per group)
    pts: float
    t_ns: int
    vehicles: int
    mean_speed_kmh: float
    occupancy: float
    density_per_km: float  # NaN without a calibration
    level: str  # A-F


def level_of_service(density_per_km: float, mean_speed_kmh: float, limit_kmh: float | None,
                     vehicles: int) -> str:  # fmt: skip
    if vehicles == 0:
        return "A"
    k = 0
    if math.isfinite(density_per_km):
        k = sum(density_per_km > t for t in _DENSITY)
    if limit_kmh and math.isfinite(mean_speed_kmh):
        ratio = mean_speed_kmh / limit_kmh
        k = max(k, sum(ratio <= t for t in _SPEED_RATIO))
    return LOS[k]


def lane_length_in_view(lane: Lane, geo: CameraGeometry) -> float:
    """Metres of the lane the camera sees: its centre line sampled, kept where it projects in
    front of the camera and inside the image (the whole polygon when the size is unknown)."""
    cal = geo.calibration
    if cal is None:
        return math.nan
    poly = lane.polygon
    if lane.space == "ground":
        d = lane.direction
        s = poly @ d
        c = poly.mean(axis=0)
        c = c - (c @ d) * d
        ts = np.linspace(float(s.min()), float(s.max()), 400)
        pts = c[None, :] + ts[:, None] * d[None, :]
        h = np.column_stack([pts, np.ones(len(pts))]) @ cal.ground_to_image.T
        front = h[:, 2] > 1e-9
        uv = h[:, :2] / np.where(front, h[:, 2], 1.0)[:, None]
        ok = front
        if geo.width and geo.height:
            ok &= (uv[:, 0] >= 0) & (uv[:, 0] < geo.width) & (uv[:, 1] >= 0)
            ok &= uv[:, 1] < geo.height
        return float(ok.sum() * (ts[1] - ts[0]))
    d = lane.direction
    s = poly @ d
    c = poly.mean(axis=0)
    c = c - (c @ d) * d
    ends = np.stack([c + float(s.min()) * d, c + float(s.max()) * d])
    g = apply_h(cal.image_to_ground, ends)
    return float(np.hypot(*(g[1] - g[0])))


class LaneMeter:
    """Measures every lane of a camera per frame: ``sample(view) -> list[LaneSample]``."""

    def __init__(self, geo: CameraGeometry) -> None:
        self.geo = geo
        self.length_m = [lane_length_in_view(lane, geo) for lane in geo.lanes]
        self.area_px = []
        for lane in geo.lanes:
            x, y = lane.polygon[:, 0], lane.polygon[:, 1]
            self.area_px.append(
                0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            )

    def sample(self, v: FrameView) -> list[LaneSample]:
        out = []
        xyxy = np.asarray(v.frame.xyxy, np.float64).reshape(-1, 4)
        for k, lane in enumerate(self.geo.lanes):
            on = v.vehicle & (v.lane == k)
            n = int(on.sum())
            sp = v.speed[on]
            sp = sp[np.isfinite(sp)]
            mean = float(sp.mean()) if len(sp) else math.nan
            length = self.length_m[k]
            if math.isfinite(length) and length > 0:
                occ = float(CLASS_LENGTH_M[np.clip(v.cls[on], 0, 5)].sum()) / length
                density = n / (length / 1000.0)
            else:
                density = math.nan
                occ = (
                    _box_cover(xyxy[on], lane.polygon, self.area_px[k])
                    if lane.space == "image"
                    else math.nan
                )
            level = level_of_service(density, mean, lane.speed_limit_kmh, n)
            out.append(
                LaneSample(lane.name, lane.group, v.pts, v.frame.t_ns, n, mean,
                           min(1.0, occ) if math.isfinite(occ) else occ, density, level)
            )  # fmt: skip
        return out


def _box_cover(boxes: F64, poly: F64, area: float) -> float:
    if len(boxes) == 0 or area <= 0:
        return 0.0
    total = 0.0
    for x0, y0, x1, y1 in boxes:  # a 6x6 grid of each box, points inside the lane
        gx, gy = np.meshgrid(np.linspace(x0, x1, 6), np.linspace(y0, y1, 6))
        inside = points_in_polygon(np.column_stack([gx.ravel(), gy.ravel()]), poly)
        total += float(inside.mean()) * (x1 - x0) * (y1 - y0)
    return total / area
