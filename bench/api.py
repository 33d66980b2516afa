"""The API's filtered incident page under 50 concurrent clients (issue 7): p50/p99 latency of
GET /api/v1/incidents?camera=...&type=...&state=...&since=... against a SQLite store of
1,000,000 incidents, with the same queries run straight through Store.incidents.list in one
thread (the peer: the database and the ORM without HTTP), measured in one run.

The database: N incidents (default 1,000,000) over 200 cameras and 90 days (a fixed span ending
2026-11-01 UTC), a realistic mix of types, states (recent incidents open, older ones resolved or
dismissed), severities, details and track ids, inserted with SQLAlchemy Core executemany in
chunks inside one transaction into a freshly migrated store. The filled file is cached as
build/bench-api/incidents-<N>.db (with a .json beside it naming the recipe); a later run with the
same N and recipe reuses it (--db PATH picks another file; --refill rebuilds it).

Processes: the API is `python -m smartcity api` (uvicorn, one process) on a free loopback port;
the load comes from a worker process of its own: one asyncio loop, --clients connections (one
per client, HTTP/1.1 keep-alive), each client issuing its next request when the previous answer
is in (a closed loop, like `wrk -c 50` or `oha -c 50`), or after a pause of --think-ms (x0.5 to
1.5, a console polling). A request is a page of one of --sets seeded filter sets (cameras, types,
states, severities, time window, limit), taken in turn; a third of them go on to the following
pages with the returned next_cursor. Its latency runs from writing the request to the last byte
of the answer. The default client writes HTTP/1.1 itself (about 0.6 ms of CPU a request on the
2-core development VM); `--client httpx` uses httpx.AsyncClient with a pool of --clients
connections instead (about 10 ms a request there: the client then takes the server's CPU).

Phases: (1) the peer: every filter set and its pages through Store.incidents.list once, in this
process, one thread; (2) parity: the first pages of a few filter sets over
HTTP must list the same incident ids as the peer; (3) one client for a few seconds (the API's
service time without queueing); (4) --clients clients for --seconds on the incident page;
(5) the same load on GET /api/v1/auth/me (authentication and HTTP alone: a second peer).
Figures: p50/p90/p99/max, requests/s, non-200 answers (429 counted apart), the server's and the
client's CPU time a request; ratios API p99 / peer p99 and API p99 / the 50 ms goal.

Run: .venv/bin/python bench/api.py [--quick] [--incidents N] [--seconds S] [--json-out PATH].
The last line printed is one JSON object with every figure. Exit 1 when any answer of the load
was neither 200 nor 429, or the parity check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "build" / "bench-api"
RECIPE = 1  # bump when the data recipe changes: cached files of another recipe are rebuilt
USER, PASSWORD = "bench", "bench-password-1"
GOAL_P99_MS = 50.0
N_CAMERAS = 200
DAYS = 90
END = datetime(2026, 11, 1, tzinfo=UTC)  # the data span ends here (queries are relative to it)
START = END - timedelta(days=DAYS)
CHUNK = 20_000
INCIDENTS_PATH = "/api/v1/incidents"
ME_PATH = "/api/v1/auth/me"

# type: (share of incidents, severity weights info..critical)
TYPES: dict[str, tuple[float, tuple[float, ...]]] = {
    "speeding": (0.28, (0.05, 0.35, 0.40, 0.17, 0.03)),
    "stopped_vehicle": (0.15, (0.05, 0.25, 0.45, 0.20, 0.05)),
    "congestion": (0.12, (0.20, 0.40, 0.30, 0.10, 0.00)),
    "line_crossing": (0.10, (0.40, 0.40, 0.15, 0.05, 0.00)),
    "wrong_way": (0.07, (0.00, 0.05, 0.25, 0.50, 0.20)),
    "pedestrian_on_carriageway": (0.07, (0.00, 0.10, 0.40, 0.40, 0.10)),
    "zone_intrusion": (0.06, (0.10, 0.30, 0.40, 0.15, 0.05)),
    "loitering": (0.05, (0.30, 0.50, 0.20, 0.00, 0.00)),
    "crowd": (0.04, (0.10, 0.40, 0.40, 0.10, 0.00)),
    "camera_health": (0.05, (0.30, 0.30, 0.30, 0.10, 0.00)),
    "crash": (0.01, (0.00, 0.00, 0.10, 0.40, 0.50)),
}
SEVERITIES = ("info", "low", "medium", "high", "critical")
STATES = ("open", "acknowledged", "resolved", "dismissed")
# state weights by the incident's age: under a day, under a week, older
STATE_BY_AGE = (
    (0.50, 0.25, 0.20, 0.05),
    (0.05, 0.10, 0.60, 0.25),
    (0.005, 0.01, 0.70, 0.285),
)
INCIDENT_COLUMNS = (
    "id",
    "type",
    "camera_id",
    "key",
    "state",
    "severity",
    "priority",
    "score",
    "opened_at",
    "updated_at",
    "closed_at",
    "first_pts",
    "last_pts",
    "track_ids",
    "details",
    "legal_hold",
    "assigned_to",
    "count",
)
OPERATORS = ("op.alice", "op.bruno", "op.chen", "op.dara", "op.emeka", "op.farah")


# --------------------------------------------------------------------------- the database


def camera_ids() -> list[str]:
    return [f"cam{i}" for i in range(1, N_CAMERAS + 1)]


def camera_weights() -> np.ndarray:
    """Busy and quiet cameras: Zipf-like shares (the busiest has ~24x the quietest)."""
    w = 1.0 / np.arange(1, N_CAMERAS + 1) ** 0.6
    return w / w.sum()


def sqlite_times(base: datetime, seconds: np.ndarray) -> list[str]:
    """base + seconds as SQLAlchemy stores a UTCDateTime in SQLite ("YYYY-MM-DD HH:MM:SS.ffffff",
    naive UTC), so that the store's comparisons and ordering see what its own writes would."""
    us = np.datetime64(base.replace(tzinfo=None), "us") + (seconds * 1e6).astype("timedelta64[us]")
    return [t.replace("T", " ") for t in np.datetime_as_string(us, unit="us").tolist()]


