"""Hotspots: imported crash records and the appliance's own incidents, per grid cell or road
segment, ranked by a risk score with a trend, as a GeoJSON FeatureCollection.

    fc = hotspots(store, since=t0, until=t1, cell="grid", cell_m=250)
    fc["features"][0]["properties"]["score"]

Risk score of a cell = sum over its events of the event's weight: a crash record weighs by its
severity (`CRASH_WEIGHTS`, the Indonesian accident-equivalent numbers), an incident by its type
(`INCIDENT_WEIGHTS`). The trend compares the event rate after `trend_split` (default: the middle
of the period) with the rate before it, with a binomial test on the counts. docs/roadsafety.md
explains the weights, the grid and the trend.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from smartcity.store.crashes import CRASH_SEVERITIES
from smartcity.store.errors import InvalidInputError
from smartcity.store.repositories import _aware

if TYPE_CHECKING:
    from smartcity.store.store import Store

#: Weight of one imported crash by its severity: the accident-equivalent numbers (angka ekivalen
#: kecelakaan, AEK = 12 MD + 3 LB + 3 LR + 1 K) of the Indonesian guideline for accident-prone
#: locations (Pd T-09-2004-B), which Indonesian road engineers already rank black spots by.
CRASH_WEIGHTS: Mapping[str, float] = {
    "fatal": 12.0,
    "serious": 3.0,
    "minor": 3.0,
    "damage_only": 1.0,
}
#: Weight of one appliance incident by its type (types not listed are not read; add one, e.g. a
#: future near-miss rule's type, by giving it a weight). docs/roadsafety.md gives the reasons.
INCIDENT_WEIGHTS: Mapping[str, float] = {
    "crash": 3.0,
    "near_miss": 1.0,
    "wrong_way": 0.5,
    "pedestrian_on_carriageway": 0.1,
    "stopped_vehicle": 0.1,
    "speeding": 0.02,
}
#: Incident states read: a dismissed incident was judged a false alarm by an operator.
COUNTED_STATES = ("open", "acknowledged", "resolved")

#: Mean Earth radius (IUGG), metres, and the length of one degree of latitude on that sphere.
EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0
CELL_M_RANGE = (25.0, 50_000.0)
MAX_LIMIT = 1000
#: Above this many events a cell's binomial test uses the normal approximation.
_EXACT_BINOMIAL = 2000


@dataclass(frozen=True, slots=True)
class Weights:
    """The risk score's weights. Entries given override the defaults; a weight of 0 leaves a
    severity or incident type out."""

    crashes: Mapping[str, float] = field(default_factory=lambda: dict(CRASH_WEIGHTS))
    incidents: Mapping[str, float] = field(default_factory=lambda: dict(INCIDENT_WEIGHTS))

    @classmethod
    def of(cls, value: Weights | Mapping[str, Mapping[str, float]] | None) -> Weights:
        """Defaults overridden by `value` ({"crashes": {...}, "incidents": {...}}), checked."""
        if value is None:
            return cls()
        if isinstance(value, Weights):
            crashes, incidents = dict(value.crashes), dict(value.incidents)
        elif isinstance(value, Mapping):
            unknown = set(value) - {"crashes", "incidents"}
            if unknown:
                raise InvalidInputError(
                    f"weights: unknown key {sorted(unknown)[0]!r}; expected crashes, incidents"
                )
            crashes = {**CRASH_WEIGHTS, **dict(value.get("crashes") or {})}
            incidents = {**INCIDENT_WEIGHTS, **dict(value.get("incidents") or {})}
        else:
            raise InvalidInputError(f"weights: expected a mapping, got {type(value).__name__}")
        for what, table in (("crashes", crashes), ("incidents", incidents)):
            for k, w in table.items():
                if not isinstance(k, str) or not k:
                    raise InvalidInputError(f"weights.{what}: bad name {k!r}")
                if isinstance(w, bool) or not isinstance(w, int | float):
                    raise InvalidInputError(f"weights.{what}.{k}: {w!r} is not a number")
                if not math.isfinite(w) or w < 0:
                    raise InvalidInputError(f"weights.{what}.{k}: {w!r} must be finite and >= 0")
        for k in crashes:
            if k not in CRASH_SEVERITIES:
                raise InvalidInputError(
                    f"weights.crashes: unknown severity {k!r}; expected one of "
                    f"{', '.join(CRASH_SEVERITIES)}"
                )
        return cls(
            crashes={k: float(v) for k, v in crashes.items()},
            incidents={k: float(v) for k, v in incidents.items()},
        )

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {"crashes": dict(self.crashes), "incidents": dict(self.incidents)}


# ------------------------------------------------------------------------------- the grid


def _grid_rows(lat: npt.NDArray[np.float64], cell_m: float) -> npt.NDArray[np.int64]:
    dlat = cell_m / M_PER_DEG
    top = math.ceil(90.0 / dlat) - 1
    return np.clip(np.floor(lat / dlat), -top - 1, top).astype(np.int64)


def _grid_columns(rows: npt.NDArray[np.int64], cell_m: float) -> npt.NDArray[np.int64]:
    """Columns in each row: the row's circumference at its middle latitude over cell_m,
    rounded down (at least 1), so that the columns tile the 360 degrees exactly."""
    dlat = cell_m / M_PER_DEG
    mid = np.clip((rows + 0.5) * dlat, -90.0, 90.0)
    n = np.floor(360.0 * M_PER_DEG * np.cos(np.radians(mid)) / cell_m)
    return np.maximum(n, 1).astype(np.int64)


def grid_cells(
    lat: npt.ArrayLike, lon: npt.ArrayLike, cell_m: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row, column) of each position in the fixed grid of `cell_m` (docs/roadsafety.md):

    row i = floor(lat / dlat), dlat = cell_m / M_PER_DEG (cells are cell_m tall);
    row i has n_i = max(1, floor(360 * M_PER_DEG * cos(middle latitude of the row) / cell_m))
    columns of 360 / n_i degrees from -180 (cells about cell_m wide); column j =
    floor((lon + 180) * n_i / 360) mod n_i. A position on a border belongs to the cell to its
    north / east (up to floating-point rounding on the border itself).
    """
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    rows = _grid_rows(la, cell_m)
    n = _grid_columns(rows, cell_m)
    cols = np.floor((lo + 180.0) * n / 360.0).astype(np.int64) % n
    return rows, cols


