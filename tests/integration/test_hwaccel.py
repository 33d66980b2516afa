"""GPU decoding (hwaccel) as far as a machine without a GPU sees it: the choice is validated,
the stream decodes on the CPU, and the stats say where and why. The GPU path itself is checked
by core_cpp/tests/nvdec_check.cpp on a GPU machine (docs/engine.md, bench/gpu/)."""

from __future__ import annotations

import time

import pytest

from smartcity import _core as sc


def _gpu_visible() -> bool:
    return sc.build_info()["cuda"] == "yes" and sc.cuda_device_count() > 0


@pytest.fixture
def pipeline():
    p = sc.Pipeline(width=160, height=160, max_batch=4)
    yield p
    p.close()


def _wait_decoded(p: sc.Pipeline, ids: list[str]) -> dict[str, dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        b = p.next_batch(4, 20)
        if b is not None:
            b.release()
        stats = {s["camera_id"]: s for s in p.stats()}
        if all(stats[i]["frames_decoded"] > 5 for i in ids):
            return stats
    raise AssertionError(f"streams did not decode: {p.stats()}")


def test_hwaccel_choices_and_where_frames_were_decoded(pipeline, vtest):
    if _gpu_visible():
        pytest.skip("a GPU is visible: nvdec_check covers this machine")
    for hw in ("none", "auto", "cuda"):
        cfg = sc.StreamConfig(camera_id=hw, url=str(vtest), hwaccel=hw, loop=True)
        assert cfg.hwaccel == hw and cfg.hw_device == 0
        pipeline.add_stream(cfg)
    stats = _wait_decoded(pipeline, ["none", "auto", "cuda"])
    # Every stream decodes on the CPU here, and says so.
    assert {s["decoder"] for s in stats.values()} == {"cpu"}
    # none: the GPU was not asked for.
    assert stats["none"]["hwaccel_note"] == "" and stats["none"]["last_error"] == ""
    # auto: falls back silently, the reason in the note only.
    assert "CUDA" in stats["auto"]["hwaccel_note"] and stats["auto"]["last_error"] == ""
    # cuda: the fallback is reported as the stream's error too.
    assert stats["cuda"]["hwaccel_note"] == stats["auto"]["hwaccel_note"]
    assert stats["cuda"]["last_error"].startswith("decoding on the CPU: ")
    # The frames are the same whichever was asked for.
    assert stats["cuda"]["width"] == stats["none"]["width"] > 0