def incident_rows(rng: np.random.Generator, n: int) -> Any:
    """Yield chunks of rows (tuples in INCIDENT_COLUMNS order, values as stored), oldest first."""
    span = (END - START).total_seconds()
    t = np.sort(rng.uniform(0.0, span, n))
    cams = np.array(camera_ids())
    cam_idx = rng.choice(N_CAMERAS, n, p=camera_weights())
    names = list(TYPES)
    type_idx = rng.choice(len(names), n, p=np.array([TYPES[k][0] for k in names]))
    # severity: by the type's weights; state: by the incident's age
    sev_cum = np.array([np.cumsum(TYPES[k][1]) for k in names])
    sev_idx = np.minimum(4, (rng.random(n)[:, None] > sev_cum[type_idx]).sum(axis=1))
    age = np.where(t >= span - 86400.0, 0, np.where(t >= span - 7 * 86400.0, 1, 2))
    state_cum = np.array([np.cumsum(w) for w in STATE_BY_AGE])
    state_idx = np.minimum(3, (rng.random(n)[:, None] > state_cum[age]).sum(axis=1))
    dur = np.minimum(rng.exponential(1800.0, n) + 5.0, span - t)  # opened -> last update, s
    count = rng.geometric(0.5, n)
    prio = rng.integers(0, 4, n)
    score = np.round(rng.uniform(0.4, 1.0, n), 3)
    hold = rng.random(n) < 0.003
    tracks = rng.integers(1, 100_000, (n, 3))
    ntracks = rng.integers(1, 4, n)
    op = rng.integers(0, len(OPERATORS), n)
    speed = np.round(rng.uniform(50, 140, n), 1)
    raw = np.frombuffer(rng.bytes(16 * n), np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # a version 4 UUID
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    closed_states = (STATES.index("resolved"), STATES.index("dismissed"))
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        sl = slice(lo, hi)
        hx = raw[sl].tobytes().hex()
        hexes = [hx[k : k + 32] for k in range(0, len(hx), 32)]
        ids = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes]
        opened = sqlite_times(START, t[sl])
        updated = sqlite_times(START, t[sl] + dur[sl])
        st = state_idx[sl].tolist()
        closed = [u if s in closed_states else None for u, s in zip(updated, st, strict=True)]
        ty = type_idx[sl].tolist()
        details = []
        for k, i in enumerate(range(lo, hi)):
            name = names[ty[k]]
            if name == "speeding":
                details.append(f'{{"rule": "{name}", "speed_kmh": {speed[i]}, "limit_kmh": 50}}')
            elif name in ("zone_intrusion", "loitering", "crowd"):
                details.append(f'{{"rule": "{name}", "zone": "zone{prio[i]}"}}')
            else:
                details.append(f'{{"rule": "{name}"}}')
        tids = [
            "[" + ", ".join(map(str, row[:k])) + "]"
            for row, k in zip(tracks[sl].tolist(), ntracks[sl].tolist(), strict=True)
        ]
        pts = np.round(t[sl] % 86400.0, 2)
        cols = {
            "id": ids,
            "type": [names[k] for k in ty],
            "camera_id": cams[cam_idx[sl]].tolist(),
            "key": [f"track:{i}" for i in range(lo, hi)],
            "state": [STATES[k] for k in st],
            "severity": [SEVERITIES[k] for k in sev_idx[sl].tolist()],
            "priority": prio[sl].tolist(),
            "score": score[sl].tolist(),
            "opened_at": opened,
            "updated_at": updated,
            "closed_at": closed,
            "first_pts": pts.tolist(),
            "last_pts": np.round(pts + dur[sl], 2).tolist(),
            "track_ids": tids,
            "details": details,
            "legal_hold": hold[sl].astype(int).tolist(),
            "assigned_to": [
                None if s == 0 else OPERATORS[o] for s, o in zip(st, op[sl].tolist(), strict=True)
            ],
            "count": count[sl].tolist(),
        }
        yield list(zip(*(cols[c] for c in INCIDENT_COLUMNS), strict=True))


