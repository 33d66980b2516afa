"""Decode and convert throughput of one stream: smartcity's C++ core against its peers.

Every figure is measured in the same run as the peer it is compared with, and printed as a
ratio: the machines this runs on are shared and noisy, so absolute fps mean little. Each
contender runs `--reps` times (contenders alternate, their order rotating from one repetition
to the next) and its fastest run counts. The process is pinned to one CPU (threads it starts,
the core's stream thread and the ffmpeg child included, inherit the pin), so that every
contender works on one core and "fps per CPU-second" compares work per core.

Per clip (the real clip in tests/media and a generated 1080p30 clip in bench/out):

1. decode + convert every frame to a 640x640 letterboxed float32 NCHW tensor: the core against
   PyAV loops doing the same work, written the usual way and tuned;
2. decode alone: the core's decode_only stream against `ffmpeg -threads 1 -i CLIP -f null -`;
3. analyze_fps at half the source rate: frames decoded and sampled per second, against (2).

Run: .venv/bin/python bench/decode.py [--quick] [--json-out PATH]. The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

import smartcity as sc

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
REAL_CLIP = ROOT / "tests" / "media" / "vtest-h264.mp4"
GEN_CLIP = OUT_DIR / "testsrc2-1080p30-noise.mp4"
# 10 s of testsrc2 with temporal noise (not trivially compressible: about 6.5 Mbit/s, in the
# range of a 1080p camera), libx264 preset medium, CRF 23, GOP 30, no B-frames.
GEN_ARGS = [
    "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=10",
    "-vf", "noise=alls=5:allf=t+u,format=yuv420p",
    "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-g", "30", "-bf", "0", "-an",
]  # fmt: skip

SIZE = 640  # model input: SIZE x SIZE
PAD = 114
MAX_BATCH = 8
POLL_S = 0.002  # how often the core's stream state is polled to find when it stopped


# --------------------------------------------------------------------------- clips


@dataclass
class Clip:
    key: str
    path: Path
    label: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: int = 0
    pix_fmt: str = ""
    bitrate_kbps: float = 0.0


def ensure_generated_clip(quiet: bool) -> None:
    """Encodes the 1080p clip once; a changed recipe (GEN_ARGS) encodes it again."""
    stamp = GEN_CLIP.with_suffix(".cmd")
    recipe = shlex.join(GEN_ARGS)
    if GEN_CLIP.exists() and stamp.exists() and stamp.read_text() == recipe:
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = GEN_CLIP.with_suffix(".tmp.mp4")
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *GEN_ARGS, str(tmp)]
    if not quiet:
        print(f"generating {GEN_CLIP.relative_to(ROOT)} (once): {shlex.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)
    tmp.replace(GEN_CLIP)
    stamp.write_text(recipe)


def probe(clip: Clip) -> Clip:
    with av.open(str(clip.path)) as c:
        s = c.streams.video[0]
        clip.width = s.codec_context.width
        clip.height = s.codec_context.height
        clip.fps = float(s.average_rate or s.base_rate)
        clip.pix_fmt = s.codec_context.pix_fmt or ""
        clip.frames = s.frames or sum(1 for p in c.demux(s) if p.size)
        if c.duration:
            clip.bitrate_kbps = clip.path.stat().st_size * 8 / (c.duration / av.time_base) / 1e3
    return clip


def letterbox_geometry(w: int, h: int) -> tuple[int, int, int, int]:
    """(new_w, new_h, left, top): the same rounding as the core's ComputeGeometry."""
    s = min(SIZE / w, SIZE / h)
    nw = min(max(int(np.floor(w * s + 0.5)), 1), SIZE)
    nh = min(max(int(np.floor(h * s + 0.5)), 1), SIZE)
    return nw, nh, (SIZE - nw) // 2, (SIZE - nh) // 2


# --------------------------------------------------------------------------- measurements


@dataclass
class Run:
    frames: int  # frames the contender delivered (tensors, or decoded frames)
    wall_s: float
    cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def fps_cpu(self) -> float:
        return self.frames / self.cpu_s if self.cpu_s > 0 else 0.0


