"""16 looping streams of the real clip for 20 s: thread count and memory stay flat."""

from __future__ import annotations

import time

import psutil

import smartcity as sc
from tests.conftest import BackgroundConsumer


def test_sixteen_streams_stay_flat(vtest, make_pipeline):
    proc = psutil.Process()
    p = make_pipeline(max_batch=16)
    with BackgroundConsumer(p, max_batch=16) as consumer:
        for i in range(16):
            p.add_stream(
                sc.StreamConfig(
                    camera_id=f"s{i:02d}", url=str(vtest), loop=True, realtime=True, analyze_fps=5
                )
            )
        time.sleep(5)  # warm-up: buffers, decoder pools, packet rings fill
        threads0, rss0 = proc.num_threads(), proc.memory_info().rss
        samples = []
        for _ in range(15):
            time.sleep(1)
            samples.append((proc.num_threads(), proc.memory_info().rss))
        threads1, rss1 = samples[-1]
        stats = p.stats()
    assert all(s["state"] == "running" for s in stats), stats
    assert all(s["frames_decoded"] > 150 for s in stats)
    assert consumer.slots > 16 * 5 * 15  # the consumer really received the samples
    assert all(t == threads0 for t, _ in samples), (threads0, samples)
    # Flat: the packet rings are full after 10 s of a 10 s window; allow 5 % drift + 16 MiB.
    assert rss1 <= rss0 * 1.05 + (16 << 20), (rss0, rss1)