def fill(db: Path, n: int, seed: int = 7) -> float:
    """Create `db` (migrated, N incidents, the bench user); seconds the incidents took.

    The INSERT is SQLAlchemy Core's for the model's table; the values are given as the store
    keeps them (UTC text times, JSON text), executemany in chunks, one transaction."""
    from sqlalchemy import create_engine, insert
    from sqlalchemy.dialects import sqlite

    from smartcity.api.security import hash_password
    from smartcity.store import Store
    from smartcity.store import models as m

    compiled = insert(m.Incident).compile(dialect=sqlite.dialect())
    if list(compiled.positiontup or ()) != list(INCIDENT_COLUMNS):
        raise RuntimeError(f"the incidents table changed: {compiled.positiontup}; update bench")
    tmp = db.with_name(db.name + ".tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    url = f"sqlite:///{tmp}"
    with Store.open(url) as store:  # the schema, migrated to head
        store.users.add(USER, hash_password(PASSWORD), "admin")
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    engine = create_engine(url)
    t0 = time.perf_counter()
    try:
        with engine.connect() as conn:
            # A scratch file until it is complete: no journal, no fsync, a large page cache.
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-400000"):
                conn.exec_driver_sql(f"PRAGMA {pragma}")
            conn.commit()  # ends SQLAlchemy's autobegun transaction (pysqlite began none)
            with conn.begin():
                cams = camera_ids()
                lat = rng.uniform(10.70, 10.90, N_CAMERAS)
                lon = rng.uniform(106.60, 106.80, N_CAMERAS)
                conn.execute(
                    insert(m.Camera),
                    [
                        {
                            "id": c,
                            "name": f"Camera {c}",
                            "url": f"rtsp://10.0.{i // 250}.{i % 250 + 1}/stream1",
                            "enabled": True,
                            "geometry": {
                                "location": {"latitude": float(lat[i]), "longitude": float(lon[i])}
                            },
                            "created_at": START,
                            "updated_at": START,
                        }
                        for i, c in enumerate(cams)
                    ],
                )
                done = 0
                for rows in incident_rows(rng, n):
                    conn.exec_driver_sql(str(compiled), rows)
                    done += len(rows)
                    if done % 200_000 < CHUNK:
                        print(
                            f"    {done:,} incidents, {time.perf_counter() - t0:.0f} s",
                            flush=True,
                        )
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()
    took = time.perf_counter() - t0
    with Store.open(f"sqlite:///{tmp}") as store:  # what was written reads back as the store's
        page = store.incidents.list(limit=1, until=END)
        if not page.items or page.items[0].opened_at.tzinfo is None:
            raise RuntimeError("the filled incidents do not read back")
    os.replace(tmp, db)
    meta = {"recipe": RECIPE, "incidents": n, "seed": seed, "fill_s": took, "at": now.isoformat()}
    db.with_suffix(".json").write_text(json.dumps(meta) + "\n")
    return took


def ensure_db(db: Path, n: int, refill: bool) -> tuple[float | None, dict[str, Any]]:
    """Reuse `db` when its .json names this recipe and N; else fill it. (fill s or None, meta)."""
    meta_path = db.with_suffix(".json")
    if not refill and db.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("recipe") == RECIPE and meta.get("incidents") == n:
            return None, meta
    db.parent.mkdir(parents=True, exist_ok=True)
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), meta_path):
        p.unlink(missing_ok=True)
    took = fill(db, n)
    return took, json.loads(meta_path.read_text())