class CoreBench:
    """One Pipeline for the whole benchmark: its batch buffers stay allocated and warm."""

    def __init__(self) -> None:
        self.pipe = sc.Pipeline(
            width=SIZE,
            height=SIZE,
            resize=sc.ResizeMode.letterbox,
            dtype=sc.DType.float32,
            max_batch=MAX_BATCH,
            buffers=3,
        )
        self._ids = itertools.count()

    def close(self) -> None:
        self.pipe.close()

    def _config(self, clip: Clip, analyze_fps: float, decode_only: bool) -> sc.StreamConfig:
        return sc.StreamConfig(
            camera_id=f"bench{next(self._ids)}",
            url=str(clip.path),
            analyze_fps=analyze_fps,
            decode_only=decode_only,
            block_when_busy=True,
            decoder_threads=1,
            pre_event_s=0,
        )

    def _drain(self) -> int:
        n = 0
        while (b := self.pipe.next_batch(MAX_BATCH, 0)) is not None:
            n += b.size
            b.release()
        return n

    def run(self, clip: Clip, analyze_fps: float = 0.0, decode_only: bool = False) -> Run:
        """Wall time: add_stream until the stream's state is "stopped" (every sampled frame
        is converted and committed by then), polled every POLL_S by a watcher thread while
        this thread consumes batches. With every frame sampled, the consumer asks for exactly
        the frames still due, so the last partial batch does not wait out max_wait_ms."""
        cfg = self._config(clip, analyze_fps, decode_only)
        cam = cfg.camera_id
        pipe = self.pipe
        stopped = threading.Event()
        t_stop = [0.0]

        def watch() -> None:
            while True:
                if pipe.stream_stats(cam)["state"] in ("stopped", "failed"):
                    t_stop[0] = time.perf_counter()
                    stopped.set()
                    return
                time.sleep(POLL_S)

        expected = clip.frames if analyze_fps == 0 and not decode_only else 0
        got = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        pipe.add_stream(cfg)
        if decode_only:
            watch()
        else:
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            while not stopped.is_set() or got < expected:
                want = min(MAX_BATCH, expected - got) if got < expected else MAX_BATCH
                b = pipe.next_batch(want, 50)
                if b is not None:
                    got += b.size
                    b.release()
                elif stopped.is_set():
                    break
            got += self._drain()
            watcher.join()
        wall = t_stop[0] - t0
        cpu = time.process_time() - c0
        st = pipe.stream_stats(cam)
        pipe.remove_stream(cam)
        got += self._drain()
        if st["state"] != "stopped":
            raise RuntimeError(
                f"core stream on {clip.path.name} ended {st['state']}: {st['last_error']}"
            )
        extra = {
            k: st[k]
            for k in (
                "frames_decoded",
                "frames_sampled",
                "frames_skipped",
                "frames_dropped",
                "decode_p50_ms",
                "convert_p50_ms",
            )
        }
        extra["frames_consumed"] = got
        frames = st["frames_decoded"] if decode_only else st["frames_sampled"]
        return Run(frames, wall, cpu, extra)

    def first_batch(self, clip: Clip) -> np.ndarray:
        cfg = self._config(clip, 0.0, False)
        self.pipe.add_stream(cfg)
        b = self.pipe.next_batch(MAX_BATCH, 10000)
        if b is None or b.size != MAX_BATCH:
            raise RuntimeError("the core delivered no full first batch")
        t = np.array(b.tensor, copy=True)
        b.release()
        self.pipe.remove_stream(cfg.camera_id)
        self._drain()
        return t


def run_ffmpeg(clip: Clip) -> Run:
    """`ffmpeg -threads 1 -i CLIP -f null -`: subprocess wall clock and the child's CPU time;
    extra holds ffmpeg's own -benchmark figures (its rtime leaves out process start-up and
    opening/probing the input)."""
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-benchmark", "-filter_threads", "1",
        "-threads", "1", "-i", str(clip.path), "-map", "0:v:0", "-f", "null", "-",
    ]  # fmt: skip
    ffmpeg_startup_s(1)  # one more sample of the start-up cost, beside every run
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err[-500:]}")
    frames = [int(m) for m in re.findall(r"frame=\s*(\d+)", err)]
    bench = re.search(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s", err)
    extra = {}
    if bench:
        extra = {"utime_s": float(bench[1]), "stime_s": float(bench[2]), "rtime_s": float(bench[3])}
    return Run(frames[-1] if frames else 0, wall, ru.ru_utime + ru.ru_stime, extra)


_FFMPEG_STARTUP: list[float] = []


def ffmpeg_startup_s(n: int = 3) -> float:
    """Wall time of starting the ffmpeg binary (loading its libraries) and exiting: the
    fastest of every sample taken so far."""
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-version"], stdout=subprocess.DEVNULL, check=True
        )
        _FFMPEG_STARTUP.append(time.perf_counter() - t0)
    return min(_FFMPEG_STARTUP)