def grid_cell_id(row: int, col: int, cell_m: float) -> str:
    return f"g{cell_m:g}:{row}:{col}"


def grid_cell(lat: float, lon: float, cell_m: float = 250.0) -> str:
    """The id of the grid cell holding (lat, lon): "g<cell_m>:<row>:<column>"."""
    rows, cols = grid_cells([lat], [lon], cell_m)
    return grid_cell_id(int(rows[0]), int(cols[0]), cell_m)


def _parse_cell_id(cell_id: str) -> tuple[int, int, float]:
    try:
        size, row, col = cell_id.removeprefix("g").split(":")
        return int(row), int(col), float(size)
    except ValueError:
        raise InvalidInputError(f"bad grid cell id {cell_id!r}") from None


def grid_cell_bounds(cell_id: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a grid cell, degrees."""
    row, col, cell_m = _parse_cell_id(cell_id)
    dlat = cell_m / M_PER_DEG
    n = int(_grid_columns(np.array([row], dtype=np.int64), cell_m)[0])
    south = max(-90.0, row * dlat)
    north = min(90.0, (row + 1) * dlat)
    west = -180.0 + col * 360.0 / n
    east = -180.0 + (col + 1) * 360.0 / n
    return west, south, east, north


def grid_cell_polygon(cell_id: str) -> dict[str, Any]:
    """The cell as a GeoJSON Polygon: [lon, lat] positions, one closed ring, counter-clockwise
    (RFC 7946's right-hand rule), 7 decimals (about 1 cm)."""
    w, s, e, n = (round(v, 7) for v in grid_cell_bounds(cell_id))
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}


# ------------------------------------------------------------------------------- the trend


def _binomial_tails(k: int, n: int, p: float) -> tuple[float, float]:
    """(P(X >= k), P(X <= k)) for X ~ Binomial(n, p), 0 < p < 1."""
    if n > _EXACT_BINOMIAL:
        mu = n * p
        sd = math.sqrt(n * p * (1.0 - p))
        up = 0.5 * math.erfc((k - 0.5 - mu) / (sd * math.sqrt(2.0)))
        down = 0.5 * math.erfc((mu - k - 0.5) / (sd * math.sqrt(2.0)))
        return min(1.0, up), min(1.0, down)
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)

    def pmf(i: int) -> float:
        return math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)

    up = math.fsum(pmf(i) for i in range(k, n + 1))
    down = math.fsum(pmf(i) for i in range(0, k + 1))
    return min(1.0, up), min(1.0, down)