# --------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class Query:
    """One filter set; `pages` pages of it are asked in a row (page 2+ with next_cursor)."""

    params: tuple[tuple[str, str], ...]  # the query string's filters, in order
    pages: int

    def store_kwargs(self, cursor: str | None) -> dict[str, Any]:
        """The same filters as arguments of Store.incidents.list (as the controller calls it)."""
        p = dict(self.params)

        def split(k: str) -> list[str] | None:
            return p[k].split(",") if k in p else None

        def when(k: str) -> datetime | None:
            return datetime.fromisoformat(p[k]).astimezone(UTC) if k in p else None

        cams = split("camera")
        return {
            "since": when("since"),
            "until": when("until"),
            "type": split("type"),
            "state": split("state"),
            "severity": split("severity"),
            "limit": int(p.get("limit", "50")),
            "cursor": cursor,
            "camera_ids": sorted(set(cams)) if cams is not None else None,
        }

    def page_kwargs(self, cursor: str | None) -> dict[str, Any]:
        """The same filters as arguments of IncidentPages.page (as the controller calls it)."""
        k = self.store_kwargs(cursor)
        return {
            "since": k["since"],
            "until": k["until"],
            "types": k["type"],
            "states": k["state"],
            "severities": k["severity"],
            "limit": k["limit"],
            "cursor": cursor,
            "camera_ids": k["camera_ids"],
        }

    def target(self, cursor: str | None) -> str:
        params = list(self.params) + ([("cursor", cursor)] if cursor else [])
        return INCIDENTS_PATH + "?" + urllib.parse.urlencode(params)


def make_queries(n: int, seed: int = 11) -> list[Query]:
    """A console's mix: mostly one camera or a few, often a type or two and the active states,
    a recent window or a day in the past, 50 a page (some 100), a third go on to page 2 or 3."""
    rng = random.Random(seed)
    cams = camera_ids()
    cw = camera_weights().tolist()
    types = list(TYPES)
    tw = [TYPES[k][0] for k in types]
    out = []
    for _ in range(n):
        p: list[tuple[str, str]] = []
        r = rng.random()
        if r < 0.55:
            p.append(("camera", rng.choices(cams, cw)[0]))
        elif r < 0.80:
            p.append(("camera", ",".join(sorted(set(rng.choices(cams, cw, k=rng.randint(2, 4)))))))
        r = rng.random()
        if r < 0.40:
            p.append(("type", rng.choices(types, tw)[0]))
        elif r < 0.65:
            p.append(("type", ",".join(sorted(set(rng.choices(types, tw, k=2))))))
        r = rng.random()
        if r < 0.30:
            p.append(("state", "open"))
        elif r < 0.55:
            p.append(("state", "open,acknowledged"))
        elif r < 0.65:
            p.append(("state", "resolved,dismissed"))
        if rng.random() < 0.15:
            p.append(("severity", "high,critical"))
        r = rng.random()
        if r < 0.30:
            p.append(("since", (END - timedelta(hours=24)).isoformat()))
        elif r < 0.55:
            p.append(("since", (END - timedelta(days=7)).isoformat()))
        elif r < 0.75:
            day = START + timedelta(days=rng.randrange(DAYS))
            p.append(("since", day.isoformat()))
            p.append(("until", (day + timedelta(days=1)).isoformat()))
        p.append(("limit", "100" if rng.random() < 0.2 else "50"))
        r = rng.random()
        pages = 1 if r < 0.67 else (2 if r < 0.90 else 3)
        out.append(Query(tuple(p), pages))
    return out


