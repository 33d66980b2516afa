"""Engine memory: resident memory per stream at 768x576 and at 1920x1080 (packet ring included),
and its growth over a run of 16 streams; against the plain Python loop of bench/engine.py
holding the same number of PyAV streams in one process, measured in the same run.

Ours: a worker process (with the environment `smartcity run` gives the engine,
smartcity.supervisor.ENGINE_MALLOC_ENV: MALLOC_ARENA_MAX=4) builds
smartcity.engine.process.Engine (the person-ssdlite card, one inference thread, the evidence
server on, its publisher connected to a broker in this process) with no camera, runs its batch
loop in a thread, and adds cameras on command through
engine.pipeline.add_stream: looping, realtime, analyze_fps 5, the default pre_event_s of 10 s
(the packet ring). This process reads the worker's RSS with psutil: at 0 streams, then at each
step of --steps after the rings have filled (--settle seconds, more than pre_event_s). Per
stream: (RSS at N - RSS at 0) / N, and the slope of a least-squares line through the steps.

Peer: a worker process with the plain loop of bench/engine.py (PyAV, OpenCV, onnxruntime,
NumPy, cv2.dnn.NMSBoxes), opening N PyAV containers (one decoding thread each) and decoding
them round robin at full speed, every other frame analysed (5 of 10 fps); no packet ring (a
plain loop keeps no evidence), so the difference includes ours' ring (its bytes are shown).

Growth: a fresh engine worker with 16 streams of the 768x576 clip for --growth-seconds (default
120 s; the issue's figure is 600 s, run once and recorded in bench/README.md); RSS sampled every
5 s, with the heap malloc holds in use and free (glibc's mallinfo2, asked of the worker). The
engine hands free heap pages back every heap_trim_interval_s (10 s), so RSS saw-tooths by a few
MB between trims. Growth = (median RSS over the last --growth-window s - median RSS over the
first --growth-window s after --growth-warmup) / the latter, which no trim phase can tilt; also
printed: the last sample against the first after the warm-up (the old figure), the slope of a
least-squares line through the samples after the warm-up, and the heap in use at both ends (a
leak grows it; free pages kept resident do not).

The 1080p clip is made once with PyAV (bench/out/vtest-1080p10.mp4, git-ignored): the real clip
scaled to 1920x1080, libx264 veryfast, 10 fps, GOP 20, no B-frames, 4 Mbit/s, 400 frames.

Run: .venv/bin/python bench/memory.py [--quick] [--growth-seconds S] [--only per-stream|growth]
[--json-out PATH]. MB are 10^6 bytes. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
import time
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
CLIP_768 = ROOT / "tests" / "media" / "vtest-h264.mp4"
CLIP_1080 = OUT_DIR / "vtest-1080p10.mp4"
GEN_RECIPE = (
    "v2: vtest scaled 1920x1080 yuv420p, libx264 veryfast, 10 fps, g20, bf0, 4M, 400 frames"
)
MODELS = ROOT / "models"
MODEL = "person-ssdlite"
ANALYZE_FPS = 5.0
PRE_EVENT_S = 10.0
MB = 1e6
GOALS_MB = {"768x576": 40.0, "1920x1080": 80.0}
GOAL_GROWTH = 0.01


def ensure_1080p(quiet: bool = False) -> Path:
    """Encodes the 1080p clip once (a changed recipe encodes it again)."""
    import av

    stamp = CLIP_1080.with_suffix(".cmd")
    if CLIP_1080.exists() and stamp.exists() and stamp.read_text() == GEN_RECIPE:
        return CLIP_1080
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"generating {CLIP_1080.relative_to(ROOT)} (once): {GEN_RECIPE}", flush=True)
    tmp = CLIP_1080.with_suffix(".tmp.mp4")
    with av.open(str(CLIP_768)) as src, av.open(str(tmp), "w") as dst:
        out = dst.add_stream("libx264", rate=10)
        out.width, out.height, out.pix_fmt = 1920, 1080, "yuv420p"
        out.codec_context.time_base = Fraction(1, 10)
        out.bit_rate = 4_000_000
        out.options = {"preset": "veryfast", "g": "20", "bf": "0", "maxrate": "4M", "bufsize": "8M"}
        n = 0
        for frame in src.decode(video=0):
            big = frame.reformat(width=1920, height=1080, format="yuv420p")
            big.pts = n
            big.time_base = Fraction(1, 10)
            for pkt in out.encode(big):
                dst.mux(pkt)
            n += 1
            if n == 400:
                break
        for pkt in out.encode(None):
            dst.mux(pkt)
    tmp.replace(CLIP_1080)
    stamp.write_text(GEN_RECIPE)
    return CLIP_1080


# --------------------------------------------------------------------------- workers


def _mallinfo() -> dict[str, float] | None:
    """glibc's heap figures of this process in MB (None elsewhere): in use, free inside the
    arenas, and mmapped blocks."""
    import ctypes
    import ctypes.util

    if platform.libc_ver()[0] != "glibc":
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost",
            )
        ]  # fmt: skip

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo2
    mi = libc.mallinfo2()
    return {"in_use": mi.uordblks / MB, "free": mi.fordblks / MB, "mmapped": mi.hblkhd / MB}


def engine_worker(conn: Connection, endpoint: str) -> None:
    """Ours: an Engine with no camera, its loop in a thread; cameras added on command."""
    from smartcity import _core
    from smartcity.engine.process import Engine, EngineSettings

    settings = EngineSettings(
        model=MODEL, cameras=(), models_root=MODELS, inference_threads=1, max_batch=8
    )
    engine = Engine(settings, endpoint)
    stop = threading.Event()
    loop = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    loop.start()
    conn.send("ready")
    n = 0
    try:
        while True:
            cmd = conn.recv()
            if cmd is None:
                break
            if cmd[0] == "add":
                _, url, k = cmd
                for _ in range(k):
                    engine.pipeline.add_stream(
                        _core.StreamConfig(
                            camera_id=f"cam{n:03d}",
                            url=url,
                            analyze_fps=ANALYZE_FPS,
                            loop=True,
                            realtime=True,
                            pre_event_s=PRE_EVENT_S,
                        )
                    )
                    n += 1
                conn.send(n)
            elif cmd[0] == "stats":
                st = engine.pipeline.stats()
                rings = [engine.pipeline.packet_ring(s["camera_id"]) for s in st]
                conn.send(
                    {
                        "streams": len(st),
                        "frames_decoded": sum(s["frames_decoded"] for s in st),
                        "frames_dropped": sum(s["frames_dropped"] for s in st),
                        "ring_bytes": sum(r["bytes"] for r in rings),
                        "ring_seconds": float(np.mean([r["seconds"] for r in rings]))
                        if rings
                        else 0.0,
                        "frames": engine.counters.frames,
                        "heap_trims": engine.counters.heap_trims,
                        "heap_trim_ms": engine.counters.heap_trim_ms,
                    }
                )
            elif cmd[0] == "heap":
                conn.send(_mallinfo())
    finally:
        stop.set()
        loop.join(10)
        engine.close()


def peer_worker(conn: Connection) -> None:
    """The plain loop on N PyAV containers in one process, round robin, every other frame
    analysed; commands are read between rounds."""
    import importlib.util

    import av

    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    assert spec is not None and spec.loader is not None
    bench_engine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_engine)
    loop = bench_engine.PlainLoop()
    conn.send("ready")
    streams: list[list[Any]] = []  # [container, frame iterator, url, frames]
    frames = 0

    def open_stream(url: str) -> list[Any]:
        c = av.open(url)
        s = c.streams.video[0]
        s.codec_context.thread_type = "NONE"
        s.codec_context.thread_count = 1
        return [c, c.decode(s), url, 0]

    while True:
        if conn.poll(0 if streams else 0.05):
            cmd = conn.recv()
            if cmd is None:
                break
            if cmd[0] == "add":
                _, url, k = cmd
                streams += [open_stream(url) for _ in range(k)]
                conn.send(len(streams))
            elif cmd[0] == "stats":
                conn.send({"streams": len(streams), "frames_decoded": frames})
        for st in streams:
            frame = next(st[1], None)
            if frame is None:  # end of the file: open it again, as a loop
                st[0].close()
                st[:] = open_stream(st[2])
                frame = next(st[1])
            st[3] += 1
            frames += 1
            if st[3] % 2 == 0:
                loop.analyse(frame)
    for st in streams:
        st[0].close()


class Worker:
    def __init__(self, kind: str, endpoint: str) -> None:
        import psutil

        from smartcity.supervisor import ENGINE_MALLOC_ENV

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        if kind == "ours":
            self.proc = ctx.Process(target=engine_worker, args=(child, endpoint), daemon=True)
        else:
            self.proc = ctx.Process(target=peer_worker, args=(child,), daemon=True)
        # Ours runs with the environment `smartcity run` gives the engine (its malloc settings);
        # the child reads it at its start.
        env = ENGINE_MALLOC_ENV if kind == "ours" else {}
        saved = {k: os.environ.get(k) for k in env}
        for k, v in env.items():
            os.environ.setdefault(k, v)
        try:
            self.proc.start()
        finally:
            for k, was in saved.items():
                if was is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = was
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            raise RuntimeError(f"{kind} worker did not start")
        self.ps = psutil.Process(self.proc.pid)

    def rss(self, seconds: float = 2.0, samples: int = 5) -> float:
        """Median RSS over a few samples, bytes."""
        vals = []
        for i in range(samples):
            vals.append(self.ps.memory_info().rss)
            if i < samples - 1:
                time.sleep(seconds / (samples - 1))
        return float(np.median(vals))

    def ask(self, *cmd: Any) -> Any:
        self.conn.send(cmd)
        if not self.conn.poll(120):
            raise RuntimeError(f"worker did not answer {cmd[0]}")
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --------------------------------------------------------------------------- measurements


def per_stream(
    kind: str, endpoint: str, clip: Path, steps: list[int], settle_s: float
) -> dict[str, Any]:
    w = Worker(kind, endpoint)
    try:
        time.sleep(2.0)
        rows = [{"streams": 0, "rss": w.rss()}]
        n = 0
        for target in steps:
            w.ask("add", str(clip), target - n)
            n = target
            time.sleep(settle_s)
            rss = w.rss()
            rows.append({"streams": n, "rss": rss, **w.ask("stats")})
    finally:
        w.close()
    base = rows[0]["rss"]
    x = np.array([r["streams"] for r in rows], np.float64)
    y = np.array([r["rss"] for r in rows], np.float64)
    slope = float(np.polyfit(x, y, 1)[0]) if len(rows) > 1 else float("nan")
    last = rows[-1]
    return {
        "kind": kind,
        "clip": str(clip.relative_to(ROOT)),
        "rows": rows,
        "baseline_mb": base / MB,
        "per_stream_mb": (last["rss"] - base) / last["streams"] / MB,
        "slope_mb": slope / MB,
        "ring_mb_per_stream": last.get("ring_bytes", 0) / last["streams"] / MB,
    }


def growth(
    endpoint: str, streams: int, seconds: float, warmup_s: float, window_s: float
) -> dict[str, Any]:
    w = Worker("ours", endpoint)
    try:
        w.ask("add", str(CLIP_768), streams)
        t0 = time.monotonic()
        samples: list[tuple[float, float]] = []
        heap: list[tuple[float, dict[str, float] | None]] = []
        while True:
            t = time.monotonic() - t0
            samples.append((t, float(w.ps.memory_info().rss)))
            heap.append((t, w.ask("heap")))
            if t >= seconds:
                break
            time.sleep(min(5.0, seconds - t))
        stats = w.ask("stats")
    finally:
        w.close()
    after = [(t, r) for t, r in samples if t >= warmup_s]
    base = after[0][1]
    last = after[-1][1]
    t_end = after[-1][0]
    first_win = [r for t, r in after if t <= warmup_s + window_s]
    last_win = [r for t, r in after if t >= t_end - window_s]
    med_first, med_last = float(np.median(first_win)), float(np.median(last_win))
    tt = np.array([t for t, _ in after])
    rr = np.array([r for _, r in after])
    slope = float(np.polyfit(tt, rr, 1)[0]) if len(after) > 2 else float("nan")
    heap_after = [(t, h) for t, h in heap if t >= warmup_s and h]
    return {
        "streams": streams,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "window_s": window_s,
        "samples": samples,
        "heap": heap,
        "rss_at_warmup_mb": base / MB,
        "rss_last_mb": last / MB,
        "rss_max_mb": max(r for _, r in after) / MB,
        "rss_median_first_mb": med_first / MB,
        "rss_median_last_mb": med_last / MB,
        "growth": (med_last - med_first) / med_first,
        "growth_last_sample": (last - base) / base,
        "slope_mb_per_min": slope * 60 / MB,
        "heap_in_use_first_mb": heap_after[0][1]["in_use"] if heap_after else None,
        "heap_in_use_last_mb": heap_after[-1][1]["in_use"] if heap_after else None,
        "stats": stats,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps-768", default="4,8,16", help="stream counts at 768x576")
    ap.add_argument("--steps-1080", default="2,4,8", help="stream counts at 1920x1080")
    ap.add_argument("--settle", type=float, default=14.0, help="seconds after each step (ours)")
    ap.add_argument("--peer-settle", type=float, default=6.0, help="seconds after each step")
    ap.add_argument("--growth-streams", type=int, default=16)
    ap.add_argument("--growth-seconds", type=float, default=120.0)
    ap.add_argument("--growth-warmup", type=float, default=30.0)
    ap.add_argument(
        "--growth-window", type=float, default=60.0, help="seconds of RSS medians at both ends"
    )
    ap.add_argument("--only", choices=["per-stream", "growth"], default=None)
    ap.add_argument("--quick", action="store_true", help="steps 4,8 / 2,4; growth 60 s")
    ap.add_argument("--json-out", type=Path, help="also write the JSON figures to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps_768, args.steps_1080, args.growth_seconds = "4,8", "2,4", 60.0
        args.growth_warmup, args.growth_window = 20.0, 15.0

    from smartcity.bus import Broker

    print(
        f"bench/memory.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.node()}  "
        f"CPUs: {os.cpu_count()}, nothing pinned, load average {os.getloadavg()[0]:.2f}"
    )
    sys.stdout.flush()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    results: dict[str, dict[str, Any]] = {}
    grow: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="sc-mem-") as run_dir:
        os.chmod(run_dir, 0o700)
        broker = Broker(run_dir).start()
        try:
            if args.only in (None, "per-stream"):
                clips = {"768x576": CLIP_768, "1920x1080": ensure_1080p()}
                steps = {
                    "768x576": [int(x) for x in args.steps_768.split(",")],
                    "1920x1080": [int(x) for x in args.steps_1080.split(",")],
                }
                for res, clip in clips.items():
                    for kind in ("ours", "peer"):
                        settle = args.settle if kind == "ours" else args.peer_settle
                        r = per_stream(kind, broker.xsub_endpoint, clip, steps[res], settle)
                        results[f"{kind} {res}"] = r
                        print(
                            f"  {kind} {res}: {r['per_stream_mb']:.1f} MB per stream",
                            flush=True,
                        )
            if args.only in (None, "growth"):
                print(
                    f"  growth: {args.growth_streams} streams for {args.growth_seconds:g} s ...",
                    flush=True,
                )
                grow = growth(
                    broker.xsub_endpoint,
                    args.growth_streams,
                    args.growth_seconds,
                    args.growth_warmup,
                    args.growth_window,
                )
        finally:
            broker.stop()

    goals: dict[str, Any] = {}
    if results:
        print()
        print("resident memory (RSS) per stream; MB = 10^6 bytes")
        print(
            f"   {'contender':<22} {'RSS at 0':>9} {'steps: streams -> RSS MB':<44} "
            f"{'per stream':>10} {'slope':>6} {'ring':>5}"
        )
        for key, r in results.items():
            steps_txt = ", ".join(f"{x['streams']}: {x['rss'] / MB:.0f}" for x in r["rows"][1:])
            print(
                f"   {key:<22} {r['baseline_mb']:>9.0f} {steps_txt:<44} "
                f"{r['per_stream_mb']:>10.1f} {r['slope_mb']:>6.1f} "
                f"{r['ring_mb_per_stream']:>5.2f}"
            )
            last = r["rows"][-1]
            if "frames_dropped" in last and last.get("ring_seconds") is not None:
                if r["kind"] == "ours":
                    print(
                        f"   {'':<22} (at {last['streams']} streams: rings hold "
                        f"{last['ring_seconds']:.1f} s, frames dropped so far "
                        f"{last['frames_dropped']})"
                    )
        print("   (per stream: (RSS at N - RSS at 0) / N; slope: least squares over the steps;")
        print("    ring: the packet rings' bytes per stream, in MB, part of ours' figure)")
        print()
        print("goals")
        for res, goal in GOALS_MB.items():
            ours = results.get(f"ours {res}")
            peer = results.get(f"peer {res}")
            if not ours:
                continue
            v = ours["per_stream_mb"]
            vs = v / peer["per_stream_mb"] if peer and peer["per_stream_mb"] > 0 else float("nan")
            goals[res] = {"per_stream_mb": v, "goal_mb": goal, "met": v <= goal, "vs_peer": vs}
            print(
                f"   {res}: {v:.1f} MB per stream (goal <= {goal:g}: "
                f"{'met' if v <= goal else 'MISSED'}); ours / peer {vs:.2f}x"
            )
    if grow:
        g = grow
        ok = g["growth"] < GOAL_GROWTH
        goals["growth"] = {"value": g["growth"], "goal": GOAL_GROWTH, "met": ok}
        w = g["window_s"]
        t_end = g["samples"][-1][0]
        print(
            f"   growth over {g['seconds']:g} s of {g['streams']} streams: median RSS "
            f"{g['rss_median_first_mb']:.1f} MB over {g['warmup_s']:g}-{g['warmup_s'] + w:g} s -> "
            f"{g['rss_median_last_mb']:.1f} MB over {t_end - w:.0f}-{t_end:.0f} s: "
            f"{g['growth']:+.2%} (goal < 1 %: {'met' if ok else 'MISSED'})"
        )
        print(
            f"   last sample against the first after the warm-up: {g['rss_at_warmup_mb']:.1f} -> "
            f"{g['rss_last_mb']:.1f} MB ({g['growth_last_sample']:+.2%}), max "
            f"{g['rss_max_mb']:.1f}; slope {g['slope_mb_per_min']:+.2f} MB/min"
        )
        if g["heap_in_use_first_mb"] is not None:
            print(
                f"   heap in use (mallinfo2): {g['heap_in_use_first_mb']:.1f} MB at "
                f"{g['warmup_s']:g} s -> {g['heap_in_use_last_mb']:.1f} MB at the end; "
                f"{g['stats']['heap_trims']} trims took {g['stats']['heap_trim_ms']:.0f} ms in all"
            )
        print(f"   {g['stats']['frames']} frames analysed, {g['stats']['frames_dropped']} dropped")
    report.update({"per_stream": results, "growth": grow, "goals": goals})
    text = json.dumps(report)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