def trend(
    before: int, after: int, d_before: float, d_after: float, alpha: float = 0.05
) -> dict[str, Any]:
    """The trend of a cell with `before` events in d_before seconds and `after` in d_after.

    ratio: the event rate after over the rate before (None when there was none before);
    label: "rising" when P(X >= after) < alpha for X ~ Binomial(before + after,
    d_after / (d_before + d_after)) (the counts if the rate had not changed), "falling" when
    P(X <= after) < alpha, else "stable". p_value: the smaller of the two tails.
    """
    n = before + after
    ratio = None if before == 0 else round((after / d_after) / (before / d_before), 4)
    if n == 0:
        return {"label": "stable", "ratio": ratio, "before": 0, "after": 0, "p_value": 1.0}
    up, down = _binomial_tails(after, n, d_after / (d_before + d_after))
    label = "rising" if up < alpha else "falling" if down < alpha else "stable"
    return {
        "label": label,
        "ratio": ratio,
        "before": before,
        "after": after,
        "p_value": round(min(up, down), 6),
    }


# ------------------------------------------------------------------------------- events


@dataclass(slots=True)
class _Events:
    kind: list[str] = field(default_factory=list)  # "crash" (record) | "incident"
    what: list[str] = field(default_factory=list)  # severity or incident type
    weight: list[float] = field(default_factory=list)
    t: list[datetime] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)  # NaN: not known (segment mode)
    lon: list[float] = field(default_factory=list)
    segment: list[str | None] = field(default_factory=list)
    road: list[str | None] = field(default_factory=list)
    camera: list[str | None] = field(default_factory=list)
    casualties: list[int] = field(default_factory=list)

    def add(self, **kw: Any) -> None:
        for k, v in kw.items():
            getattr(self, k).append(v)


