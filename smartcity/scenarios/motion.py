"""Motion by script: every object's position, velocity and state at every frame.

Objects on a lane drive along an axis (the lane, reversed for ``against_lane``; for ``turn_to``
the lane, an arc and the crossing lane) with a lateral offset that lane changes move smoothly;
their speed follows the script through the Intelligent Driver Model, so they queue behind
whatever stands or drives ahead of them in their corridor (vehicles, people on the road,
``holds``). Objects on a path (people, mostly) walk from point to point at their speed and wait
where the script says. Vehicles whose footprints touch crash: both stop where they are for the
rest of the scene.

All randomness comes from generators seeded by (scenario seed, purpose), so the same seed
gives the same motion bit for bit.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from smartcity.scenarios.camera import FloatArray
from smartcity.scenarios.schema import Crowd, Flow, ObjectSpec, Scenario
from smartcity.scenarios.world import Lane, Scene, Turn, turn_geometry

BGR = tuple[int, int, int]

# (length, width, height) ranges in metres
DIMENSIONS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "person": ((0.35, 0.45), (0.45, 0.55), (1.55, 1.92)),
    "bicycle": ((1.7, 1.8), (0.55, 0.65), (1.65, 1.85)),
    "motorcycle": ((2.0, 2.2), (0.75, 0.85), (1.45, 1.6)),
    "car": ((4.0, 4.9), (1.72, 1.9), (1.42, 1.65)),
    "bus": ((10.5, 12.5), (2.5, 2.55), (3.0, 3.3)),
    "truck": ((7.0, 11.0), (2.45, 2.55), (3.2, 3.9)),
}
VEHICLE_PALETTE: list[tuple[BGR, float]] = [
    ((235, 235, 232), 0.24),  # white
    ((35, 35, 38), 0.2),  # black
    ((175, 175, 170), 0.18),  # silver
    ((105, 105, 108), 0.12),  # grey
    ((40, 40, 170), 0.07),  # red
    ((140, 70, 30), 0.07),  # blue
    ((50, 80, 40), 0.03),  # dark green
    ((150, 180, 200), 0.04),  # beige
    ((20, 180, 230), 0.05),  # yellow
]
IDM = {  # a_max (m/s^2), time headway T (s)
    "bicycle": (1.0, 1.2),
    "motorcycle": (2.5, 1.0),
    "car": (1.8, 1.3),
    "bus": (1.0, 1.6),
    "truck": (0.9, 1.7),
}
IDM_B = 2.5  # comfortable deceleration (m/s^2)
IDM_S0 = 2.0  # jam distance (m)
MAX_DECEL = 9.0
TURN_BRAKE = 2.0  # deceleration (m/s^2) that sets where braking for a turn starts


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(purpose.encode())])


@dataclass
class Body:
    """What does not change over time: id, class, size, colours, how it moves."""

    id: int
    cls: str
    length: float
    width: float
    height: float
    colour: BGR
    colour2: BGR
    lane: str | None = None  # the lane it was scripted on (None: a path)
    against: bool = False
    ignore_obstacles: bool = False
    origin: str = "script"  # script | traffic | crowd
    turn_to: str | None = None  # the lane it turns onto


@dataclass
class Tracks:
    """Per frame (T) and object (N): presence, position (m), velocity (m/s), heading, state."""

    fps: float
    bodies: list[Body]
    present: np.ndarray
    x: FloatArray
    y: FloatArray
    vx: FloatArray
    vy: FloatArray
    heading: FloatArray
    queued: np.ndarray
    crashed: np.ndarray
    crashes: list[tuple[int, int, int]] = field(default_factory=list)  # (frame, i, j)

    @property
    def frames(self) -> int:
        return int(self.present.shape[0])

    @property
    def speed(self) -> FloatArray:
        return np.asarray(np.hypot(self.vx, self.vy))


def _colours(cls: str, rng: np.random.Generator) -> tuple[BGR, BGR]:
    if cls == "person" or cls in ("bicycle", "motorcycle"):
        shirt = tuple(int(v) for v in rng.integers(30, 230, 3))
        trousers = tuple(int(v) for v in rng.integers(20, 120, 3))
        return shirt, trousers  # type: ignore[return-value]
    cols = [c for c, _ in VEHICLE_PALETTE]
    w = np.array([p for _, p in VEHICLE_PALETTE])
    c = cols[int(rng.choice(len(cols), p=w / w.sum()))]
    if cls == "bus":
        c = [(40, 120, 210), (60, 160, 60), (210, 210, 205), (40, 40, 180)][int(rng.integers(4))]
    second = tuple(int(v) for v in rng.integers(150, 240, 3)) if cls == "truck" else c
    return c, second  # type: ignore[return-value]


def _body(spec_id: int, cls: str, rng: np.random.Generator, **kw: object) -> Body:
    (l0, l1), (w0, w1), (h0, h1) = DIMENSIONS[cls]
    c1, c2 = _colours(cls, rng)
    return Body(
        id=spec_id,
        cls=cls,
        length=float(rng.uniform(l0, l1)),
        width=float(rng.uniform(w0, w1)),
        height=float(rng.uniform(h0, h1)),
        colour=c1,
        colour2=c2,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class _LaneMover:
    k: int  # index into bodies
    enter_s: float
    org: FloatArray
    D: FloatArray
    N: FloatArray
    axis_len: float
    start_m: float
    v0: float  # initial target speed (m/s)
    speeds: list[tuple[float, float, float]]  # (at_s, target m/s, decel) ; target < 0: keep
    shifts: list[tuple[float, float, float]]  # (at_s, duration, lateral target)
    turn: Turn | None = None


@dataclass
class _PathMover:
    k: int
    times: FloatArray  # key times
    pts: FloatArray  # key points (K, 2)
    end_s: float  # after this the object is gone (inf: stays)


def _axis(lane: Lane, against: bool) -> tuple[FloatArray, FloatArray]:
    if against:
        org = np.array(lane.point(lane.length_m))
        D = -np.array(lane.direction)
    else:
        org = np.array(lane.origin)
        D = np.array(lane.direction)
    return org, D


def _lane_mover(
    k: int, spec: ObjectSpec, body: Body, scene: Scene, lane_id: str, against: bool
) -> _LaneMover:
    lane = scene.lane(lane_id)
    org, D = _axis(lane, against)
    N = np.array([-D[1], D[0]])
    speeds: list[tuple[float, float, float]] = []
    shifts: list[tuple[float, float, float]] = []
    for a in spec.actions:
        if a.change_lane is not None:
            tgt = scene.lane(a.change_lane)
            c = np.array(tgt.origin)
            shifts.append((a.at_s, a.duration_s, float((c - org) @ N)))
        elif a.stop:
            speeds.append((a.at_s, 0.0, a.decel_mps2))
        elif a.speed_kmh is not None:
            speeds.append((a.at_s, a.speed_kmh / 3.6, a.decel_mps2))
    start = spec.start_m if spec.start_m is not None else 0.0
    turn = turn_geometry(scene, lane.id, str(spec.turn_to)) if spec.turn_to is not None else None
    return _LaneMover(
        k,
        spec.enter_s,
        org,
        D,
        N,
        turn.length_m if turn else lane.length_m,
        start,
        (spec.speed_kmh or 0) / 3.6,
        speeds,
        shifts,
        turn,
    )


def _path_mover(
    k: int, pts: list[tuple[float, float, float]], speed_ms: float, enter_s: float, leave: bool
) -> _PathMover:
    times = [enter_s]
    keys = [pts[0][:2]]
    t = enter_s
    if pts[0][2] > 0:
        t += pts[0][2]
        times.append(t)
        keys.append(pts[0][:2])
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        d = math.hypot(b[0] - a[0], b[1] - a[1])
        t += d / max(speed_ms, 1e-3)
        times.append(t)
        keys.append(b[:2])
        if b[2] > 0:
            t += b[2]
            times.append(t)
            keys.append(b[:2])
    return _PathMover(
        k, np.array(times), np.array(keys, dtype=np.float64), t if leave else math.inf
    )


def _expand_wander(spec: ObjectSpec, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    assert spec.wander_centre is not None
    cx, cy = spec.wander_centre
    r = spec.wander_radius_m
    speed = (spec.speed_kmh or 4.0) / 3.6
    pts: list[tuple[float, float, float]] = []
    t = 0.0
    x, y = cx, cy
    while t < spec.wander_for_s:
        wait = float(rng.uniform(2.0, 8.0))
        pts.append((x, y, wait))
        a, rr = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.uniform(0, 1))
        nx, ny = cx + rr * math.cos(a), cy + rr * math.sin(a)
        t += wait + math.hypot(nx - x, ny - y) / speed
        x, y = nx, ny
    pts.append((x, y, 0.0))
    return pts


def _expand_crowd(
    c: Crowd, rng: np.random.Generator
) -> list[tuple[float, list[tuple[float, float, float]], float]]:
    """Each member: (enter_s, path, speed m/s); they gather, stand, then disperse."""
    spots: list[tuple[float, float]] = []
    while len(spots) < c.count:
        a, rr = rng.uniform(0, 2 * math.pi), c.radius_m * math.sqrt(rng.uniform(0, 1))
        p = (c.centre[0] + rr * math.cos(a), c.centre[1] + rr * math.sin(a))
        if all(math.hypot(p[0] - q[0], p[1] - q[1]) > 0.6 for q in spots) or len(spots) > 500:
            spots.append(p)
    out = []
    for sx, sy in spots:
        a = rng.uniform(0, 2 * math.pi)
        fx, fy = (
            c.centre[0] + c.from_radius_m * math.cos(a),
            c.centre[1] + c.from_radius_m * (math.sin(a)),
        )
        enter = c.enter_s + float(rng.uniform(0, 0.3)) * max(0.0, c.gather_s - c.enter_s)
        dist = math.hypot(sx - fx, sy - fy)
        arrive = c.gather_s - float(rng.uniform(0, 2.0))
        speed = min(max(dist / max(arrive - enter, 0.1), 0.9), 2.0)
        t_arrive = enter + dist / speed
        wait = max(0.0, c.disperse_s + float(rng.uniform(0, 2.0)) - t_arrive)
        b = rng.uniform(0, 2 * math.pi)
        ex = c.centre[0] + (c.from_radius_m + 10) * math.cos(b)
        ey = c.centre[1] + (c.from_radius_m + 10) * math.sin(b)
        out.append((enter, [(fx, fy, 0.0), (sx, sy, wait), (ex, ey, 0.0)], speed))
    return out


def _flow_arrivals(
    f: Flow, idx: int, seconds: float, seed: int
) -> list[tuple[float, str, str, float]]:
    """(time, lane, class, speed m/s) for each vehicle of a traffic flow, per lane Poisson."""
    rng = rng_for(seed, f"traffic{idx}")
    names = [c for c, _ in f.classes]
    w = np.array([p for _, p in f.classes])
    out = []
    rate = f.per_minute / 60.0
    for lane in f.lanes:
        if rate <= 0:
            continue
        t = f.from_s + float(rng.exponential(1.0 / rate)) * 0.5
        while t < min(seconds, f.to_s):
            cls = names[int(rng.choice(len(names), p=w / w.sum()))]
            v = float(rng.uniform(*f.speed_kmh)) / 3.6
            if cls in ("bus", "truck"):
                v *= 0.9
            if cls == "bicycle":
                v = min(v, 18 / 3.6)
            out.append((t, str(lane), cls, v))
            t += max(1.2, float(rng.exponential(1.0 / rate)))
    out.sort(key=lambda a: (a[0], a[1]))
    return out


def _smooth(u: FloatArray) -> FloatArray:
    u = np.clip(u, 0.0, 1.0)
    return np.asarray(u * u * (3 - 2 * u))


def _rect_overlap(
    p1: FloatArray, d1: FloatArray, l1: float, w1: float, p2: FloatArray, d2: FloatArray, l2: float,
    w2: float,
) -> bool:  # fmt: skip
    """Separating-axis test of two oriented rectangles (centre, unit direction, length, width)."""
    axes = [d1, np.array([-d1[1], d1[0]]), d2, np.array([-d2[1], d2[0]])]
    c = p2 - p1
    for a in axes:
        r1 = abs(d1 @ a) * l1 / 2 + abs(d1[1] * a[0] - d1[0] * a[1]) * w1 / 2
        r2 = abs(d2 @ a) * l2 / 2 + abs(d2[1] * a[0] - d2[0] * a[1]) * w2 / 2
        if abs(c @ a) > r1 + r2:
            return False
    return True


def simulate(scenario: Scenario, scene: Scene, seconds: float | None = None) -> Tracks:
    """Runs the script: every object's state at every frame of the scene."""
    seconds = scenario.seconds if seconds is None else seconds
    fps = scenario.fps
    T = max(1, int(round(seconds * fps)))
    dt = 1.0 / fps
    seed = scenario.seed
    body_rng = rng_for(seed, "bodies")
    bodies: list[Body] = []
    lane_movers: list[_LaneMover] = []
    path_movers: list[_PathMover] = []
    used = {o.id for o in scenario.objects if o.id is not None}
    next_id = [1]

    def new_id() -> int:
        while next_id[0] in used:
            next_id[0] += 1
        used.add(next_id[0])
        return next_id[0]

    for spec in scenario.objects:
        oid = spec.id if spec.id is not None else new_id()
        k = len(bodies)
        body = _body(
            oid,
            spec.cls,
            body_rng,
            lane=str(spec.lane) if spec.lane is not None else None,
            against=spec.against_lane,
            ignore_obstacles=spec.ignore_obstacles,
            turn_to=str(spec.turn_to) if spec.turn_to is not None else None,
        )
        if spec.colour is not None:
            body.colour = spec.colour
            if spec.cls not in ("person", "bicycle", "motorcycle", "truck"):
                body.colour2 = spec.colour
        bodies.append(body)
        if spec.lane is not None:
            lane_movers.append(_lane_mover(k, spec, body, scene, str(spec.lane), spec.against_lane))
        else:
            pts = list(spec.path) if spec.path else _expand_wander(spec, rng_for(seed, f"w{oid}"))
            leave = spec.leave_at_end or bool(spec.wander_centre)
            path_movers.append(
                _path_mover(k, pts, (spec.speed_kmh or 5) / 3.6, spec.enter_s, leave)
            )
    for ci, crowd in enumerate(scenario.crowds):
        for enter, pts, speed in _expand_crowd(crowd, rng_for(seed, f"crowd{ci}")):
            k = len(bodies)
            bodies.append(_body(new_id(), "person", body_rng, origin="crowd"))
            path_movers.append(_path_mover(k, pts, speed, enter, True))
    for fi, flow in enumerate(scenario.traffic):
        for t0, lane_id, cls, v_ms in _flow_arrivals(flow, fi, seconds, seed):
            k = len(bodies)
            bodies.append(_body(new_id(), cls, body_rng, lane=lane_id, origin="traffic"))
            spec = ObjectSpec(cls=cls, enter_s=t0, speed_kmh=v_ms * 3.6, lane=lane_id)
            lane_movers.append(_lane_mover(k, spec, bodies[k], scene, lane_id, False))

    n = len(bodies)
    present = np.zeros((T, n), dtype=bool)
    X = np.zeros((T, n))
    Y = np.zeros((T, n))
    VX = np.zeros((T, n))
    VY = np.zeros((T, n))
    queued = np.zeros((T, n), dtype=bool)
    crashed = np.zeros((T, n), dtype=bool)
    crashes: list[tuple[int, int, int]] = []
    times = np.arange(T) * dt

    # paths do not depend on anything else: all frames at once
    for pm in path_movers:
        live = (times >= pm.times[0]) & (times < pm.end_s)
        present[:, pm.k] = live
        X[:, pm.k] = np.interp(times, pm.times, pm.pts[:, 0])
        Y[:, pm.k] = np.interp(times, pm.times, pm.pts[:, 1])
        seg = np.clip(np.searchsorted(pm.times, times, side="right") - 1, 0, len(pm.times) - 2)
        if len(pm.times) > 1:
            dtk = np.diff(pm.times)
            dp = np.diff(pm.pts, axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                vel = np.where(dtk[:, None] > 0, dp / np.maximum(dtk, 1e-9)[:, None], 0.0)
            inside = (times >= pm.times[0]) & (times < pm.times[-1])
            VX[:, pm.k] = np.where(inside, vel[seg, 0], 0.0)
            VY[:, pm.k] = np.where(inside, vel[seg, 1], 0.0)

    m = len(lane_movers)
    s = np.array([lm.start_m for lm in lane_movers])
    v = np.zeros(m)
    lat = np.zeros(m)
    lat_frozen = np.full(m, np.nan)
    state = np.zeros(m, dtype=np.int8)  # 0 waiting, 1 driving, 2 gone
    is_crashed = np.zeros(m, dtype=bool)
    ks = np.array([lm.k for lm in lane_movers], dtype=np.int64)
    org = np.array([lm.org for lm in lane_movers]).reshape(m, 2)
    D = np.array([lm.D for lm in lane_movers]).reshape(m, 2)
    Nn = np.stack([-D[:, 1], D[:, 0]], axis=1) if m else np.zeros((0, 2))
    L = np.array([bodies[k].length for k in ks])
    W = np.array([bodies[k].width for k in ks])
    amax = np.array([IDM[bodies[k].cls][0] for k in ks])
    headway = np.array([IDM[bodies[k].cls][1] for k in ks])
    ignore = np.array([bodies[k].ignore_obstacles for k in ks], dtype=bool)
    all_len = np.array([b.length for b in bodies])
    all_wid = np.array([b.width for b in bodies])
    holds = [(scene.lane(h.lane), h) for h in scenario.holds]
    hold_lane_of = [(lm_lane(bodies[lm.k]), bodies[lm.k].against) for lm in lane_movers]
    # a turning vehicle obeys holds on its first lane before the turn only
    hold_until = [lm.turn.s_start if lm.turn else math.inf for lm in lane_movers]
    turners = [(i, lm.turn) for i, lm in enumerate(lane_movers) if lm.turn is not None]
    D0 = D.copy()
    slowing = np.zeros(m, dtype=bool)  # braking for a turn (until the end of the arc)

    def positions() -> FloatArray:
        """Where every lane mover is now; a turning one's direction follows its path."""
        for i, turn in turners:
            p, d = turn.pose(float(s[i]))
            org[i], D[i], Nn[i] = p - s[i] * d, d, (-d[1], d[0])
        return np.asarray(org + s[:, None] * D + lat[:, None] * Nn)

    for f in range(T):
        t = times[f]
        # targets and lateral offsets at time t
        v0 = np.empty(m)
        decel = np.full(m, 3.0)
        latv_arr = np.zeros(m)
        for i, lm in enumerate(lane_movers):
            tgt, dc = lm.v0, 3.0
            for at, sp, d in lm.speeds:
                if at <= t:
                    tgt, dc = sp, d
            turn = lm.turn
            if turn is not None and s[i] < turn.s_start + turn.arc_m:
                # slow down to the turning speed in time (at 3 m/s^2, started as if at
                # TURN_BRAKE), keep to it on the arc
                vt = turn.speed_ms
                brake = max(0.0, v[i] ** 2 - vt**2) / (2 * TURN_BRAKE) + 3.0
                slowing[i] |= bool(s[i] >= turn.s_start - brake)
                if slowing[i]:
                    tgt = min(tgt, vt)
            v0[i] = tgt
            decel[i] = dc
            off = 0.0
            latv = 0.0
            for at, dur, target in lm.shifts:
                if at <= t:
                    u = (t - at) / dur
                    su = float(_smooth(np.array(u)))
                    new = off + (target - off) * su
                    if 0 < u < 1:
                        latv = (target - off) * 6 * u * (1 - u) / dur
                    off = new
            if not np.isnan(lat_frozen[i]):
                off, latv = lat_frozen[i], 0.0
            lat[i] = off
            latv_arr[i] = latv
        # obstacles: everything present now (lane objects at their last state, path objects)
        P = positions()
        for i, lm in enumerate(lane_movers):
            if state[i] == 0 and t >= lm.enter_s:
                state[i] = 3  # wants to enter
        obs_idx = [lm.k for i, lm in enumerate(lane_movers) if state[i] == 1]
        obs_pos = [P[i] for i in range(m) if state[i] == 1]
        obs_vel = [v[i] * D[i] for i in range(m) if state[i] == 1]
        obs_dir = [D[i] for i in range(m) if state[i] == 1]
        for pm in path_movers:
            if present[f, pm.k]:
                obs_idx.append(pm.k)
                obs_pos.append(np.array([X[f, pm.k], Y[f, pm.k]]))
                vel = np.array([VX[f, pm.k], VY[f, pm.k]])
                obs_vel.append(vel)
                sp = float(np.hypot(*vel))
                obs_dir.append(vel / sp if sp > 1e-6 else np.array([0.0, 1.0]))
        Qi = np.array(obs_idx, dtype=np.int64)
        Q = np.array(obs_pos).reshape(-1, 2)
        QV = np.array(obs_vel).reshape(-1, 2)
        QD = np.array(obs_dir).reshape(-1, 2)
        hl_q = all_len[Qi] / 2 if len(Qi) else np.zeros(0)
        hw_q = all_wid[Qi] / 2 if len(Qi) else np.zeros(0)
        # entries: wait until the start of the axis is free
        for i, lm in enumerate(lane_movers):
            if state[i] != 3:
                continue
            v_in = lm.v0
            if len(Q):
                rel = Q - P[i]
                ahead = rel @ D[i]
                side = np.abs(rel @ Nn[i])
                corridor = side < W[i] / 2 + hw_q + 0.3
                blocked = (np.abs(ahead) < L[i] / 2 + hl_q + IDM_S0) & corridor
                if bool(blocked.any()) and not ignore[i]:
                    continue
                # enter no faster than allows stopping behind whatever is ahead
                lead = corridor & (ahead > 0)
                if bool(lead.any()) and not ignore[i]:
                    gaps = ahead[lead] - L[i] / 2 - hl_q[lead] - IDM_S0
                    lv = np.maximum(QV[lead] @ D[i], 0.0)
                    v_in = min(v_in, float(np.min(lv + np.sqrt(2 * IDM_B * np.maximum(gaps, 0)))))
            state[i] = 1
            v[i] = v_in
        active = state == 1
        idx = np.nonzero(active)[0]
        if len(idx):
            gap = np.full(len(idx), np.inf)
            lead_v = np.zeros(len(idx))
            if len(Q):
                Pi, Di, Ni = P[idx], D[idx], Nn[idx]
                rel = Q[None, :, :] - Pi[:, None, :]
                ahead = np.einsum("ijk,ik->ij", rel, Di)
                side = np.abs(np.einsum("ijk,ik->ij", rel, Ni))
                along_q = np.abs(QD @ Di.T).T  # (n_i, n_q)
                across_q = np.abs(QD @ Ni.T).T
                ext = along_q * hl_q[None, :] + across_q * hw_q[None, :]
                wid = along_q * hw_q[None, :] + across_q * hl_q[None, :]
                vq = np.einsum("jk,ik->ij", QV, Di)
                cand = (ahead > 0) & (side < W[idx, None] / 2 + wid + 0.3) & (vq > -0.5)
                cand &= Qi[None, :] != ks[idx, None]
                g = np.where(cand, ahead - L[idx, None] / 2 - ext, np.inf)
                j = np.argmin(g, axis=1)
                gap = g[np.arange(len(idx)), j]
                lead_v = np.where(np.isfinite(gap), vq[np.arange(len(idx)), j], 0.0)
            for hlane, h in holds:
                if not h.from_s <= t < h.to_s:
                    continue
                for r, ii in enumerate(idx.tolist()):
                    if hold_lane_of[ii] != (hlane.id, False) or h.at_m > hold_until[ii]:
                        continue
                    hg = h.at_m - s[ii] - L[ii] / 2
                    if 0 < hg + L[ii] / 2 and hg < gap[r]:
                        gap[r] = max(hg, 0.1)
                        lead_v[r] = 0.0
            gap = np.where(ignore[idx], np.inf, gap)
            vi = v[idx]
            free = np.where(
                v0[idx] > 0.05,
                amax[idx] * (1 - (vi / np.maximum(v0[idx], 0.05)) ** 4),
                np.where(vi > 0, -decel[idx], 0.0),
            )
            free = np.maximum(free, -decel[idx])
            dv = vi - lead_v
            sstar = IDM_S0 + np.maximum(
                0.0, vi * headway[idx] + vi * dv / (2 * np.sqrt(amax[idx] * IDM_B))
            )
            g_safe = np.maximum(gap, 0.1)
            inter = np.where(np.isfinite(gap), amax[idx] * (sstar / g_safe) ** 2, 0.0)
            acc = np.clip(free - inter, -MAX_DECEL, amax[idx])
            newv = np.maximum(0.0, vi + acc * dt)
            newv = np.where(is_crashed[idx], 0.0, newv)
            queued[f, ks[idx]] = np.isfinite(gap) & (gap < IDM_S0 + vi * headway[idx] + 8.0)
            s[idx] += (vi + newv) / 2 * dt
            v[idx] = newv
        P = positions()
        # crashes between vehicles now on the road
        live_k = [lm.k for i, lm in enumerate(lane_movers) if state[i] == 1]
        if len(live_k) > 1:
            li = [i for i in range(m) if state[i] == 1]
            Pl = P[li]
            dist = np.hypot(*(Pl[:, None, :] - Pl[None, :, :]).transpose(2, 0, 1))
            reach = (L[li][:, None] + L[li][None, :]) / 2
            near = np.argwhere(np.triu(dist < reach, 1))
            for a, b in near:
                ia, ib = li[a], li[b]
                if is_crashed[ia] and is_crashed[ib]:
                    continue
                da = _unit(D[ia] * max(v[ia], 0.1) + Nn[ia] * latv_arr[ia])
                db = _unit(D[ib] * max(v[ib], 0.1) + Nn[ib] * latv_arr[ib])
                if _rect_overlap(P[ia], da, L[ia], W[ia], P[ib], db, L[ib], W[ib]):
                    for q in (ia, ib):
                        is_crashed[q] = True
                        v[q] = 0.0
                        lat_frozen[q] = lat[q]
                    crashes.append((f, int(ks[ia]), int(ks[ib])))
        for i, lm in enumerate(lane_movers):
            if state[i] == 1 and s[i] > lm.axis_len + L[i] / 2 + 5.0:
                state[i] = 2
            if state[i] == 1:
                k = lm.k
                present[f, k] = True
                crashed[f, k] = is_crashed[i]
                X[f, k], Y[f, k] = P[i]
                lv = 0.0 if is_crashed[i] else latv_arr[i]
                VX[f, k], VY[f, k] = v[i] * D[i] + lv * Nn[i]

    heading = _headings(present, VX, VY, lane_movers, path_movers, D0)
    return Tracks(fps, bodies, present, X, Y, VX, VY, heading, queued, crashed, crashes)


def lm_lane(body: Body) -> str:
    return body.lane or ""


def _unit(d: FloatArray) -> FloatArray:
    n = float(np.hypot(*d))
    return d / n if n > 1e-9 else d


def _headings(
    present: np.ndarray,
    VX: FloatArray,
    VY: FloatArray,
    lane_movers: list[_LaneMover],
    path_movers: list[_PathMover],
    D: FloatArray,
) -> FloatArray:
    """Compass heading (deg) from the velocity; held while standing still."""
    T, n = present.shape
    H = np.zeros((T, n))
    init = np.zeros(n)
    for i, lm in enumerate(lane_movers):
        init[lm.k] = math.degrees(math.atan2(D[i][0], D[i][1]))
    for pm in path_movers:
        d = np.diff(pm.pts, axis=0)
        mv = np.nonzero(np.hypot(d[:, 0], d[:, 1]) > 1e-6)[0]
        if len(mv):
            init[pm.k] = math.degrees(math.atan2(d[mv[0], 0], d[mv[0], 1]))
    moving = np.hypot(VX, VY) > 0.05
    raw = np.degrees(np.arctan2(VX, VY))
    cur = init.copy()
    for f in range(T):
        cur = np.where(moving[f], raw[f], cur)
        H[f] = cur
    return np.asarray(H % 360.0)