def _open(clip: Clip) -> tuple[Any, Any]:
    c = av.open(str(clip.path))
    s = c.streams.video[0]
    s.codec_context.thread_type = "NONE"
    s.codec_context.thread_count = 1
    return c, s


def _timed(fn: Callable[[], int]) -> Run:
    c0 = time.process_time()
    t0 = time.perf_counter()
    n = fn()
    return Run(n, time.perf_counter() - t0, time.process_time() - c0)


def pyav_decode(clip: Clip) -> Run:
    """PyAV decode alone (its bundled FFmpeg, not the system's 5.1): the floor of its loops."""

    def work() -> int:
        c, s = _open(clip)
        n = sum(1 for _ in c.decode(s))
        c.close()
        return n

    return _timed(work)


def pyav_usual(clip: Clip, keep: list[np.ndarray] | None = None) -> Run:
    """The loop as it is usually written: new arrays for every frame, np.stack per batch."""

    def work() -> int:
        c, s = _open(clip)
        n = 0
        pending: list[np.ndarray] = []
        for frame in c.decode(s):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            scale = min(SIZE / w, SIZE / h)
            nw, nh = round(w * scale), round(h * scale)
            resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
            canvas = np.full((SIZE, SIZE, 3), PAD, dtype=np.uint8)
            top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
            canvas[top : top + nh, left : left + nw] = resized
            chw = np.ascontiguousarray((canvas.astype(np.float32) / 255.0).transpose(2, 0, 1))
            pending.append(chw)
            n += 1
            if len(pending) == MAX_BATCH:
                batch = np.stack(pending)
                pending = []
                if keep is not None:
                    keep.append(batch)
                    return n
        if pending:
            np.stack(pending)
        c.close()
        return n

    return _timed(work)


def _tuned_setup(clip: Clip) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    nw, nh, left, top = letterbox_geometry(clip.width, clip.height)
    # The geometry of a stream is fixed: the padding is written once, only the picture after.
    out = np.full((MAX_BATCH, 3, SIZE, SIZE), PAD / 255.0, dtype=np.float32)
    return out, (nw, nh, left, top)


def pyav_tuned_rgb(clip: Clip, keep: list[np.ndarray] | None = None) -> Run:
    """Tuned, in the shape the issue describes: preallocated batch tensor, padding written
    once, cv2.resize(dst=) into a preallocated buffer, cv2.split into preallocated planes,
    np.multiply(out=) straight into the slot (float32, no temporaries)."""

    def work() -> int:
        out, (nw, nh, left, top) = _tuned_setup(clip)
        small = np.empty((nh, nw, 3), np.uint8)
        planes = [np.empty((nh, nw), np.uint8) for _ in range(3)]
        views = [
            [out[k, ch, top : top + nh, left : left + nw] for ch in range(3)]
            for k in range(MAX_BATCH)
        ]
        inv = np.float32(1 / 255)
        c, s = _open(clip)
        n = k = 0
        for frame in c.decode(s):
            cv2.resize(
                frame.to_ndarray(format="rgb24"),
                (nw, nh),
                dst=small,
                interpolation=cv2.INTER_LINEAR,
            )
            cv2.split(small, planes)
            for ch in range(3):
                np.multiply(planes[ch], inv, out=views[k][ch])
            n += 1
            k += 1
            if k == MAX_BATCH:
                k = 0
                if keep is not None:
                    keep.append(out.copy())
                    return n
        c.close()
        return n

    return _timed(work)