def _location(geometry: Mapping[str, Any]) -> dict[str, Any]:
    loc = geometry.get("location")
    if not isinstance(loc, Mapping):
        return {}
    out: dict[str, Any] = {}
    lat, lon = loc.get("latitude"), loc.get("longitude")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        if not isinstance(lat, bool) and not isinstance(lon, bool):
            out["latitude"], out["longitude"] = float(lat), float(lon)
    seg = loc.get("segment_id")
    if seg is not None and str(seg).strip():
        out["segment_id"] = str(seg).strip()
    road = loc.get("road")
    if isinstance(road, str) and road.strip():
        out["road"] = road.strip()
    return out


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hotspots(
    store: Store,
    *,
    since: datetime,
    until: datetime,
    cell: str = "grid",
    cell_m: float = 250.0,
    weights: Weights | Mapping[str, Mapping[str, float]] | None = None,
    trend_split: datetime | None = None,
    cameras: Iterable[str] | None = None,
    limit: int = 100,
    trend_alpha: float = 0.05,
) -> dict[str, Any]:
    """The top `limit` cells by risk score in [since, until), as a GeoJSON FeatureCollection.

    cell: "grid" (a fixed grid of cell_m metre cells, Polygon geometries) or "segment" (by road
    segment id: crash records' segment_id, incidents' camera location.segment_id; Point at the
    mean of the distinct positions). cameras: only incidents of these cameras (crash records are
    not camera-bound and always count). weights: see `Weights`. The collection's "summary"
    member tells the period, the weights, the events read and the events left out.
    """
    if cell not in ("grid", "segment"):
        raise InvalidInputError(f"cell {cell!r}: expected grid or segment")
    if isinstance(cell_m, bool) or not isinstance(cell_m, int | float):
        raise InvalidInputError(f"cell_m {cell_m!r} is not a number")
    if not CELL_M_RANGE[0] <= cell_m <= CELL_M_RANGE[1]:
        raise InvalidInputError(
            f"cell_m {cell_m!r} not in {CELL_M_RANGE[0]:g}..{CELL_M_RANGE[1]:g}"
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit {limit} not in 1..{MAX_LIMIT}")
    if not 0.0 < trend_alpha < 0.5:
        raise InvalidInputError(f"trend_alpha {trend_alpha} not in (0, 0.5)")
    t0, t1 = _aware(since, "since"), _aware(until, "until")
    if not t0 < t1:
        raise InvalidInputError("since must be before until")
    split = t0 + (t1 - t0) / 2 if trend_split is None else _aware(trend_split, "trend_split")
    if not t0 < split < t1:
        raise InvalidInputError("trend_split must lie strictly between since and until")
    w = Weights.of(weights)
    only = None if cameras is None else set(cameras)
    segments = cell == "segment"

    ev = _Events()
    left = {"incidents_camera_without_location": 0, "crashes_without_segment": 0}
    read = {"crashes": 0, "incidents": 0}
    for c in store.crashes.list(since=t0, until=t1):
        wt = w.crashes.get(c.severity, 0.0)
        if wt <= 0:
            continue
        if segments and c.segment_id is None:
            left["crashes_without_segment"] += 1
            continue
        read["crashes"] += 1
        ev.add(
            kind="crash",
            what=c.severity,
            weight=wt,
            t=c.occurred_at,
            lat=c.latitude,
            lon=c.longitude,
            segment=c.segment_id,
            road=c.road,
            camera=None,
            casualties=c.casualties or 0,
        )
    places = {cam.id: _location(cam.geometry) for cam in store.cameras.list()}
    for type_, wt in sorted(w.incidents.items()):
        if wt <= 0:
            continue
        cursor = None
        while True:
            page = store.incidents.list(
                since=t0, until=t1, type=type_, state=COUNTED_STATES, limit=1000, cursor=cursor
            )
            for inc in page.items:
                if only is not None and inc.camera_id not in only:
                    continue
                loc = places.get(inc.camera_id, {})
                placed = "segment_id" in loc if segments else "latitude" in loc
                if not placed:
                    left["incidents_camera_without_location"] += 1
                    continue
                read["incidents"] += 1
                ev.add(
                    kind="incident",
                    what=inc.type,
                    weight=wt,
                    t=inc.opened_at,
                    lat=loc.get("latitude", math.nan),
                    lon=loc.get("longitude", math.nan),
                    segment=loc.get("segment_id"),
                    road=loc.get("road"),
                    camera=inc.camera_id,
                    casualties=0,
                )
            if page.next_cursor is None:
                break
            cursor = page.next_cursor

    # cell of each event
    if segments:
        keys = [str(s) for s in ev.segment]
    else:
        rows, cols = grid_cells(ev.lat, ev.lon, float(cell_m))
        keys = [
            grid_cell_id(int(r), int(c), float(cell_m)) for r, c in zip(rows, cols, strict=True)
        ]
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)

    d_before = (split - t0).total_seconds()
    d_after = (t1 - split).total_seconds()
    cells = []
    for key, idx in groups.items():
        score = math.fsum(ev.weight[i] for i in idx)
        cells.append((score, len(idx), key, idx))
    cells.sort(key=lambda c: (-c[0], -c[1], c[2]))

    features = []
    for rank, (score, n, key, idx) in enumerate(cells[:limit], start=1):
        crash_counts = dict.fromkeys((s for s, x in w.crashes.items() if x > 0), 0)
        inc_counts = dict.fromkeys((s for s, x in sorted(w.incidents.items()) if x > 0), 0)
        for i in idx:
            (crash_counts if ev.kind[i] == "crash" else inc_counts)[ev.what[i]] += 1
        times = [ev.t[i] for i in idx]
        before = sum(1 for t in times if t < split)
        roads = Counter(r for i in idx if (r := ev.road[i]))
        props: dict[str, Any] = {
            "cell": key,
            "rank": rank,
            "score": round(score, 6),
            "score_crashes": round(
                math.fsum(ev.weight[i] for i in idx if ev.kind[i] == "crash"), 6
            ),
            "score_incidents": round(
                math.fsum(ev.weight[i] for i in idx if ev.kind[i] == "incident"), 6
            ),
            "events": n,
            "counts": {"crashes": crash_counts, "incidents": inc_counts},
            "casualties": sum(ev.casualties[i] for i in idx),
            "trend": trend(before, n - before, d_before, d_after, trend_alpha),
            "first": _iso(min(times)),
            "last": _iso(max(times)),
            "road": roads.most_common(1)[0][0] if roads else None,
            "cameras": sorted({cam for i in idx if (cam := ev.camera[i]) is not None}),
        }
        if segments:
            props["segment_id"] = key
            pts = sorted({(ev.lon[i], ev.lat[i]) for i in idx if not math.isnan(ev.lat[i])})
            geometry: dict[str, Any] | None = None
            if pts:
                geometry = {
                    "type": "Point",
                    "coordinates": [
                        round(math.fsum(p[0] for p in pts) / len(pts), 7),
                        round(math.fsum(p[1] for p in pts) / len(pts), 7),
                    ],
                }
        else:
            geometry = grid_cell_polygon(key)
        features.append({"type": "Feature", "id": key, "geometry": geometry, "properties": props})

    return {
        "type": "FeatureCollection",
        "features": features,
        "summary": {
            "since": _iso(t0),
            "until": _iso(t1),
            "trend_split": _iso(split),
            "cell": cell,
            "cell_m": cell_m if not segments else None,
            "weights": w.as_dict(),
            "cells": len(cells),
            "returned": len(features),
            "events": read,
            "left_out": left,
        },
    }
