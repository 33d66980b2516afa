"""Generated clips of each supported codec decode through the pipeline, frame for frame.

Reference frame counts come from ffprobe decoding the same file (an independent decoder run),
and are checked against the number of frames the clip was made with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import smartcity as sc
from tests.conftest import drain, wait_for
from tests.support.media import make_clip, probe_video

# name: (file name, make_clip arguments)
CLIPS: dict[str, tuple[str, dict]] = {
    "h264": ("h264.mp4", dict(codec="h264", size=(320, 240), fps=30, seconds=3, gop=30)),
    "h264_bframes": (
        "h264_b.mp4",
        dict(codec="h264", size=(320, 240), fps=30, seconds=3, gop=30, bframes=2),
    ),
    "hevc": ("hevc.mp4", dict(codec="hevc", size=(320, 240), fps=25, seconds=2, gop=25)),
    "mpeg4": ("mpeg4.mp4", dict(codec="mpeg4", size=(320, 240), fps=25, seconds=2, gop=25)),
    "mjpeg": ("mjpeg.avi", dict(codec="mjpeg", size=(320, 240), fps=25, seconds=2)),
    "h264_1080p": (
        "h264_1080p.mp4",
        dict(codec="h264", size=(1920, 1080), fps=15, seconds=2, gop=15),
    ),
}
CODEC_NAME = {"h264": "h264", "hevc": "hevc", "mpeg4": "mpeg4", "mjpeg": "mjpeg"}


class Clip:
    def __init__(self, path: Path, args: dict) -> None:
        self.path = path
        self.args = args
        self.frames = round(args["fps"] * args["seconds"])
        self.size = args["size"]
        self.fps = args["fps"]
        self._probed: dict | None = None

    @property
    def probed(self) -> dict:
        if self._probed is None:
            self._probed = probe_video(self.path)
        return self._probed


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    d = tmp_path_factory.mktemp("codecs")
    made = {}
    for name, (filename, args) in CLIPS.items():
        made[name] = Clip(make_clip(d / filename, **args), args)
    return made


def run_to_end(p: sc.Pipeline, cam: str, timeout: float = 30) -> dict:
    assert wait_for(lambda: p.stream_stats(cam)["state"] in ("stopped", "failed"), timeout), (
        p.stream_stats(cam)
    )
    return p.stream_stats(cam)


@pytest.mark.parametrize("name", list(CLIPS))
def test_clip_decodes_every_frame(name, clips, make_pipeline):
    clip = clips[name]
    # The reference: an independent decoder counts what we generated.
    assert int(clip.probed["nb_read_frames"]) == clip.frames, clip.probed

    p = make_pipeline(width=320, height=320, max_batch=4)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(clip.path), pre_event_s=0))
    s = run_to_end(p, "cam")

    assert s["state"] == "stopped", s
    assert s["last_error"] == "", s
    assert s["frames_decoded"] == clip.frames, s
    assert s["frames_sampled"] == clip.frames and s["frames_skipped"] == 0, s
    assert s["corrupt_packets"] == 0 and s["reconnects"] == 0, s
    assert (s["width"], s["height"]) == clip.size
    assert s["codec"] == CODEC_NAME[clip.args["codec"]]
    assert s["source_fps"] == pytest.approx(clip.fps, rel=0.01)
    got = p.latest_frame("cam")
    assert got is not None
    image, number = got
    assert image.shape == (clip.size[1], clip.size[0], 3) and image.dtype == np.uint8
    assert number == clip.frames - 1  # every frame sampled: the last one is the latest
    assert float(image.std()) > 5  # a picture, not a flat fill


def test_batches_of_a_bframe_clip(clips, make_pipeline):
    """Consume every batch: one slot per sampled frame, in display order, letterboxed."""
    clip = clips["h264_bframes"]
    w, h = clip.size
    p = make_pipeline(
        width=640, height=640, dtype=sc.DType.float32, pad_value=114, max_batch=8, buffers=3
    )
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(clip.path), block_when_busy=True))

    # The first batch by hand: tensor, geometry and content.
    batch = p.next_batch(8, 5000)
    assert batch is not None
    with batch:
        n = batch.size
        assert n == 8
        t = batch.tensor
        assert t.shape == (n, 3, 640, 640) and t.dtype == np.float32
        assert batch.camera_ids == ["cam"] * n
        first = [int(x) for x in batch.frame_numbers]
        first_pts = [float(x) for x in batch.pts]
        assert batch.frame_size.tolist() == [[w, h]] * n
        assert batch.scale.tolist() == [[2.0, 2.0]] * n  # 320x240 -> 640x480
        assert batch.pad.tolist() == [[0.0, 80.0]] * n  # centred: 80 rows above and below
        assert bool(batch.valid.all())
        pad = 114 / 255
        assert np.allclose(t[:, :, :80, :], pad, atol=1e-3)
        assert np.allclose(t[:, :, 560:, :], pad, atol=1e-3)
        picture = t[:, :, 80:560, :]
        assert 0.0 <= float(picture.min()) and float(picture.max()) <= 1.0
        assert float(picture.std()) > 0.05
        del t, picture

    slots = drain(p, "cam")
    s = p.stream_stats("cam")
    assert s["state"] == "stopped", s
    assert s["frames_dropped"] == 0, s

    numbers = first + [x["frame_number"] for x in slots]
    pts = first_pts + [x["pts"] for x in slots]
    assert len(numbers) == s["frames_sampled"] == s["frames_decoded"] == clip.frames
    assert numbers == list(range(clip.frames))
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), pts
    # Display order at the clip's rate: pts steps of 1/30 s.
    assert np.allclose(np.diff(pts), 1 / clip.fps, atol=2e-3)
    assert all(x["camera_id"] == "cam" for x in slots)


def test_analyze_fps_samples_a_third_of_a_30fps_clip(clips, make_pipeline):
    clip = clips["h264"]
    assert clip.fps == 30
    p = make_pipeline(width=320, height=320, max_batch=4)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(clip.path), analyze_fps=10))
    s = run_to_end(p, "cam")
    assert s["state"] == "stopped", s
    # 10 of 30 fps: every frame is still decoded (the skip-non-reference shortcut is for
    # rates far below the source), a third of them sampled.
    assert s["frames_decoded"] == clip.frames, s
    assert abs(s["frames_sampled"] - clip.frames / 3) <= 2, s
    assert s["frames_skipped"] == s["frames_decoded"] - s["frames_sampled"], s


def test_low_analyze_fps_skips_decoding_non_reference_frames(clips, make_pipeline):
    clip = clips["h264_bframes"]
    assert clip.fps == 30 and clip.args["bframes"] == 2
    p = make_pipeline(width=320, height=320, max_batch=4)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(clip.path), analyze_fps=5))
    s = run_to_end(p, "cam")
    assert s["state"] == "stopped", s
    # Two of every three frames are non-reference B-frames: not decoded at all.
    assert s["frames_decoded"] < clip.frames * 2 // 3, s
    assert s["frames_decoded"] >= clip.frames // 3 - 1, s
    # Still about 5 samples per second of video.
    expected = 5 * clip.args["seconds"]
    assert abs(s["frames_sampled"] - expected) <= 2, s
    assert s["frames_skipped"] == s["frames_decoded"] - s["frames_sampled"], s
