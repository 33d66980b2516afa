"""The Python face of the core: batches, their lifetime, streams added and removed while running."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import smartcity as sc
from smartcity import _core
from tests.conftest import BackgroundConsumer, drain, wait_for


def test_build_info_names_what_was_built():
    info = sc.build_info()
    assert info["version"] == sc.__version__
    assert info["cuda"] in ("yes", "no")
    assert int(info["libavcodec"].split(".")[0]) >= 59  # FFmpeg 5.1 or newer
    assert info["compiler"] and info["build_type"]
    if info["cuda"] == "yes":
        assert info["cuda_architectures"]


def test_batch_metadata_and_tensor_view(vtest, make_pipeline):
    p = make_pipeline(max_batch=4)
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest), block_when_busy=True))
    batch = p.next_batch(4, 10000)
    assert batch is not None and batch.size == 4 and len(batch) == 4
    t = batch.tensor
    assert t.shape == (4, 3, 640, 640) and t.dtype == np.float32
    assert not t.flags.owndata  # a view of the core's buffer, no copy
    assert not t.flags.writeable  # the core reuses the slots' padding
    assert batch.camera_ids == ["a"] * 4
    assert batch.frame_numbers.tolist() == [0, 1, 2, 3]
    assert np.allclose(batch.pts, [0.0, 0.1, 0.2, 0.3])
    assert np.all(batch.capture_ns > 0)
    assert np.allclose(batch.scale, 640 / 768)
    assert batch.pad.tolist() == [[0.0, 80.0]] * 4
    assert batch.frame_size.tolist() == [[768, 576]] * 4
    assert batch.valid.all()
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert batch.shape == (4, 3, 640, 640) and batch.dtype == "float32"
    assert p.batch_device == -1 and not batch.on_device and batch.slots_on_device == 0
    with pytest.raises(RuntimeError, match="not a device batch"):
        batch.device_ptr()
    batch.release()
    with pytest.raises(RuntimeError, match="released"):
        _ = batch.tensor
    # The view taken before release still reads valid memory (it holds the buffer).
    assert float(t[0, 0, 100, 100]) >= 0.0
    del t
    drain(p, "a")


def test_views_hold_the_buffer_and_release_returns_it(vtest, make_pipeline):
    p = make_pipeline(max_batch=1, buffers=2)
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest), block_when_busy=True))
    b1 = p.next_batch(1, 10000)
    view = b1.tensor
    b1.release()
    b2 = p.next_batch(1, 10000)
    assert b2 is not None
    # Both buffers are held (one by the view): the stream waits, nothing more arrives.
    assert p.next_batch(1, 300) is None
    del view
    gc.collect()
    b3 = p.next_batch(1, 10000)
    assert b3 is not None
    assert b3.frame_numbers[0] == b2.frame_numbers[0] + 1
    b2.release()
    b3.release()
    p.remove_stream("a")


def test_drops_are_counted_when_nobody_consumes(vtest, make_pipeline):
    p = make_pipeline(max_batch=2, buffers=2)
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest)))
    assert wait_for(lambda: p.stream_stats("a")["state"] == "stopped", 60)
    s = p.stream_stats("a")
    assert s["frames_sampled"] == 795
    # Each of the 2 buffers took two frames (a full one waits for the consumer while the next
    # fills); nobody took them, so every later frame was dropped.
    assert s["frames_dropped"] == 795 - 4


def test_streams_added_and_removed_while_running(vtest, make_pipeline):
    p = make_pipeline(max_batch=8)
    with BackgroundConsumer(p) as consumer:
        seen = consumer.seen
        for i in range(3):
            p.add_stream(
                sc.StreamConfig(camera_id=f"c{i}", url=str(vtest), loop=True, realtime=True)
            )
        assert wait_for(lambda: seen >= {"c0", "c1", "c2"}, 10)
        assert p.remove_stream("c1") is True
        assert p.camera_ids() == ["c0", "c2"]
        with pytest.raises(KeyError):
            p.stream_stats("c1")
        p.add_stream(sc.StreamConfig(camera_id="c3", url=str(vtest), loop=True, realtime=True))
        assert wait_for(lambda: "c3" in seen, 10)
        seen.clear()
        assert wait_for(lambda: seen >= {"c0", "c2", "c3"}, 10)
        assert "c1" not in seen
        assert p.remove_stream("nope") is False


def test_latest_frame_is_bgr_of_the_last_sample(vtest, make_pipeline):
    p = make_pipeline()
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest), analyze_fps=1.0))
    assert wait_for(lambda: p.stream_stats("a")["state"] == "stopped", 60)
    img, number = p.latest_frame("a")
    assert img.shape == (576, 768, 3) and img.dtype == np.uint8
    assert number == 790  # samples at 0, 10, ..., 790 (1 fps of a 10 fps clip)
    assert 40 < float(img.mean()) < 220  # a real picture, not padding or black


@pytest.mark.skipif(_core.cuda_device_count() > 0, reason="checks the refusal without a GPU")
def test_device_batches_need_a_visible_gpu():
    with pytest.raises(RuntimeError, match="device batch") as e:
        sc.Pipeline(width=64, height=64, max_batch=2, batch_device=0)
    if _core.build_info()["cuda"] == "yes":
        assert "0 CUDA device(s) are visible here" in str(e.value)
    else:
        assert "build with CUDA" in str(e.value)


def test_close_is_idempotent_and_next_batch_returns_none(vtest):
    p = sc.Pipeline()
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest), loop=True))
    p.close()
    p.close()
    assert p.closed
    assert p.next_batch(8, 10) is None
    with pytest.raises(RuntimeError, match="closed"):
        p.add_stream(sc.StreamConfig(camera_id="b", url=str(vtest)))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 8}, "width"),
        ({"pad_value": 256}, "pad_value"),
        ({"max_batch": 0}, "max_batch"),
        ({"buffers": 1}, "buffers"),
    ],
)
def test_bad_pipeline_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        sc.Pipeline(**kwargs)


def test_credentials_never_shown():
    cfg = sc.StreamConfig(camera_id="a", url="rtsp://admin:hunter2@10.1.2.3:554/s1")
    assert "hunter2" not in cfg.url and "hunter2" not in repr(cfg)
    assert sc.redact_url("rtsps://u:p@h/x") == "rtsps://***@h/x"


def test_snapshots_from_several_threads_while_running(vtest, make_pipeline):
    p = make_pipeline()
    p.add_stream(sc.StreamConfig(camera_id="a", url=str(vtest), loop=True, realtime=True))
    assert wait_for(lambda: p.latest_frame("a") is not None, 10)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def snap():
        try:
            for _ in range(20):
                img, n = p.latest_frame("a")
                assert img.shape == (576, 768, 3)
                numbers.append(n)
                time.sleep(0.02)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    with BackgroundConsumer(p):
        threads = [threading.Thread(target=snap) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(numbers) == 80 and max(numbers) > min(numbers)  # the stream moved on meanwhile
