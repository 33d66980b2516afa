"""Frames, realism effects, H.264 encoding and the truth files of one scenario."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from smartcity.scenarios.camera import RESOLUTIONS, Camera, FloatArray
from smartcity.scenarios.draw import SHIFT, FramePainter, render_background, to_fixed
from smartcity.scenarios.motion import Tracks, rng_for, simulate
from smartcity.scenarios.schema import Effects, Scenario
from smartcity.scenarios.truth import (
    TRUTH_SCHEMA,
    all_lines,
    expected_incidents,
    lane_index,
    line_counts,
)
from smartcity.scenarios.world import Scene, make_scene


@dataclass
class Prepared:
    """A scenario made concrete: scene, camera and every object's motion."""

    scenario: Scenario
    scene: Scene
    camera: Camera
    tracks: Tracks


def prepare(
    scenario: Scenario,
    seconds: float | None = None,
    seed: int | None = None,
    resolution: str | None = None,
) -> Prepared:
    if seed is not None or seconds is not None:
        scenario = dataclasses.replace(
            scenario,
            seed=scenario.seed if seed is None else seed,
            seconds=scenario.seconds if seconds is None else seconds,
        )
    if resolution is not None:
        scenario = dataclasses.replace(scenario, resolution=resolution)
    scene = make_scene(scenario.preset)
    w, h = RESOLUTIONS[scenario.resolution]
    base = scene.camera
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    fields.update(dict(scenario.camera))
    fields.update(width=w, height=h)
    cam = Camera(**fields)
    return Prepared(scenario, scene, cam, simulate(scenario, scene))


