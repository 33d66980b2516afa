"""Ground truth computed from the scripted motion: lanes, expected incidents, line counts.

Nothing here is typed by hand: every incident and count follows from the tracks that
``motion.simulate`` produced and the thresholds in ``TruthParams`` (docs/scenarios.md
states each rule). ``validate_truth`` checks the files a render wrote.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from smartcity.scenarios.camera import Camera, FloatArray
from smartcity.scenarios.motion import Tracks
from smartcity.scenarios.schema import CLASSES, INCIDENT_TYPES, Scenario, TruthParams
from smartcity.scenarios.world import Scene, point_in_polys

TRUTH_SCHEMA = "smartcity.scenarios.truth/1"


def lane_index(
    scene: Scene, x: FloatArray, y: FloatArray, heading_deg: FloatArray | None = None
) -> np.ndarray:
    """Index of the lane under each position (-1: none), any shape.

    Where lanes overlap (the box of a junction), the lane most nearly parallel to the heading
    (compass degrees) wins, the first one of them without a heading or on a tie.
    """
    out = np.full(x.shape, -1, dtype=np.int64)
    best = np.full(x.shape, -1.0)
    hdir: tuple[FloatArray, FloatArray] | None = None
    if heading_deg is not None:
        h = np.radians(np.asarray(heading_deg, dtype=np.float64))
        hdir = (np.sin(h), np.cos(h))
    for i, lane in enumerate(scene.lanes):
        rx, ry = x - lane.origin[0], y - lane.origin[1]
        s = rx * lane.direction[0] + ry * lane.direction[1]
        lat = rx * lane.normal[0] + ry * lane.normal[1]
        inside = (s >= 0) & (s <= lane.length_m) & (np.abs(lat) <= lane.width_m / 2)
        score: np.ndarray = np.zeros(x.shape)
        if hdir is not None:
            score = np.round(np.abs(hdir[0] * lane.direction[0] + hdir[1] * lane.direction[1]), 6)
        better = inside & (score > best)
        out = np.where(better, i, out)
        best = np.where(better, score, best)
    return out


def in_view(cam: Camera, tracks: Tracks, max_range_m: float) -> np.ndarray:
    """Present, centre (at half height) inside the image, within range: (T, N) bool."""
    h = np.array([b.height / 2 for b in tracks.bodies])
    pts = np.stack([tracks.x, tracks.y, np.broadcast_to(h, tracks.x.shape)], axis=-1)
    uv, z = cam.project(pts)
    dist = np.hypot(tracks.x - cam.x_m, tracks.y - cam.y_m)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < cam.width) & (uv[..., 1] >= 0)
    inside &= uv[..., 1] < cam.height
    return np.asarray(tracks.present & (z > 0.5) & inside & (dist <= max_range_m))


def runs(mask: np.ndarray, bridge: int = 0) -> list[tuple[int, int]]:
    """[start, end) of the true runs of a 1-D mask; gaps up to `bridge` frames are joined."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    out: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if out and s - out[-1][1] <= bridge:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _incident(
    kind: str, ids: list[int], s: int, e: int, fps: float, p: TruthParams, detect: float,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    return {
        "type": kind,
        "object_ids": sorted(int(i) for i in ids),
        "start_s": round(s / fps, 3),
        "end_s": round((e - 1) / fps, 3),
        "detect_after_s": round(detect, 3),
        "tolerance_s": p.tolerance_s,
        **extra,
    }


