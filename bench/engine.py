"""Engine capacity: how many looping streams of the real clip `smartcity engine` sustains on this
machine with no backlog, and the latency from a frame's capture to its tracks message at a
subscriber; against a plain Python loop (PyAV, OpenCV, ONNX Runtime, NumPy, cv2.dnn.NMSBoxes)
measured in the same run.

Engine: `smartcity engine --with-broker` as a subprocess (its own process and GIL, as deployed),
N cameras of tests/media/vtest-h264.mp4 (768x576, 10 fps) with loop and realtime (each file
plays at its own rate, as a camera sends), analyze_fps 5, the person-ssdlite card on the CPU,
inference_threads 1. This process subscribes to tracks.* and health.* on the engine's run
directory. After --warmup seconds, a window of --seconds: the health messages' counters at
its start and end give frames dropped (sampled, no free batch slot), decoded and sampled per
stream; the tracks messages give the analysed rate and the latency now (CLOCK_REALTIME) minus
their t_ns (the wall clock when the frame left the decoder). A count is sustained when, over
the window, no stream dropped a frame, every stream decoded >= 95 % of its source rate, the
subscriber received >= 95 % of N x analyze_fps tracks messages a second, and nothing was lost
on the bus. The counts are stepped (--streams, default 8,16,24,32); stepping stops at the
first count not sustained unless --all.

Peer: one Python thread over the same clip at full speed: PyAV decode (one thread), the card's
input (RGB, cv2.resize INTER_AREA stretched to 300x300, as the card says: resize stretch,
filter area), /255 float32 NCHW, onnxruntime with the engine's session options (one intra-op
thread, sequential), the boxes_scores outputs decoded with NumPy (score threshold, boxes to
frame pixels) and cv2.dnn.NMSBoxes; every frame. Its frames/s end to end, converted as the
issue does: streams it could hold at 5 fps = fps / 5; and, closer to the engine's work (it
decodes all 10 frames a second of a stream but analyses 5), 1 / (10 decode + 5 analysis).
The peer runs before and after the engine's steps; the better run counts.

Run: .venv/bin/python bench/engine.py [--quick] [--streams 8,16,24,32] [--seconds 20]
[--json-out PATH]. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "media" / "vtest-h264.mp4"
MODELS = ROOT / "models"
#: The model of both contenders (--model; the environment carries it to spawned workers).
MODEL = os.environ.get("SMARTCITY_BENCH_MODEL", "person-ssdlite")
#: The engine's ONNX Runtime intra-op threads (--inference-threads; the peer keeps one).
INFERENCE_THREADS = int(os.environ.get("SMARTCITY_BENCH_INFERENCE_THREADS", "1"))
SOURCE_FPS = 10.0
ANALYZE_FPS = 5.0
GOAL_STREAMS = 24
GOAL_P99_MS = 250.0


# --------------------------------------------------------------------------- the peer


class PlainLoop:
    """The plain Python loop: PyAV -> cv2 -> onnxruntime -> NumPy -> cv2.dnn.NMSBoxes.

    Reads the model card for its input size and thresholds, so it does the engine's work."""

    def __init__(self, threads: int = 1) -> None:
        import cv2
        import onnxruntime as ort

        from smartcity.engine.models import load_card

        cv2.setNumThreads(1)
        self.cv2 = cv2
        self.card = load_card(MODELS / MODEL)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(self.card.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input = self.card.input_name
        self.outputs = list(self.card.output_tensors)
        self.size = (self.card.input_width, self.card.input_height)
        if self.card.resize != "stretch" or self.card.output_format != "boxes_scores":
            raise RuntimeError("the plain loop is written for a stretched boxes_scores model")

    def analyse(self, frame: Any) -> int:
        """One decoded av.VideoFrame -> detections after NMS (their count)."""
        cv2 = self.cv2
        img = frame.to_ndarray(format="rgb24")
        h, w = img.shape[:2]
        small = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        x = np.ascontiguousarray(small.transpose(2, 0, 1)[None], dtype=np.float32)
        x *= np.float32(1 / 255)
        boxes, scores = self.session.run(self.outputs, {self.input: x})
        s = scores[0]
        cls = s.argmax(axis=1)
        best = s[np.arange(len(s)), cls]
        keep = best >= self.card.score_threshold
        if not keep.any():
            return 0
        b = boxes[0][keep] * np.array([w, h, w, h], np.float32)
        xywh = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
        idx = cv2.dnn.NMSBoxes(
            xywh.tolist(),
            best[keep].tolist(),
            self.card.score_threshold,
            self.card.iou_threshold,
            top_k=self.card.max_detections,
        )
        return len(idx)

    def run(self, clip: Path, max_frames: int) -> dict[str, float]:
        """Every frame of the clip (up to max_frames) at full speed; decode timed apart."""
        import av

        c = av.open(str(clip))
        s = c.streams.video[0]
        s.codec_context.thread_type = "NONE"
        s.codec_context.thread_count = 1
        frames = dets = 0
        t_dec = t_ana = 0.0
        c0 = time.process_time()
        t0 = time.perf_counter()
        it = c.decode(s)
        while frames < max_frames:
            a = time.perf_counter()
            frame = next(it, None)
            b = time.perf_counter()
            if frame is None:
                break
            dets += self.analyse(frame)
            t_dec += b - a
            t_ana += time.perf_counter() - b
            frames += 1
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        c.close()
        fps = frames / wall
        dec_ms, ana_ms = t_dec / frames * 1e3, t_ana / frames * 1e3
        return {
            "frames": frames,
            "detections": dets,
            "wall_s": wall,
            "cpu_s": cpu,
            "fps": fps,
            "fps_per_cpu_s": frames / cpu if cpu else float("nan"),
            "decode_ms": dec_ms,
            "analyse_ms": ana_ms,
            "streams_issue": fps / ANALYZE_FPS,
            "streams_decode_all": 1e3 / (SOURCE_FPS * dec_ms + ANALYZE_FPS * ana_ms),
        }


# --------------------------------------------------------------------------- the engine


def write_config(path: Path, n: int, clip: Path, max_batch: int) -> None:
    lines = [
        f"model: {MODEL}",
        f"models_root: {MODELS}",
        f"max_batch: {max_batch}",
        "max_wait_ms: 50",
        "health_interval_s: 1.0",
        f"inference_threads: {INFERENCE_THREADS}",
        "cameras:",
    ]
    for i in range(n):
        lines += [
            f"  - id: cam{i:03d}",
            f"    url: {clip}",
            f"    analyze_fps: {ANALYZE_FPS:g}",
            "    loop: true",
            "    realtime: true",
        ]
    path.write_text("\n".join(lines) + "\n")


def run_engine(n: int, warmup_s: float, seconds: float, max_batch: int) -> dict[str, Any]:
    """One engine subprocess with n cameras; figures over the window after warmup_s."""
    import psutil

    from smartcity.bus import HealthEvent, Subscriber, TracksEvent, subscriber_endpoint

    with tempfile.TemporaryDirectory(prefix="sc-eng-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir(mode=0o700)
        cfg = Path(tmp) / "engine.yaml"
        write_config(cfg, n, CLIP, max_batch)
        total = warmup_s + seconds + 30  # the engine stops itself if this process dies
        cmd = [sys.executable, "-m", "smartcity", "engine", "--config", str(cfg)]
        cmd += ["--run-dir", str(run_dir), "--with-broker", "--seconds", f"{total:g}"]
        sub = Subscriber(subscriber_endpoint(run_dir), ["tracks.", "health."])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ps = psutil.Process(proc.pid)
        health: dict[str, HealthEvent] = {}
        first_tracks: float | None = None
        t_start = time.monotonic()
        try:
            # Warm-up: until tracks of every camera arrived, then warmup_s more.
            seen: set[str] = set()
            while True:
                ev = sub.recv(timeout_s=1.0)
                if proc.poll() is not None:
                    raise RuntimeError(f"engine exited early: {proc.stdout.read()[-2000:]}")  # type: ignore[union-attr]
                if time.monotonic() - t_start > 120:
                    raise RuntimeError(f"only {len(seen)} of {n} cameras sent tracks in 120 s")
                if isinstance(ev, HealthEvent):
                    health[ev.cam] = ev
                elif isinstance(ev, TracksEvent):
                    seen.add(ev.cam)
                    if len(seen) == n and first_tracks is None:
                        first_tracks = time.monotonic()
                if first_tracks is not None and time.monotonic() - first_tracks >= warmup_s:
                    if len(health) == n:
                        break
            h0 = dict(health)
            st0 = {k: (v.received, v.gaps) for k, v in sub.stats.items()}
            cpu0 = ps.cpu_times()
            sys0 = psutil.cpu_times()
            w0 = time.monotonic()
            end = w0 + seconds
            lat: list[int] = []
            tracks_msgs = 0
            n_tracks = 0
            while time.monotonic() < end:
                ev = sub.recv(timeout_s=0.5)
                if isinstance(ev, TracksEvent):
                    lat.append(time.time_ns() - ev.t_ns)
                    tracks_msgs += 1
                    n_tracks += len(ev.track_id)
                elif isinstance(ev, HealthEvent):
                    health[ev.cam] = ev
            wall = time.monotonic() - w0
            cpu1 = ps.cpu_times()
            sys1 = psutil.cpu_times()
            rss = ps.memory_info().rss
            h1 = dict(health)
            st1 = {k: (v.received, v.gaps) for k, v in sub.stats.items()}
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            sub.close()
    # Health counters over the window (each camera's health messages, one a second).
    dropped = decoded = sampled = 0
    dec_rates = []
    bus_dropped = 0
    infer_ms = []
    for cam, e1 in h1.items():
        e0 = h0[cam]
        dt = (e1.t_ns - e0.t_ns) / 1e9
        dropped += e1.frames_dropped - e0.frames_dropped
        decoded += e1.frames_decoded - e0.frames_decoded
        sampled += e1.frames_sampled - e0.frames_sampled
        bus_dropped += e1.bus_dropped - e0.bus_dropped
        dec_rates.append((e1.frames_decoded - e0.frames_decoded) / dt if dt > 0 else 0.0)
        infer_ms.append(e1.infer_ms)
    gaps = sum(g1 - st0.get(k, (0, 0))[1] for k, (_, g1) in st1.items())
    lat_ms = np.array(lat, np.float64) / 1e6
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    sys_busy = sum(sys1) - sys1.idle - sys1.iowait - (sum(sys0) - sys0.idle - sys0.iowait)
    sys_total = sum(sys1) - sum(sys0)
    rate = tracks_msgs / wall
    r = {
        "streams": n,
        "window_s": wall,
        "tracks_msgs_per_s": rate,
        "expected_per_s": n * ANALYZE_FPS,
        "mean_tracks_per_msg": n_tracks / tracks_msgs if tracks_msgs else 0.0,
        "frames_dropped": dropped,
        "frames_decoded": decoded,
        "frames_sampled": sampled,
        "min_decode_fps": min(dec_rates) if dec_rates else 0.0,
        "bus_dropped": bus_dropped,
        "bus_gaps": gaps,
        "infer_ms_per_frame": float(np.median(infer_ms)) if infer_ms else float("nan"),
        "latency_p50_ms": float(np.percentile(lat_ms, 50)) if len(lat_ms) else float("nan"),
        "latency_p99_ms": float(np.percentile(lat_ms, 99)) if len(lat_ms) else float("nan"),
        "latency_max_ms": float(lat_ms.max()) if len(lat_ms) else float("nan"),
        "engine_cpu_s_per_s": cpu_s / wall,
        "machine_busy": sys_busy / sys_total if sys_total else float("nan"),
        "engine_rss_mb": rss / 2**20,
        "analysed_per_cpu_s": rate / (cpu_s / wall) if cpu_s else float("nan"),
    }
    r["sustained"] = bool(
        dropped == 0
        and r["min_decode_fps"] >= 0.95 * SOURCE_FPS
        and rate >= 0.95 * n * ANALYZE_FPS
        and gaps == 0
        and bus_dropped == 0
    )
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="8,16,24,32", help="stream counts to step through")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per count")
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds before the window")
    ap.add_argument("--max-batch", type=int, default=8, help="the engine's max_batch")
    ap.add_argument("--all", action="store_true", help="go on after a count is not sustained")
    ap.add_argument("--peer-frames", type=int, default=400, help="frames of the peer's run")
    ap.add_argument("--quick", action="store_true", help="8,16 for 8 s each; peer 150 frames")
    ap.add_argument("--json-out", type=Path, help="also write the JSON figures to this file")
    ap.add_argument(
        "--inference-threads",
        type=int,
        default=None,
        help="the engine's inference_threads (default 1; the peer loop keeps one)",
    )
    ap.add_argument(
        "--model",
        default=None,
        help="a stretched boxes_scores model of models/ for both (default person-ssdlite; "
        "person-ssdlite-int8 is its int8 copy)",
    )
    args = ap.parse_args(argv)
    if args.inference_threads is not None:
        global INFERENCE_THREADS
        INFERENCE_THREADS = args.inference_threads
        os.environ["SMARTCITY_BENCH_INFERENCE_THREADS"] = str(args.inference_threads)
    if args.model is not None:
        global MODEL
        MODEL = args.model
        os.environ["SMARTCITY_BENCH_MODEL"] = args.model
    if args.quick:
        args.streams, args.seconds, args.warmup, args.peer_frames = "8,16", 8.0, 4.0, 150
    counts = [int(x) for x in args.streams.split(",") if x]

    ncpu = os.cpu_count()
    load = os.getloadavg()
    print(
        f"bench/engine.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.node()}  "
        f"CPUs: {ncpu}, nothing pinned, load average {load[0]:.2f}"
    )
    print(
        f"clip {CLIP.relative_to(ROOT)} (768x576, {SOURCE_FPS:g} fps) looping in realtime, "
        f"analyze_fps {ANALYZE_FPS:g}, model {MODEL} on the CPU, one inference thread, "
        f"max_batch {args.max_batch}"
    )
    sys.stdout.flush()
    peer = PlainLoop()
    peer_runs = [peer.run(CLIP, args.peer_frames)]
    print(f"  peer run 1: {peer_runs[-1]['fps']:.1f} fps", flush=True)
    steps: list[dict[str, Any]] = []
    for n in counts:
        r = run_engine(n, args.warmup, args.seconds, args.max_batch)
        steps.append(r)
        print(
            f"  {n:3d} streams: {'sustained' if r['sustained'] else 'NOT sustained'} "
            f"({r['tracks_msgs_per_s']:.1f} tracks msgs/s of {r['expected_per_s']:g}, dropped "
            f"{r['frames_dropped']}, p99 {r['latency_p99_ms']:.0f} ms)",
            flush=True,
        )
        if not r["sustained"] and not args.all:
            break
    peer_runs.append(peer.run(CLIP, args.peer_frames))
    print(f"  peer run 2: {peer_runs[-1]['fps']:.1f} fps", flush=True)
    pr = max(peer_runs, key=lambda x: x["fps"])

    ok = [s for s in steps if s["sustained"]]
    best = max(ok, key=lambda s: s["streams"]) if ok else None
    print()
    print(f"engine, {args.seconds:g} s window after {args.warmup:g} s of warm-up per count")
    head = (
        f"   {'streams':>7} {'tracks/s':>8} {'of':>5} {'dropped':>7} {'min dec fps':>11} "
        f"{'gaps':>4} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'infer ms':>8} "
        f"{'cpu/s':>6} {'busy':>5} {'RSS MB':>7}  verdict"
    )
    print(head)
    for s in steps:
        print(
            f"   {s['streams']:>7} {s['tracks_msgs_per_s']:>8.1f} {s['expected_per_s']:>5.0f} "
            f"{s['frames_dropped']:>7} {s['min_decode_fps']:>11.2f} {s['bus_gaps']:>4} "
            f"{s['latency_p50_ms']:>7.1f} {s['latency_p99_ms']:>7.1f} {s['latency_max_ms']:>7.1f} "
            f"{s['infer_ms_per_frame']:>8.2f} {s['engine_cpu_s_per_s']:>6.2f} "
            f"{s['machine_busy']:>5.0%} {s['engine_rss_mb']:>7.0f}  "
            f"{'sustained' if s['sustained'] else 'NOT sustained'}"
        )
    print("   (cpu/s: the engine's CPU-seconds per second; busy: the whole machine's CPUs)")
    print()
    print(f"peer: plain Python loop, one thread, {pr['frames']} frames at full speed (best of 2)")
    print(
        f"   {pr['fps']:.1f} frames/s end to end ({pr['fps_per_cpu_s']:.1f} per CPU-second): "
        f"decode {pr['decode_ms']:.2f} ms + analyse {pr['analyse_ms']:.2f} ms a frame"
    )
    print(
        f"   streams it could hold at {ANALYZE_FPS:g} fps: {pr['streams_issue']:.1f} (fps / "
        f"{ANALYZE_FPS:g}, the issue's conversion); {pr['streams_decode_all']:.1f} decoding all "
        f"{SOURCE_FPS:g} frames a second of each"
    )
    print()
    print("goals")
    n_best = best["streams"] if best else 0
    ratio = n_best / pr["streams_issue"] if pr["streams_issue"] else float("nan")
    ratio2 = n_best / pr["streams_decode_all"] if pr["streams_decode_all"] else float("nan")
    met_n = n_best >= GOAL_STREAMS
    print(
        f"   streams sustained {n_best} (of {','.join(map(str, counts))} tried); goal >= "
        f"{GOAL_STREAMS}: {'met' if met_n else 'MISSED'}"
    )
    print(
        f"   engine / peer: {ratio:.2f}x the peer's fps/5, {ratio2:.2f}x its streams decoding "
        "all frames (the engine uses every CPU, the peer one thread)"
    )
    if best:
        eff = best["analysed_per_cpu_s"] / pr["fps_per_cpu_s"]
        print(
            f"   per CPU-second at {n_best} streams: engine {best['analysed_per_cpu_s']:.1f} "
            f"analysed frames (and {SOURCE_FPS / ANALYZE_FPS:g}x as many decoded), peer "
            f"{pr['fps_per_cpu_s']:.1f} decoded+analysed: {eff:.2f}x"
        )
    ref = best or (steps[0] if steps else None)
    met_p99 = False
    if ref:
        met_p99 = ref["latency_p99_ms"] < GOAL_P99_MS
        print(
            f"   latency capture -> subscriber at {ref['streams']} streams: p50 "
            f"{ref['latency_p50_ms']:.1f} ms, p99 {ref['latency_p99_ms']:.1f} ms; goal p99 < "
            f"{GOAL_P99_MS:g} ms: {'met' if met_p99 else 'MISSED'}"
        )
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": ncpu,
        "loadavg": load,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "steps": steps,
        "peer_runs": peer_runs,
        "peer": pr,
        "streams_sustained": n_best,
        "ratio_vs_peer_issue": ratio,
        "ratio_vs_peer_decode_all": ratio2,
        "goals": {"streams": met_n, "p99": met_p99},
    }
    text = json.dumps(report)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
