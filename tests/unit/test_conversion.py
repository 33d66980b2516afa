"""The float32 path (swscale resize + the core's own YUV->RGB) against swscale's uint8 RGB path."""

from __future__ import annotations

import numpy as np

import smartcity as sc


def _first_slot(make_pipeline, vtest, dtype):
    p = make_pipeline(dtype=dtype, max_batch=1)
    p.add_stream(sc.StreamConfig(camera_id="c", url=str(vtest), block_when_busy=True))
    batch = p.next_batch(1, 10000)
    assert batch is not None
    t = np.array(batch.tensor[0], dtype=np.float32)
    batch.release()
    p.remove_stream("c")
    return t


def test_float_and_uint8_paths_agree_on_a_real_frame(vtest, make_pipeline):
    f = _first_slot(make_pipeline, vtest, sc.DType.float32)
    u = _first_slot(make_pipeline, vtest, sc.DType.uint8) / 255.0
    diff = np.abs(f - u)
    # Two independent colour conversions (float maths vs swscale's fixed-point tables) of
    # the same bilinear resize: close on average, a few levels apart at worst.
    assert diff.mean() < 1.5 / 255, diff.mean() * 255
    assert np.percentile(diff, 99) < 6 / 255, np.percentile(diff, 99) * 255
    # Not trivially equal: the picture has structure in every channel.
    assert all(f[c, 80:560].std() > 0.05 for c in range(3))


def test_resize_filters_differ_but_agree_on_the_picture(vtest, make_pipeline):
    """Each filter really reaches swscale (outputs differ) and all resize the same picture."""
    slots = {}
    for f in (sc.ResizeFilter.bilinear, sc.ResizeFilter.fast_bilinear, sc.ResizeFilter.area):
        p = make_pipeline(width=300, height=300, resize=sc.ResizeMode.stretch, resize_filter=f)
        assert p.resize_filter == f
        p.add_stream(sc.StreamConfig(camera_id="c", url=str(vtest), block_when_busy=True))
        batch = p.next_batch(1, 10000)
        assert batch is not None
        slots[f] = np.array(batch.tensor[0])
        batch.release()
        p.remove_stream("c")
    names = list(slots)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            diff = np.abs(slots[a] - slots[b])
            assert diff.max() > 4 / 255, (a, b)  # not the same filter
            # The same picture: fine detail aliases differently, 10x10 block means agree.
            blocks_a = slots[a].reshape(3, 30, 10, 30, 10).mean(axis=(2, 4))
            blocks_b = slots[b].reshape(3, 30, 10, 30, 10).mean(axis=(2, 4))
            coarse = np.abs(blocks_a - blocks_b).mean()
            assert coarse < 2 / 255, (a, b, coarse * 255)