def pyav_tuned_yuv(clip: Clip, keep: list[np.ndarray] | None = None) -> Run:
    """Tuned further: no full-size RGB frame at all. The decoder's Y, U and V planes (zero
    copy) are resized by cv2.resize(dst=) into one preallocated I420 image at the letterbox
    size, cv2.cvtColor(dst=) turns that into RGB (BT.601 limited range, like the core's
    default), then split and np.multiply(out=) into the slot as above."""

    def work() -> int:
        out, (nw, nh, left, top) = _tuned_setup(clip)
        w, h = clip.width, clip.height
        if nw % 2 or nh % 2 or w % 2 or h % 2:
            raise ValueError("the I420 path needs even sizes")
        i420 = np.empty((nh * 3 // 2, nw), np.uint8)
        chroma = i420[nh:].reshape(-1)
        q = (nh // 2) * (nw // 2)
        dsts = [
            (i420[:nh], w, h, (nw, nh)),
            (chroma[:q].reshape(nh // 2, nw // 2), w // 2, h // 2, (nw // 2, nh // 2)),
            (chroma[q:].reshape(nh // 2, nw // 2), w // 2, h // 2, (nw // 2, nh // 2)),
        ]
        rgb = np.empty((nh, nw, 3), np.uint8)
        planes = [np.empty((nh, nw), np.uint8) for _ in range(3)]
        views = [
            [out[k, ch, top : top + nh, left : left + nw] for ch in range(3)]
            for k in range(MAX_BATCH)
        ]
        inv = np.float32(1 / 255)
        c, s = _open(clip)
        n = k = 0
        for frame in c.decode(s):
            if frame.format.name not in ("yuv420p", "yuvj420p"):
                raise ValueError(f"the I420 path got {frame.format.name}")
            for plane, (dst, pw, ph, dsize) in zip(frame.planes, dsts, strict=True):
                src = np.frombuffer(plane, np.uint8).reshape(ph, plane.line_size)[:, :pw]
                cv2.resize(src, dsize, dst=dst, interpolation=cv2.INTER_LINEAR)
            cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420, dst=rgb)
            cv2.split(rgb, planes)
            for ch in range(3):
                np.multiply(planes[ch], inv, out=views[k][ch])
            n += 1
            k += 1
            if k == MAX_BATCH:
                k = 0
                if keep is not None:
                    keep.append(out.copy())
                    return n
        c.close()
        return n

    return _timed(work)


# --------------------------------------------------------------------------- the run


CONTENDERS = {
    # key: (section, label)
    "core": ("convert", "core (smartcity, C++ thread)"),
    "usual": ("convert", "PyAV loop, usual"),
    "tuned_rgb": ("convert", "PyAV loop, tuned A (rgb24 -> resize)"),
    "tuned_yuv": ("convert", "PyAV loop, tuned B (resize YUV planes)"),
    "core_decode": ("decode", "core, decode_only"),
    "ffmpeg": ("decode", "ffmpeg -threads 1 -f null"),
    "pyav_decode": ("decode", "PyAV decode only (its FFmpeg)"),
    "core_half": ("half", "core, analyze_fps = source/2"),
}


def measure_clip(
    core: CoreBench, clip: Clip, reps: int, log: Callable[[str], None]
) -> dict[str, Run]:
    half = clip.fps / 2
    jobs: dict[str, Callable[[], Run]] = {
        "core": lambda: core.run(clip),
        "usual": lambda: pyav_usual(clip),
        "tuned_rgb": lambda: pyav_tuned_rgb(clip),
        "tuned_yuv": lambda: pyav_tuned_yuv(clip),
        "core_decode": lambda: core.run(clip, decode_only=True),
        "ffmpeg": lambda: run_ffmpeg(clip),
        "pyav_decode": lambda: pyav_decode(clip),
        "core_half": lambda: core.run(clip, analyze_fps=half),
    }
    keys = list(jobs)
    best: dict[str, Run] = {}
    # The short decode-alone runs are the noisiest ratio: they get two extra repetitions.
    total = reps + 2 if reps > 1 else reps
    for rep in range(total):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in order:
            if rep >= reps and key in ("core", "usual", "tuned_rgb", "tuned_yuv"):
                continue
            r = jobs[key]()
            if key not in best or r.wall_s < best[key].wall_s:
                best[key] = r
        log(f"  {clip.key}: repetition {rep + 1}/{total} done")
    return best


def parity(core: CoreBench, clip: Clip) -> dict[str, dict[str, float]]:
    """How far the PyAV loops' first batch is from the core's, in 1/255 steps."""
    ref = core.first_batch(clip)
    out = {}
    for key, fn in (
        ("usual", pyav_usual),
        ("tuned_rgb", pyav_tuned_rgb),
        ("tuned_yuv", pyav_tuned_yuv),
    ):
        keep: list[np.ndarray] = []
        fn(clip, keep)
        d = np.abs(keep[0].astype(np.float32) - ref) * 255
        out[key] = {"mean": round(float(d.mean()), 3), "p99": round(float(np.percentile(d, 99)), 2)}
    return out


def pin(cpu: int | None) -> int | None:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cpu < 0:
        return None
    if cpu not in allowed:
        cpu = allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def build_report(clip: Clip, runs: dict[str, Run], ff_start: float) -> dict[str, Any]:
    core, core_dec, half, ff = runs["core"], runs["core_decode"], runs["core_half"], runs["ffmpeg"]
    tuned_best = max(("tuned_rgb", "tuned_yuv"), key=lambda k: runs[k].fps)
    ff_net_wall = max(ff.wall_s - ff_start, 1e-9)
    ff_rtime = ff.extra.get("rtime_s", 0.0)
    decoded_half = half.extra["frames_decoded"]
    rep: dict[str, Any] = {
        "clip": {
            "file": str(clip.path.relative_to(ROOT)),
            "label": clip.label,
            "width": clip.width,
            "height": clip.height,
            "fps": round(clip.fps, 3),
            "frames": clip.frames,
            "pix_fmt": clip.pix_fmt,
            "kbit_s": round(clip.bitrate_kbps),
        },
        "runs": {
            k: {
                "frames": r.frames,
                "wall_s": round(r.wall_s, 4),
                "cpu_s": round(r.cpu_s, 4),
                "fps": round(r.fps, 1),
                "fps_per_cpu_s": round(r.fps_cpu, 1),
                **{kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in r.extra.items()},
            }
            for k, r in runs.items()
        },
        "ffmpeg_startup_s": round(ff_start, 4),
        "ratios": {
            "convert_core_over_usual": ratio(core.fps, runs["usual"].fps),
            "convert_core_over_tuned": ratio(core.fps, runs[tuned_best].fps),
            "convert_core_over_tuned_rgb": ratio(core.fps, runs["tuned_rgb"].fps),
            "convert_core_over_tuned_yuv": ratio(core.fps, runs["tuned_yuv"].fps),
            "convert_core_over_usual_per_cpu_s": ratio(core.fps_cpu, runs["usual"].fps_cpu),
            "convert_core_over_tuned_per_cpu_s": ratio(core.fps_cpu, runs[tuned_best].fps_cpu),
            "convert_core_over_core_decode": ratio(core.fps, core_dec.fps),
            "decode_core_over_ffmpeg": ratio(core_dec.fps, clip.frames / ff_net_wall),
            "decode_core_over_ffmpeg_wall": ratio(core_dec.fps, ff.fps),
            "decode_core_over_ffmpeg_rtime": ratio(core_dec.fps, ratio(ff.frames, ff_rtime)),
            "decode_core_over_ffmpeg_per_cpu_s": ratio(core_dec.fps_cpu, ff.fps_cpu),
            "decode_core_over_pyav": ratio(core_dec.fps, runs["pyav_decode"].fps),
            "half_decoded_over_decode_alone": ratio(decoded_half / half.wall_s, core_dec.fps),
            "half_decoded_over_decode_alone_per_cpu_s": ratio(
                decoded_half / half.cpu_s, core_dec.fps_cpu
            ),
        },
        "tuned_best": tuned_best,
        "half": {
            "analyze_fps": clip.fps / 2,
            "decoded_fps": round(decoded_half / half.wall_s, 1),
            "sampled_fps": round(half.extra["frames_sampled"] / half.wall_s, 1),
            "decoded_per_cpu_s": round(decoded_half / half.cpu_s, 1),
            "streams_per_core_at_source_rate": round(decoded_half / half.cpu_s / clip.fps, 1),
            "streams_per_core_all_frames": round(core.fps_cpu / clip.fps, 1),
        },
        "ffmpeg_fps_net": round(clip.frames / ff_net_wall, 1),
        "ffmpeg_fps_rtime": round(ratio(ff.frames, ff_rtime), 1),
    }
    rep["ratios"] = {k: (round(v, 3) if v == v else None) for k, v in rep["ratios"].items()}
    problems = []
    for k in ("core", "usual", "tuned_rgb", "tuned_yuv", "core_decode", "ffmpeg", "pyav_decode"):
        if runs[k].frames != clip.frames:
            problems.append(f"{k} delivered {runs[k].frames} of {clip.frames} frames")
    if core.extra["frames_consumed"] != core.frames or core.extra["frames_dropped"]:
        x = core.extra
        problems.append(f"core: consumed {x['frames_consumed']}, dropped {x['frames_dropped']}")
    rep["problems"] = problems
    return rep


def goal(value: float, target: float) -> str:
    verdict = "met" if value >= target else "MISSED"
    return f"{value:5.2f}x  (goal >= {target:g}: {verdict})"


def _row(label: str, x: dict[str, Any], fps: float, vs: float, extra: str = "") -> str:
    cols = f"{x['frames']:>6} {x['wall_s']:>7.3f} {fps:>7.1f} {x['cpu_s']:>7.3f}"
    return f"   {label:<40} {cols} {x['fps_per_cpu_s']:>9.1f} {vs:>6.2f}x{extra}"


def print_clip(rep: dict[str, Any], par: dict[str, dict[str, float]] | None) -> None:
    c, runs, r, h = rep["clip"], rep["runs"], rep["ratios"], rep["half"]
    print()
    print(
        f"== {c['label']}: {c['file']}  {c['width']}x{c['height']} {c['fps']:g} fps, "
        f"{c['frames']} frames, {c['pix_fmt']}, {c['kbit_s']} kbit/s"
    )
    head = f"   {'contender':<40} {'frames':>6} {'wall s':>7} {'fps':>7} {'cpu s':>7}"
    head += f" {'fps/cpu-s':>9}"
    sections = {
        "convert": "1. decode + letterbox 640x640 float32 NCHW, every frame",
        "decode": "2. decode alone",
        "half": f"3. analyze_fps {h['analyze_fps']:g} (half the source rate), in decoded frames; "
        "last column: decoded fps / decode alone",
    }
    ref = {"convert": "core", "decode": "core_decode"}
    for sec, title in sections.items():
        print(f" {title}")
        print(head + f" {'vs core' if sec != 'half' else '/ alone':>7}")
        for key, (ksec, label) in CONTENDERS.items():
            if ksec != sec:
                continue
            x = runs[key]
            fps = x["fps"]
            vs = runs[ref[sec]]["fps"] / fps if sec in ref and fps else float("nan")
            if sec == "half":  # in decoded frames; the last column: decoded fps / decode alone
                fps, vs = h["decoded_fps"], r["half_decoded_over_decode_alone"]
                x = {**x, "frames": x["frames_decoded"], "fps_per_cpu_s": h["decoded_per_cpu_s"]}
            extra = ""
            if key in ("core", "core_half"):
                dec, conv = x["decode_p50_ms"], x["convert_p50_ms"]
                extra = f"  p50 decode {dec:.2f} ms, convert {conv:.2f} ms"
            if key == "core_half":
                extra = f"  ({x['frames_decoded']} decoded, {x['frames_sampled']} sampled)" + extra
            print(_row(label, x, fps, vs, extra))
        if sec == "convert":
            usual_cpu = r["convert_core_over_usual_per_cpu_s"]
            tuned_cpu = r["convert_core_over_tuned_per_cpu_s"]
            best = "B" if rep["tuned_best"] == "tuned_yuv" else "A"
            print(f"   core / usual        {goal(r['convert_core_over_usual'], 2.5)}", end="")
            print(f"   per CPU-second {usual_cpu:.2f}x")
            print(f"   core / tuned {best}      {goal(r['convert_core_over_tuned'], 1.2)}", end="")
            print(f"   per CPU-second {tuned_cpu:.2f}x")
            print(
                f"   core / tuned A {r['convert_core_over_tuned_rgb']:.2f}x, core / tuned B "
                f"{r['convert_core_over_tuned_yuv']:.2f}x; core fps with conversion / core "
                f"decode alone {r['convert_core_over_core_decode']:.2f}"
            )
            if par:
                diffs = ", ".join(f"{k} {v['mean']:.2f} (p99 {v['p99']:g})" for k, v in par.items())
                print(f"   first batch vs the core's, mean |diff| in 1/255: {diffs}")
        elif sec == "decode":
            print(
                f"   ffmpeg fps: {runs['ffmpeg']['fps']:.1f} by subprocess wall, "
                f"{rep['ffmpeg_fps_net']:.1f} less process start-up "
                f"({rep['ffmpeg_startup_s'] * 1e3:.0f} ms), {rep['ffmpeg_fps_rtime']:.1f} by its "
                "-benchmark rtime (no start-up, no open/probe)"
            )
            print(f"   core / ffmpeg less start-up {goal(r['decode_core_over_ffmpeg'], 0.95)}")
            print(
                f"   core / ffmpeg: wall {r['decode_core_over_ffmpeg_wall']:.2f}x, rtime "
                f"{r['decode_core_over_ffmpeg_rtime']:.2f}x, per CPU-second "
                f"{r['decode_core_over_ffmpeg_per_cpu_s']:.2f}x; core / PyAV decode "
                f"{r['decode_core_over_pyav']:.2f}x (PyAV bundles another FFmpeg)"
            )
        else:
            print(
                f"   decoded {h['decoded_fps']:.1f} fps, sampled {h['sampled_fps']:.1f} fps; "
                f"decoded fps / decode alone {r['half_decoded_over_decode_alone']:.2f} "
                f"(per CPU-second {r['half_decoded_over_decode_alone_per_cpu_s']:.2f})"
            )
            print(
                f"   streams of {c['fps']:g} fps one core holds: "
                f"{h['streams_per_core_at_source_rate']:.1f} at analyze_fps {h['analyze_fps']:g}, "
                f"{h['streams_per_core_all_frames']:.1f} analysing every frame"
            )
    for p in rep["problems"]:
        print(f"   PROBLEM: {p}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition, no parity check")
    ap.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per contender (default 3, decode alone +2)",
    )
    ap.add_argument("--json-out", type=Path, help="also write the JSON figures to this file")
    ap.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="CPU to pin to (default: the last allowed; -1: no pin)",
    )
    ap.add_argument("--clips", default="real,1080p", help="comma-separated: real, 1080p")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)

    t_start = time.perf_counter()
    pinned = pin(args.cpu if args.cpu is not None else max(os.sched_getaffinity(0)))
    cv2.setNumThreads(1)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    wanted = [k.strip() for k in args.clips.split(",") if k.strip()]
    clips = []
    if "real" in wanted:
        clips.append(Clip("real", REAL_CLIP, "real clip (H.264, CCTV)"))
    if "1080p" in wanted:
        ensure_generated_clip(quiet=False)
        clips.append(Clip("1080p", GEN_CLIP, "generated 1080p30 (H.264, testsrc2 + noise)"))
    clips = [probe(c) for c in clips]

    info = sc.build_info()
    load0 = os.getloadavg()
    ffmpeg_startup_s()
    core = CoreBench()
    reports = {}
    try:
        for clip in clips:
            runs = measure_clip(core, clip, reps, log)
            par = None if args.quick else parity(core, clip)
            reports[clip.key] = build_report(clip, runs, ffmpeg_startup_s(1))
            if par:
                reports[clip.key]["parity_1_255"] = par
    finally:
        core.close()
    elapsed = time.perf_counter() - t_start
    pyav_libs = {
        k: ".".join(map(str, v))
        for k, v in av.library_versions.items()
        if k in ("libavcodec", "libswscale")
    }
    meta = {
        "cpu_model": _cpu_model(),
        "cpus_allowed": len(os.sched_getaffinity(0)) if pinned is None else None,
        "pinned_cpu": pinned,
        "reps": reps,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "elapsed_s": round(elapsed, 1),
        "core_ffmpeg": info.get("ffmpeg"),
        "core_build": info.get("build_type"),
        "pyav": av.__version__,
        "pyav_ffmpeg": pyav_libs,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    doc = {"bench": "decode", "meta": meta, "clips": reports}
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=2) + "\n")

    print(
        f"smartcity decode benchmark: {meta['cpu_model']}, pinned to CPU {pinned}, best of "
        f"{reps} (decode alone: {reps + 2 if reps > 1 else reps}), one decoding thread "
        f"everywhere; load {meta['loadavg_before'][0]:.2f} before, "
        f"{meta['loadavg_after'][0]:.2f} after; {elapsed:.0f} s"
    )
    print(
        f"core: FFmpeg {meta['core_ffmpeg']} (system), {meta['core_build']}; PyAV {meta['pyav']} "
        f"(bundled libavcodec {pyav_libs.get('libavcodec')}), OpenCV {meta['opencv']}"
    )
    print("'vs core': the core's fps over the contender's (above 1: the core is faster).")
    print("Goals are checked against fps (wall clock); per CPU-second ratios are shown beside.")
    for key in reports:
        print_clip(reports[key], reports[key].get("parity_1_255"))
    print()
    print(json.dumps(doc, separators=(",", ":")))
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