def direct_peer(db: Path, queries: list[Query]) -> dict[str, Any]:
    """The peers: every query's pages through Store.incidents.list once, one thread, no HTTP;
    then the same pages through the API's own page maker (IncidentPages.page: the query and
    the answer's JSON, as the handler runs them), also without HTTP."""
    from smartcity.api.domain.incidents.pages import IncidentPages
    from smartcity.store import Store

    lat: list[int] = []
    lat_json: list[int] = []
    first_ids: list[list[str]] = []
    clock = time.perf_counter_ns
    with Store.open(f"sqlite:///{db}") as store:
        pages = IncidentPages(store)
        for q in queries[:5]:  # warm-up (connections, statement cache)
            store.incidents.list(**q.store_kwargs(None))
            pages.page(**q.page_kwargs(None))
        t0 = time.perf_counter()
        for q in queries:
            cursor = None
            for page in range(q.pages):
                t = clock()
                res = store.incidents.list(**q.store_kwargs(cursor))
                lat.append(clock() - t)
                if page == 0:
                    first_ids.append([r.id for r in res.items])
                cursor = res.next_cursor
                if cursor is None:
                    break
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        for q in queries:
            cursor = None
            for _ in range(q.pages):
                t = clock()
                body = pages.page(**q.page_kwargs(cursor))
                lat_json.append(clock() - t)
                cursor = next_cursor(body)
                if cursor is None:
                    break
        wall_json = time.perf_counter() - t0
    return {
        "latencies_ns": np.array(lat, np.int64),
        "wall_s": wall,
        "first_ids": first_ids,
        "json_latencies_ns": np.array(lat_json, np.int64),
        "json_wall_s": wall_json,
    }


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu_s(pid: int) -> float:
    """proc_cpu_s of `pid` and of every process below it (uvicorn's workers)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        tree += kids
        todo += kids
    return sum(v for v in (proc_cpu_s(p) for p in tree) if v == v)  # NaN: it ended meanwhile


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Server:
    """`python -m smartcity api` on a free loopback port, its output in a log file."""

    def __init__(self, db: Path, log: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.log_path = log
        env = dict(os.environ, SMARTCITY_API_BOOTSTRAP_ADMIN="false")
        env.pop("SMARTCITY_DB_URL", None)
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smartcity",
                "api",
                "--db-url",
                f"sqlite:///{db}",
                "--data-dir",
                str(db.parent),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        import httpx

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}{ME_PATH}", timeout=2.0)
                return time.perf_counter() - t0
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"the API did not answer in {timeout_s:g} s:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def cpu_s(self) -> float:
        return tree_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def login(port: int) -> str:
    import httpx

    r = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/token",
        json={"username": USER, "password": PASSWORD},
        timeout=30.0,
    )
    r.raise_for_status()
    return str(r.json()["token"])


# --------------------------------------------------------------------------- the load (a child)


class RawConn:
    """One HTTP/1.1 keep-alive connection; requests written by hand (GET, no body)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(b"GET " + target.encode() + b" HTTP/1.1\r\n" + self.head)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
            elif k == b"transfer-encoding":
                raise RuntimeError("chunked answers are not supported by this client")
        body = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def next_cursor(body: bytes) -> str | None:
    """next_cursor of an incident page without decoding it all (it is the last field)."""
    i = body.rfind(b'"next_cursor":')
    if i < 0:
        return None
    tail = body[i + 14 :].lstrip()
    if tail.startswith(b"null"):
        return None
    return tail[1 : tail.index(b'"', 1)].decode()


def run_load(job: dict[str, Any]) -> dict[str, Any]:
    """In the load process: job["clients"] clients for job["seconds"] (after job["warmup"] s not
    counted). Each client takes the next query of the list and asks its pages in a row."""
    return asyncio.run(_load(job))


