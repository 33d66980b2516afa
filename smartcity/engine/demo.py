"""`smartcity demo`: looping streams of a clip through the core, with a live table."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from smartcity import _core

COLUMNS = (
    ("camera", 8),
    ("state", 10),
    ("src fps", 8),
    ("dec fps", 8),
    ("ana fps", 8),
    ("decoded", 8),
    ("dropped", 8),
    ("corrupt", 8),
    ("reconn", 7),
    ("age ms", 7),
    ("dec p50", 8),
    ("dec p99", 8),
)


def _row(values: list[str]) -> str:
    return " ".join(str(v).rjust(w) for v, (_, w) in zip(values, COLUMNS, strict=True))


def format_table(stats: list[dict], previous: dict[str, dict], dt: float, batches: int) -> str:
    """One screen of the live table; rates come from the counters' change over dt seconds."""
    lines = [_row([name for name, _ in COLUMNS])]
    total_dec = total_ana = 0.0
    for s in sorted(stats, key=lambda s: s["camera_id"]):
        prev = previous.get(s["camera_id"], s)
        dec = (s["frames_decoded"] - prev["frames_decoded"]) / dt if dt > 0 else 0.0
        ana = (s["frames_sampled"] - prev["frames_sampled"]) / dt if dt > 0 else 0.0
        total_dec += dec
        total_ana += ana
        age = s["last_frame_age_s"]
        lines.append(
            _row(
                [
                    s["camera_id"][:8],
                    s["state"],
                    f"{s['source_fps']:.1f}",
                    f"{dec:.1f}",
                    f"{ana:.1f}",
                    str(s["frames_decoded"]),
                    str(s["frames_dropped"]),
                    str(s["corrupt_packets"]),
                    str(s["reconnects"]),
                    "-" if age is None else f"{age * 1000:.0f}",
                    f"{s['decode_p50_ms']:.2f}",
                    f"{s['decode_p99_ms']:.2f}",
                ]
            )
        )
        if s["last_error"]:
            lines.append(f"         last error: {s['last_error']}")
    lines.append(
        f"total: {len(stats)} streams, decoded {total_dec:.1f} fps, analyzed {total_ana:.1f} fps, "
        f"batches {batches}"
    )
    return "\n".join(lines)


def run_demo(clip: Path, streams: int, seconds: float, analyze_fps: float, max_batch: int) -> int:
    pipeline = _core.Pipeline(max_batch=max_batch)
    stop = threading.Event()
    batches = 0

    def consume() -> None:
        # Stands in for inference until the detector lands: take each batch and hand it back.
        nonlocal batches
        while not stop.is_set():
            batch = pipeline.next_batch(max_batch, 100)
            if batch is not None:
                batches += 1
                batch.release()

    for i in range(streams):
        pipeline.add_stream(
            _core.StreamConfig(
                camera_id=f"cam{i + 1:02d}",
                url=str(clip),
                loop=True,
                realtime=True,
                analyze_fps=analyze_fps,
            )
        )
    consumer = threading.Thread(target=consume, name="consumer", daemon=True)
    consumer.start()
    tty = sys.stdout.isatty()
    previous: dict[str, dict] = {}
    last = time.monotonic()
    end = last + seconds
    try:
        while time.monotonic() < end:
            time.sleep(1.0)
            now = time.monotonic()
            stats = pipeline.stats()
            table = format_table(stats, previous, now - last, batches)
            previous = {s["camera_id"]: s for s in stats}
            last = now
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            remaining = max(0.0, end - now)
            sys.stdout.write(f"smartcity demo: {clip.name} x {streams}, {remaining:.0f} s left\n")
            sys.stdout.write(table + "\n\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        consumer.join(timeout=2)
        pipeline.close()
    return 0