class EffectStack:
    """Sensor noise, brightness drift, rain streaks, camera shake: all seeded, all vectorized."""

    def __init__(self, fx: Effects, w: int, h: int, fps: float, seed: int) -> None:
        self.fx = fx
        self.w, self.h, self.fps = w, h, fps
        self.rng = rng_for(seed, "effects")
        scale = w / 1280.0
        self.noise: list[tuple[np.ndarray, np.ndarray]] = []
        if fx.noise > 0:
            r = rng_for(seed, "noise")
            for _ in range(4):
                n = r.normal(0.0, fx.noise, (h + 16, w + 16, 3)).astype(np.float32)
                pos = np.clip(n, 0, 255).astype(np.uint8)
                neg = np.clip(-n, 0, 255).astype(np.uint8)
                self.noise.append((pos, neg))
        self.rain: list[np.ndarray] = []
        if fx.rain > 0:
            r = rng_for(seed, "rain")
            count = int(fx.rain * 900 * scale * scale) + 1
            for _ in range(6):
                layer = np.zeros((h, w, 3), np.uint8)
                xs = r.uniform(-0.1 * w, w, count)
                ys = r.uniform(-0.1 * h, h, count)
                ln = r.uniform(14, 34, count) * scale
                br = r.integers(25, 70, count)
                for x, y, length, b in zip(xs, ys, ln, br, strict=True):
                    p1 = (int(x), int(y))
                    p2 = (int(x + 0.18 * length), int(y + length))
                    cv2.line(layer, p1, p2, (int(b), int(b), int(b)), 1, cv2.LINE_AA)
                self.rain.append(layer)
        r = rng_for(seed, "shake")
        self.shake_f = r.uniform(0.3, 2.5, 3)
        self.shake_ph = r.uniform(0, 2 * math.pi, (3, 3))
        self.shake_amp = fx.shake_px * scale
        r = rng_for(seed, "drift")
        self.drift_ph = r.uniform(0, 2 * math.pi, 2)

    def shake(self, f: int) -> FloatArray | None:
        """The 2x3 affine of frame f's shake, or None."""
        if self.shake_amp <= 0:
            return None
        t = f / self.fps
        s = np.sin(2 * math.pi * self.shake_f[:, None] * t + self.shake_ph).sum(axis=0) / 3
        jitter = self.rng.normal(0, 0.25, 2)
        dx, dy = self.shake_amp * (s[0] + jitter[0]), self.shake_amp * (s[1] + jitter[1])
        ang = 0.06 * self.shake_amp / max(1.0, self.w / 1280.0) * s[2]
        M = cv2.getRotationMatrix2D((self.w / 2, self.h / 2), float(ang), 1.0)
        M[:, 2] += (dx, dy)
        return np.asarray(M)

    def apply(self, img: np.ndarray, f: int, M: FloatArray | None) -> np.ndarray:
        fx = self.fx
        if self.rain:
            cv2.add(img, self.rain[f % len(self.rain)], dst=img)
        if M is not None:
            # nearest neighbour: a fifth of the cost of bilinear at 1280x720 (the shift is
            # still sub-pixel exact in the truth, which transforms the boxes by M)
            img = cv2.warpAffine(
                img, M, (self.w, self.h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
            )
        if fx.brightness_drift > 0:
            t = f / self.fps
            g = 1 + fx.brightness_drift * (
                0.7 * math.sin(2 * math.pi * t / 23.0 + self.drift_ph[0])
                + 0.3 * math.sin(2 * math.pi * t / 6.1 + self.drift_ph[1])
            )
            img = cv2.convertScaleAbs(img, alpha=g)
        if self.noise:
            i = int(self.rng.integers(len(self.noise)))
            oy, ox = (int(v) for v in self.rng.integers(0, 16, 2))
            pos, neg = self.noise[i]
            cv2.add(img, pos[oy : oy + self.h, ox : ox + self.w], dst=img)
            cv2.subtract(img, neg[oy : oy + self.h, ox : ox + self.w], dst=img)
        return img


class Renderer:
    """Draws the frames of a prepared scenario and the per-frame truth of each."""

    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        sc, cam = prep.scenario, prep.camera
        fx = sc.effects
        self.background = render_background(prep.scene, cam, fx.night, fx.rain, sc.seed)
        self.painter = FramePainter(cam, fx.night)
        self.effects = EffectStack(fx, cam.width, cam.height, sc.fps, sc.seed)
        self.labels = np.zeros((cam.height, cam.width), np.uint16)
        self.scratch = np.zeros((cam.height, cam.width), np.uint8)
        tr = prep.tracks
        self.lanes = lane_index(prep.scene, tr.x, tr.y, tr.heading)
        self.speed_kmh = tr.speed * 3.6
        self.frame_buf = np.empty_like(self.background)

    @property
    def frames(self) -> int:
        return self.prep.tracks.frames

    def render(self, f: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Frame f (BGR uint8) and its truth record."""
        tr, cam, painter = self.prep.tracks, self.prep.camera, self.painter
        img = self.frame_buf
        np.copyto(img, self.background)
        ks = np.nonzero(tr.present[f])[0]
        order: list[int] = []
        if len(ks):
            pts = np.column_stack([tr.x[f, ks], tr.y[f, ks], np.zeros(len(ks))])
            camp = cam.to_camera(pts)
            depth = camp[:, 2]
            u = camp[:, 0] / np.maximum(depth, 1e-3) * cam.fx
            lens = np.array([tr.bodies[k].length for k in ks])
            keep = (depth > -lens) & (depth < 900) & (np.abs(u) < 2.5 * cam.width)
            sel = np.nonzero(keep)[0]
            order = [int(ks[i]) for i in sel[np.argsort(-depth[sel], kind="stable")]]
        night = self.prep.scenario.effects.night
        bodies = [tr.bodies[k] for k in order]
        xs, ys, hs = tr.x[f, order], tr.y[f, order], tr.heading[f, order]
        if night:
            for b, x, y, h in zip(bodies, xs, ys, hs, strict=True):
                if b.cls != "person" and b.cls != "bicycle":
                    painter.beam(img, b, x, y, h)
        else:
            painter.shadows(img, bodies, xs, ys, hs)
        self.labels.fill(0)
        hulls: list[tuple[int, np.ndarray]] = []
        for n, hull in enumerate(painter.draw_all(img, bodies, xs, ys, hs)):
            if hull is not None:
                cv2.fillConvexPoly(self.labels, to_fixed(hull), n + 1, cv2.LINE_8, SHIFT)
                hulls.append((n, hull))
        M = self.effects.shake(f)
        out = self.effects.apply(img, f, M)
        objects = self._truth(f, order, hulls, M)
        rec: dict[str, Any] = {"frame": f, "t": round(f / tr.fps, 6), "objects": objects}
        if M is not None:
            rec["shake"] = np.round(M, 5).tolist()
        return out, rec

    def _truth(
        self, f: int, order: list[int], hulls: list[tuple[int, np.ndarray]], M: FloatArray | None
    ) -> list[dict[str, Any]]:
        tr, cam, scene = self.prep.tracks, self.prep.camera, self.prep.scene
        W, H = cam.width, cam.height
        out: list[dict[str, Any]] = []
        for n, hull in hulls:
            k = order[n]
            x0, y0 = np.floor(hull.min(axis=0)).astype(int)
            x1, y1 = np.ceil(hull.max(axis=0)).astype(int) + 1
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            vis = (self.labels[cy0:cy1, cx0:cx1] == n + 1).view(np.uint8)
            visible = cv2.countNonZero(vis)
            if visible == 0:
                continue
            own_mask = self.scratch[: cy1 - cy0, : cx1 - cx0]
            own_mask.fill(0)
            cv2.fillConvexPoly(own_mask, to_fixed(hull - [cx0, cy0]), 1, cv2.LINE_8, SHIFT)
            own = max(cv2.countNonZero(own_mask), visible)
            total = max(float(cv2.contourArea(hull.astype(np.float32))), float(own))
            bx, by, bw, bh = cv2.boundingRect(vis)
            box = [cx0 + bx, cy0 + by, cx0 + bx + bw, cy0 + by + bh]
            fbox = [float(v) for v in box]
            if M is not None:
                c = np.array(
                    [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]
                )
                c = c @ M[:, :2].T + M[:, 2]
                fbox = [
                    max(0.0, float(c[:, 0].min())),
                    max(0.0, float(c[:, 1].min())),
                    min(float(W), float(c[:, 0].max())),
                    min(float(H), float(c[:, 1].max())),
                ]
                if fbox[2] - fbox[0] < 1 or fbox[3] - fbox[1] < 1:
                    continue
            b = tr.bodies[k]
            lane = int(self.lanes[f, k])
            out.append(
                {
                    "id": b.id,
                    "class": b.cls,
                    "box": [round(v, 1) for v in fbox],
                    "visible_px": visible,
                    "occlusion": round(1.0 - visible / own, 4),
                    "truncation": round(min(1.0, max(0.0, 1.0 - own / total)), 4),
                    "world_m": [round(float(tr.x[f, k]), 3), round(float(tr.y[f, k]), 3)],
                    "speed_kmh": round(float(self.speed_kmh[f, k]), 2),
                    "heading_deg": round(float(tr.heading[f, k]), 2) % 360.0,
                    "lane": scene.lanes[lane].id if lane >= 0 else None,
                }
            )
        out.sort(key=lambda o: int(o["id"]))
        return out

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        for f in range(self.frames):
            yield self.render(f)


class VideoWriter:
    """H.264 (libx264, yuv420p) in MP4 with a CCTV-like GOP: fixed key interval, no B-frames."""

    def __init__(self, path: Path, w: int, h: int, fps: float, crf: int, gop: int) -> None:
        self.container = av.open(str(path), "w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = w, h
        self.stream.pix_fmt = "yuv420p"
        self.gop = gop
        self.stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
            "threads": "1",
        }
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        yuv: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self.frames
        self.frames += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def scenario_record(prep: Prepared, video: str | None = None) -> dict[str, Any]:
    """Everything about a scenario that does not change per frame (NAME.scenario.json)."""
    sc, scene, cam, tr = prep.scenario, prep.scene, prep.camera, prep.tracks
    gop = sc.effects.gop or int(round(2 * sc.fps))
    return {
        "schema": TRUTH_SCHEMA,
        "name": sc.name,
        "description": sc.description,
        "preset": sc.preset,
        "seed": sc.seed,
        "fps": sc.fps,
        "frames": tr.frames,
        "seconds": tr.frames / sc.fps,
        "width": cam.width,
        "height": cam.height,
        "video": {"file": video, "codec": "h264", "crf": sc.effects.crf, "gop": gop, "bframes": 0},
        "camera": cam.to_dict(),
        "lanes": [lane.to_dict() for lane in scene.lanes],
        "carriageways_m": [np.round(p, 3).tolist() for p in scene.carriageways],
        "crossings_m": [np.round(p, 3).tolist() for p in scene.crossings],
        "objects": [
            {
                "id": b.id,
                "class": b.cls,
                "origin": b.origin,
                "size_m": [round(b.length, 3), round(b.width, 3), round(b.height, 3)],
                "colour_bgr": list(b.colour),
                "lane": b.lane,
                "against_lane": b.against,
                "turn_to": b.turn_to,
                "first_s": _first(tr, k),
                "last_s": _last(tr, k),
            }
            for k, b in enumerate(tr.bodies)
        ],
        "incidents": expected_incidents(sc, scene, cam, tr),
        "lines": line_counts(all_lines(sc, scene), tr),
        "truth_params": dataclasses.asdict(sc.truth),
        "effects": dataclasses.asdict(sc.effects),
        "scenario": _jsonable(dataclasses.asdict(sc)),
    }


def _first(tr: Tracks, k: int) -> float | None:
    idx = np.nonzero(tr.present[:, k])[0]
    return round(float(idx[0]) / tr.fps, 3) if len(idx) else None


def _last(tr: Tracks, k: int) -> float | None:
    idx = np.nonzero(tr.present[:, k])[0]
    return round(float(idx[-1]) / tr.fps, 3) if len(idx) else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class Rendered:
    video: Path
    truth: Path
    scenario: Path
    frames: int
    incidents: list[dict[str, Any]]


def render_to_dir(
    scenario: Scenario,
    out_dir: str | Path,
    seconds: float | None = None,
    seed: int | None = None,
    resolution: str | None = None,
) -> Rendered:
    """Writes NAME.mp4, NAME.truth.jsonl (one line per frame) and NAME.scenario.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(scenario, seconds=seconds, seed=seed, resolution=resolution)
    sc, cam = prep.scenario, prep.camera
    name = sc.name
    video, truth, meta = (
        out / f"{name}.mp4",
        out / f"{name}.truth.jsonl",
        out / f"{name}.scenario.json",
    )
    head = scenario_record(prep, video.name)
    renderer = Renderer(prep)
    writer = VideoWriter(video, cam.width, cam.height, sc.fps, sc.effects.crf, head["video"]["gop"])
    try:
        with open(truth, "w") as fh:
            for img, rec in renderer:
                writer.write(img)
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    finally:
        writer.close()
    meta.write_text(json.dumps(head, indent=1) + "\n")
    return Rendered(video, truth, meta, renderer.frames, head["incidents"])