async def _load(job: dict[str, Any]) -> dict[str, Any]:
    port, token = job["port"], job["token"]
    queries: list[Query] = job["queries"]
    me = job["path"] == ME_PATH
    clock = time.perf_counter_ns
    lat: list[int] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    counter = iter(range(1 << 62))
    t_start = clock()
    t_measure = t_start + int(job["warmup"] * 1e9)
    t_stop = t_measure + int(job["seconds"] * 1e9)
    first_done: list[int] = []
    last_done = [0]
    total = [0]  # every request, the warm-up's included (the CPU figures divide by it)
    if job["client"] == "httpx":
        import httpx

        limits = httpx.Limits(
            max_connections=job["clients"], max_keepalive_connections=job["clients"]
        )
        hx = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            limits=limits,
            timeout=60.0,
        )

    async def one(conn: RawConn | None, target: str) -> tuple[int, bytes]:
        if conn is not None:
            return await conn.get(target)
        r = await hx.get(target)
        return r.status_code, r.content

    think_s = job.get("think_ms", 0.0) / 1e3

    async def client(k: int) -> None:
        conn = RawConn(port, token) if job["client"] == "raw" else None
        rng = random.Random(k)
        try:
            if think_s:
                await asyncio.sleep(rng.uniform(0.0, 2.0 * think_s))  # staggered starts
            while clock() < t_stop:
                q = queries[next(counter) % len(queries)]
                cursor = None
                for _ in range(1 if me else q.pages):
                    target = ME_PATH if me else q.target(cursor)
                    t = clock()
                    try:
                        status, body = await one(conn, target)
                    except (OSError, asyncio.IncompleteReadError, RuntimeError) as e:
                        errors.append(f"{type(e).__name__}: {e}")
                        if conn is not None:
                            await conn.close()
                        status, body = -1, b""
                    done = clock()
                    total[0] += 1
                    if t >= t_measure:
                        lat.append(done - t)
                        statuses[status] = statuses.get(status, 0) + 1
                        if not first_done:
                            first_done.append(t)
                        last_done[0] = max(last_done[0], done)
                    if think_s:  # a pause of 0.5 to 1.5 times think_ms before the next request
                        await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)
                    if status != 200 or me:
                        break
                    cursor = next_cursor(body)
                    if cursor is None or clock() >= t_stop:
                        break
        finally:
            if conn is not None:
                await conn.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(client(k) for k in range(job["clients"])))
    cpu = time.process_time() - cpu0
    if job["client"] == "httpx":
        await hx.aclose()
    span = (last_done[0] - first_done[0]) / 1e9 if first_done else 0.0
    return {
        "latencies_ns": np.array(lat, np.int64),
        "statuses": statuses,
        "errors": errors[:10],
        "n_errors": len(errors),
        "span_s": span,
        "all_requests": total[0],
        "client_cpu_s": cpu,
    }


def fetch_first_ids(port: int, token: str, queries: list[Query]) -> list[list[str]]:
    """The incident ids of each query's first page over HTTP (the parity check)."""
    import httpx

    out = []
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60.0,
    ) as c:
        for q in queries:
            r = c.get(q.target(None))
            r.raise_for_status()
            out.append([it["id"] for it in r.json()["items"]])
    return out


# --------------------------------------------------------------------------- figures