def expected_incidents(
    scenario: Scenario, scene: Scene, cam: Camera, tracks: Tracks
) -> list[dict[str, Any]]:
    p = scenario.truth
    fps = tracks.fps
    dt = 1.0 / fps
    T, N = tracks.present.shape
    view = in_view(cam, tracks, p.max_range_m)
    lanes = lane_index(scene, tracks.x, tracks.y, tracks.heading)
    speed = tracks.speed
    ids = [b.id for b in tracks.bodies]
    vehicle = np.array([b.cls != "person" for b in tracks.bodies], dtype=bool)
    person = ~vehicle
    out: list[dict[str, Any]] = []
    if N == 0:
        return out
    dirs = np.array([lane.direction for lane in scene.lanes] + [(0.0, 0.0)])
    limits = np.array([lane.speed_limit_kmh for lane in scene.lanes] + [np.inf])
    along = tracks.vx * dirs[lanes, 0] + tracks.vy * dirs[lanes, 1]
    bridge = int(round(fps * 0.5))

    for k in np.nonzero(vehicle)[0]:
        # wrong way: moving against the lane under it for more than wrong_way_min_m
        against = view[:, k] & (lanes[:, k] >= 0) & (along[:, k] < -1.0)
        for s, e in runs(against, bridge):
            dist = np.cumsum(np.where(against[s:e], -along[s:e, k], 0.0)) * dt
            if dist[-1] >= p.wrong_way_min_m:
                det = s + int(np.argmax(dist >= p.wrong_way_min_m))
                out.append(
                    _incident(
                        "wrong_way", [ids[k]], s, e, fps, p, det / fps,
                        lane=scene.lanes[int(lanes[s, k])].id,
                        distance_m=round(float(dist[-1]), 2),
                    )
                )  # fmt: skip
        # stopped vehicle: standing on a lane, not queued behind something, long enough
        free = ~tracks.queued[:, k] | tracks.crashed[:, k]
        still = view[:, k] & (lanes[:, k] >= 0) & (speed[:, k] * 3.6 < p.stopped_max_kmh) & free
        for s, e in runs(still, bridge):
            if (e - s) / fps >= p.stopped_min_s:
                out.append(
                    _incident(
                        "stopped_vehicle", [ids[k]], s, e, fps, p, s / fps + p.stopped_min_s,
                        lane=scene.lanes[int(lanes[s, k])].id,
                        position_m=[round(float(tracks.x[s, k]), 2),
                                    round(float(tracks.y[s, k]), 2)],
                    )
                )  # fmt: skip
        # speeding: above the lane's limit plus the margin for long enough
        fast = view[:, k] & (lanes[:, k] >= 0)
        fast &= speed[:, k] * 3.6 > limits[lanes[:, k]] + p.speeding_margin_kmh
        for s, e in runs(fast, bridge):
            if (e - s) / fps >= p.speeding_min_s:
                out.append(
                    _incident(
                        "speeding", [ids[k]], s, e, fps, p, s / fps + p.speeding_min_s,
                        max_speed_kmh=round(float(speed[s:e, k].max() * 3.6), 1),
                        limit_kmh=float(limits[lanes[s, k]]),
                    )
                )  # fmt: skip

    # congestion: per road and direction, many vehicles in view, their median speed low
    groups: dict[tuple[str, float], list[int]] = {}
    for i, lane in enumerate(scene.lanes):
        groups.setdefault((lane.road, round(lane.heading_deg)), []).append(i)
    for (_road, hdg), members in groups.items():
        on = view & vehicle[None, :] & np.isin(lanes, members)
        n = on.sum(axis=1)
        ranked = np.sort(np.where(on, speed, np.inf), axis=1)
        median = ranked[np.arange(T), np.maximum(n - 1, 0) // 2] * 3.6  # lower median; inf if none
        cond = (n >= p.congestion_min_vehicles) & (median < p.congestion_max_kmh)
        for s, e in runs(cond, bridge):
            if (e - s) / fps >= p.congestion_min_s:
                who = np.nonzero(on[s:e].any(axis=0))[0]
                out.append(
                    _incident(
                        "congestion", [ids[k] for k in who], s, e, fps, p,
                        s / fps + p.congestion_min_s,
                        lanes=[scene.lanes[i].id for i in members], heading_deg=hdg,
                    )
                )  # fmt: skip

    # crowd: at least crowd_min_people within crowd_radius_m of one person
    if person.any():
        pk = np.nonzero(person)[0]
        vis = view[:, pk]
        px, py = tracks.x[:, pk], tracks.y[:, pk]
        d = np.hypot(px[:, :, None] - px[:, None, :], py[:, :, None] - py[:, None, :])
        close = (d <= p.crowd_radius_m) & vis[:, :, None] & vis[:, None, :]
        counts = close.sum(axis=2)
        best = counts.max(axis=1)
        cond = best >= p.crowd_min_people
        for s, e in runs(cond, bridge):
            if (e - s) / fps >= p.crowd_min_s:
                crowd: set[int] = set()
                for f in range(s, e):
                    c = int(np.argmax(counts[f]))
                    crowd.update(int(pk[j]) for j in np.nonzero(close[f, c])[0])
                out.append(
                    _incident(
                        "crowd", [ids[k] for k in crowd], s, e, fps, p, s / fps + p.crowd_min_s,
                        max_people=int(best[s:e].max()),
                    )
                )  # fmt: skip
        # loitering: staying within loiter_radius_m of where a window started
        step = max(1, int(round(fps / 5)))
        need = int(math.ceil(p.loiter_min_s * fps))
        for k in pk:
            ok = view[:, k]
            if ok.sum() < need:
                continue
            spans = np.zeros(T, dtype=bool)
            for i in range(0, T - need + 1, step):
                if not ok[i]:
                    continue
                dd = np.hypot(tracks.x[i:, k] - tracks.x[i, k], tracks.y[i:, k] - tracks.y[i, k])
                bad = (~ok[i:]) | (dd > p.loiter_radius_m)
                j = int(np.argmax(bad)) if bad.any() else T - i
                if j >= need:
                    spans[i : i + j] = True
            for s, e in runs(spans):
                out.append(_incident("loitering", [ids[k]], s, e, fps, p, s / fps + p.loiter_min_s))
        # pedestrian on the carriageway (off the crossings)
        for k in pk:
            pts = np.column_stack([tracks.x[:, k], tracks.y[:, k]])
            on_road = point_in_polys(pts, scene.carriageways)
            if scene.crossings:
                on_road &= ~point_in_polys(pts, scene.crossings)
            cond = view[:, k] & on_road
            for s, e in runs(cond, bridge):
                if (e - s) / fps >= p.on_carriageway_min_s:
                    out.append(
                        _incident(
                            "pedestrian_on_carriageway", [ids[k]], s, e, fps, p,
                            s / fps + p.on_carriageway_min_s,
                        )
                    )  # fmt: skip

    # crash: footprints that touched, seen by the camera
    for f, a, b in tracks.crashes:
        if not (view[f, a] or view[f, b]):
            continue
        both = tracks.present[f:, a] & tracks.present[f:, b]
        e = f + (int(np.argmin(both)) if not both.all() else len(both))
        out.append(
            _incident(
                "crash", [ids[a], ids[b]], f, e, fps, p, f / fps,
                position_m=[
                    round(float((tracks.x[f, a] + tracks.x[f, b]) / 2), 2),
                    round(float((tracks.y[f, a] + tracks.y[f, b]) / 2), 2),
                ],
            )
        )  # fmt: skip
    out.sort(key=lambda i: (i["start_s"], i["type"], i["object_ids"]))
    return out


def all_lines(
    scenario: Scenario, scene: Scene
) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    lines = dict(scene.lines)
    lines.update(dict(scenario.lines))
    return lines


def line_counts(
    lines: dict[str, tuple[tuple[float, float], tuple[float, float]]], tracks: Tracks
) -> dict[str, Any]:
    """Crossings of each counting line per class and direction.

    ``forward``: from the right of a->b to its left; ``backward``: the other way.
    """
    out: dict[str, Any] = {}
    both = tracks.present[:-1] & tracks.present[1:]
    for name, (a, b) in lines.items():
        dx, dy = b[0] - a[0], b[1] - a[1]
        side = dx * (tracks.y - a[1]) - dy * (tracks.x - a[0])
        s0, s1 = side[:-1], side[1:]
        cross = both & (((s0 < 0) & (s1 >= 0)) | ((s0 >= 0) & (s1 < 0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.where(cross, s0 / np.where(cross, s0 - s1, 1.0), 0.0)
        px = tracks.x[:-1] + k * (tracks.x[1:] - tracks.x[:-1])
        py = tracks.y[:-1] + k * (tracks.y[1:] - tracks.y[:-1])
        u = ((px - a[0]) * dx + (py - a[1]) * dy) / (dx * dx + dy * dy)
        cross &= (u >= 0) & (u <= 1)
        counts: dict[str, dict[str, int]] = {
            "forward": dict.fromkeys(CLASSES, 0),
            "backward": dict.fromkeys(CLASSES, 0),
        }
        events = []
        for f, n in zip(*np.nonzero(cross), strict=True):
            body = tracks.bodies[int(n)]
            d = "forward" if s1[f, n] >= 0 else "backward"
            counts[d][body.cls] += 1
            events.append(
                {"id": body.id, "class": body.cls, "t": round((f + 1) / tracks.fps, 3), "dir": d}
            )
        events.sort(key=lambda e: (e["t"], e["id"]))
        out[name] = {"a": list(a), "b": list(b), **counts, "events": events}
    return out


# --------------------------------------------------------------------------- validation


class TruthError(ValueError):
    pass


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise TruthError(msg)


def validate_truth(scenario_json: Path, truth_jsonl: Path) -> dict[str, Any]:
    """Checks a rendered scenario's files against the documented format; returns the header."""
    head = json.loads(Path(scenario_json).read_text())
    _need(head.get("schema") == TRUTH_SCHEMA, "scenario.json: schema")
    for key in ("name", "fps", "frames", "width", "height", "camera", "lanes", "lines"):
        _need(key in head, f"scenario.json: missing {key}")
    cam = head["camera"]
    for key in ("K", "R", "t", "ground_to_image", "image_to_ground"):
        _need(np.asarray(cam[key]).shape in ((3, 3), (3,)), f"camera.{key}: shape")
    G, Gi = np.asarray(cam["ground_to_image"]), np.asarray(cam["image_to_ground"])
    _need(bool(np.allclose(G @ Gi / (G @ Gi)[2, 2], np.eye(3), atol=1e-6)), "homographies")
    for inc in head["incidents"]:
        _need(inc["type"] in INCIDENT_TYPES, f"incident type {inc['type']}")
        _need(0 <= inc["start_s"] <= inc["end_s"], "incident times")
        _need(len(inc["object_ids"]) >= 1, "incident objects")
    for name, line in head["lines"].items():
        for d in ("forward", "backward"):
            _need(set(line[d]) == set(CLASSES), f"lines.{name}.{d}: classes")
    W, H = head["width"], head["height"]
    n = 0
    with open(truth_jsonl) as fh:
        for n, raw in enumerate(fh, start=1):
            rec = json.loads(raw)
            _need(rec["frame"] == n - 1, f"frame {n - 1}: numbering")
            _need(abs(rec["t"] - (n - 1) / head["fps"]) < 1e-6, f"frame {n - 1}: t")
            for o in rec["objects"]:
                _need(o["class"] in CLASSES, f"frame {n - 1}: class")
                x0, y0, x1, y1 = o["box"]
                _need(0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, f"frame {n - 1}: box {o['box']}")
                _need(0.0 <= o["occlusion"] <= 1.0, f"frame {n - 1}: occlusion")
                _need(0.0 <= o["truncation"] <= 1.0, f"frame {n - 1}: truncation")
                _need(len(o["world_m"]) == 2 and o["speed_kmh"] >= 0, f"frame {n - 1}: motion")
                _need(0 <= o["heading_deg"] < 360, f"frame {n - 1}: heading")
    _need(n == head["frames"], f"truth has {n} frames, scenario.json says {head['frames']}")
    return dict(head)