def stats(lat_ns: np.ndarray) -> dict[str, float]:
    if len(lat_ns) == 0:
        nan = float("nan")
        return {"n": 0, "p50_ms": nan, "p90_ms": nan, "p99_ms": nan, "max_ms": nan, "mean_ms": nan}
    ms = lat_ns / 1e6
    return {
        "n": int(len(ms)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }


def summarize(r: dict[str, Any], server_cpu_s: float) -> dict[str, Any]:
    s = stats(r.pop("latencies_ns"))
    n, m = s["n"], r["all_requests"]
    st = r["statuses"]
    out = {
        **s,
        "rps": n / r["span_s"] if r["span_s"] > 0 else 0.0,
        "status": {str(k): v for k, v in sorted(st.items())},
        "ok": st.get(200, 0),
        "too_many": st.get(429, 0),
        "errors": sum(v for k, v in st.items() if k not in (200, 429)),
        "error_samples": r["errors"],
        "client_cpu_ms_per_req": r["client_cpu_s"] / m * 1e3 if m else float("nan"),
        "server_cpu_ms_per_req": server_cpu_s / m * 1e3 if m else float("nan"),
    }
    return out


def line(name: str, s: dict[str, Any]) -> str:
    extra = ""
    if "rps" in s:
        extra = (
            f" {s['rps']:>8.0f} {s['errors']:>6} {s['too_many']:>5} "
            f"{s['server_cpu_ms_per_req']:>7.2f} {s['client_cpu_ms_per_req']:>7.2f}"
        )
    return (
        f"   {name:<38} {s['n']:>7} {s['p50_ms']:>8.2f} {s['p90_ms']:>8.2f} {s['p99_ms']:>8.2f} "
        f"{s['max_ms']:>8.1f}{extra}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="50,000 incidents, 5 s phases")
    ap.add_argument("--incidents", type=int, default=None, help="incidents (default 1,000,000)")
    ap.add_argument("--db", type=Path, default=None, help="SQLite file (default: the cache)")
    ap.add_argument("--refill", action="store_true", help="rebuild the database")
    ap.add_argument("--seconds", type=float, default=None, help="load phases (default 20)")
    ap.add_argument(
        "--sets", type=int, default=None, help="filter sets, the peer runs each once (default 500)"
    )
    ap.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause of a client between its requests (default 0: a closed loop)",
    )
    ap.add_argument("--serial-seconds", type=float, default=None, help="1 client (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="load not counted at the start, s")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load client")
    ap.add_argument("--no-me", action="store_true", help="skip the /auth/me peer")
    ap.add_argument(
        "--workers", type=int, default=1, help="API worker processes (api.workers; default 1)"
    )
    ap.add_argument("--keep-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, help="also write the JSON figures to this file")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers: at least 1")
    n = args.incidents or (50_000 if args.quick else 1_000_000)
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    n_sets = args.sets or (200 if args.quick else 500)
    serial_s = args.serial_seconds or (2.0 if args.quick else 5.0)
    db = args.db or CACHE_DIR / f"incidents-{n}.db"
    db = db.resolve()

    ncpu = os.cpu_count()
    load = os.getloadavg()
    print(
        f"bench/api.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.node()}  "
        f"CPUs: {ncpu}, load average {load[0]:.2f}"
    )
    t0 = time.perf_counter()
    fill_s, meta = ensure_db(db, n, args.refill)
    size_mb = db.stat().st_size / 1e6
    if fill_s is None:
        print(f"database: {db} (cached, {meta['incidents']:,} incidents, {size_mb:.0f} MB)")
    else:
        print(f"database: {db} filled: {n:,} incidents in {fill_s:.1f} s ({size_mb:.0f} MB)")
    queries = make_queries(n_sets)
    print(
        f"queries: {len(queries)} seeded filter sets, "
        f"{sum(q.pages for q in queries) / len(queries):.2f} pages each on average"
    )
    sys.stdout.flush()

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": ncpu,
        "loadavg": load,
        "db": {"path": str(db), "incidents": n, "mb": size_mb, "fill_s": fill_s, "meta": meta},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }

    # (1) the peer: Store.incidents.list in this process
    print("(1) peer: Store.incidents.list, one thread, each filter set once ...", flush=True)
    peer = direct_peer(db, queries)
    peer_stats = stats(peer["latencies_ns"])
    peer_stats["qps"] = peer_stats["n"] / peer["wall_s"]
    json_stats = stats(peer["json_latencies_ns"])
    json_stats["qps"] = json_stats["n"] / peer["json_wall_s"]

    results: dict[str, dict[str, Any]] = {}
    run_dir = CACHE_DIR / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    server = Server(db, run_dir / "server.log", args.workers)
    parity_ok = True
    try:
        ready_s = server.wait_ready()
        token = login(server.port)
        print(f"API: pid {server.proc.pid}, port {server.port}, answered after {ready_s:.1f} s")
        # (2) parity: the same first pages over HTTP
        k = min(20, len(peer["first_ids"]))
        api_ids = fetch_first_ids(server.port, token, queries[:k])
        bad = [i for i in range(k) if api_ids[i] != peer["first_ids"][i]]
        parity_ok = not bad
        print(f"(2) parity: first pages of {k} filter sets: " + ("same ids" if not bad else
              f"DIFFERENT for {bad}"), flush=True)  # fmt: skip
        ctx = get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            base = {"port": server.port, "token": token, "queries": queries, "client": args.client}
            phases = [
                ("serial", INCIDENTS_PATH, 1, serial_s),
                ("incidents", INCIDENTS_PATH, args.clients, seconds),
            ]
            if not args.no_me:
                phases.append(("me", ME_PATH, args.clients, seconds))
            for name, path, clients, secs in phases:
                print(
                    f"({len(results) + 3}) {name}: {path}, {clients} client(s), {secs:g} s ...",
                    flush=True,
                )
                job = base | {"path": path, "clients": clients, "seconds": secs}
                job["warmup"] = args.warmup if clients > 1 else 0.5
                job["think_ms"] = args.think_ms if clients > 1 else 0.0
                cpu0 = server.cpu_s()
                r = pool.submit(run_load, job).result()
                results[name] = summarize(r, server.cpu_s() - cpu0)
                if results[name]["errors"]:
                    print(f"    errors: {results[name]['error_samples']}", flush=True)
        if args.keep_server:
            input(f"server on port {server.port}; token {token}; Enter to stop")
    finally:
        server.stop()

    # ---------------------------------------------------------------- print
    print()
    mode = (
        f"clients pausing {args.think_ms:g} ms (x0.5-1.5) between requests"
        if args.think_ms
        else "closed-loop clients"
    )
    print(
        f"latency ms; {n:,} incidents in SQLite, {n_sets} filter sets; load: {args.clients} "
        f"{mode} ({args.client}); API: {args.workers} uvicorn worker process(es) on {ncpu} CPUs"
    )
    print(
        f"   {'':<38} {'n':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'req/s':>8} "
        f"{'non200':>6} {'429':>5} {'srv cpu':>7} {'cli cpu':>7}"
    )
    print(line("peer: Store.incidents.list, 1 thread", peer_stats))
    print(line("peer: IncidentPages.page, 1 thread", json_stats))
    labels = {
        "serial": "API incident page, 1 client",
        "incidents": f"API incident page, {args.clients} clients",
        "me": f"API /auth/me, {args.clients} clients",
    }
    for name, s in results.items():
        print(line(labels[name], s))
    print("   (srv cpu, cli cpu: CPU ms a request of the API process and of the load process)")
    api = results["incidents"]
    ratio_peer = api["p99_ms"] / peer_stats["p99_ms"]
    ratio_goal = api["p99_ms"] / GOAL_P99_MS
    met = api["p99_ms"] < GOAL_P99_MS
    print()
    print("ratios")
    print(f"   API p99 / peer p99 (Store.incidents.list)      {ratio_peer:8.1f}x")
    if "me" in results:
        print(f"   API p99 / /auth/me p99 (same load)             "
              f"{api['p99_ms'] / results['me']['p99_ms']:8.1f}x")  # fmt: skip
    print(f"   API p50 at 1 client / peer p50                 "
          f"{results['serial']['p50_ms'] / peer_stats['p50_ms']:8.1f}x")  # fmt: skip
    print(
        f"   API p99 / goal ({GOAL_P99_MS:g} ms)                          {ratio_goal:8.2f}x  "
        f"({'met' if met else 'MISSED'}: p99 {api['p99_ms']:.1f} ms)"
    )
    errors = api["errors"] + results.get("me", {}).get("errors", 0) + results["serial"]["errors"]
    print(f"   non-200 answers: {errors} (429: {api['too_many']})")
    print(f"   total time {time.perf_counter() - t0:.0f} s")
    report.update(
        {
            "peer": peer_stats,
            "peer_json": json_stats,
            "api": results,
            "parity_ok": parity_ok,
            "goals": {
                "p99_ms": {"value": api["p99_ms"], "goal": GOAL_P99_MS, "met": met},
                "ratio_peer": ratio_peer,
                "ratio_goal": ratio_goal,
            },
        }
    )
    text = json.dumps(report, default=str)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0 if errors == 0 and parity_ok else 1


if __name__ == "__main__":
    sys.exit(main())
