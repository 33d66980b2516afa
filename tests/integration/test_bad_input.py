"""Bad input: corrupt streams, missing or wrong files, dead hosts, invalid configuration."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

import smartcity as sc
from tests.conftest import wait_for
from tests.support.media import (
    corrupt_clip,
    count_frames,
    free_port,
    make_audio_only,
    make_clip,
    make_not_video,
)

FINAL = ("stopped", "failed")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_input")
    clean = make_clip(d / "clean.mp4", "h264", size=(320, 240), fps=25, seconds=4, gop=25)
    return {
        "clean": clean,
        "corrupt": corrupt_clip(clean, d / "corrupt.ts", seed=1),
        "audio_only": make_audio_only(d / "audio_only.mp4"),
        "random_bytes": make_not_video(d / "random_bytes.mp4", "random"),
        "text": make_not_video(d / "text.mp4", "text"),
    }


def final_stats(p: sc.Pipeline, cam: str, timeout: float = 20) -> dict:
    assert wait_for(lambda: p.stream_stats(cam)["state"] in FINAL, timeout), p.stream_stats(cam)
    return p.stream_stats(cam)


def test_corrupt_stream_is_decoded_and_counted(media, make_pipeline):
    p = make_pipeline(width=320, height=320, max_batch=4)
    p.add_stream(sc.StreamConfig(camera_id="bad", url=str(media["corrupt"])))
    p.add_stream(sc.StreamConfig(camera_id="good", url=str(media["clean"])))
    bad = final_stats(p, "bad")
    good = final_stats(p, "good")

    assert good["state"] == "stopped" and good["corrupt_packets"] == 0, good
    assert good["frames_decoded"] == count_frames(media["clean"]) == 100

    assert bad["state"] == "stopped", bad
    assert bad["corrupt_packets"] > 0, bad
    # Most of the clip survives: the bursts hit a few GOPs, the decoder carries on.
    assert bad["frames_decoded"] >= good["frames_decoded"] // 2, bad
    assert bad["frames_decoded"] <= good["frames_decoded"] + 1, bad
    assert bad["reconnects"] == 0
    assert (bad["width"], bad["height"], bad["codec"]) == (320, 240, "h264")
    # The pipeline still works after it: a frame of the corrupt stream is there to look at.
    got = p.latest_frame("bad")
    assert got is not None and got[0].shape == (240, 320, 3)


def expect_failed(p: sc.Pipeline, cam: str, *fragments: str) -> dict:
    s = final_stats(p, cam)
    assert s["state"] == "failed", s
    for fragment in fragments:
        assert fragment in s["last_error"], (fragment, s["last_error"])
    assert s["frames_decoded"] == 0 and s["reconnects"] == 0, s
    assert s["last_frame_age_s"] is None, s
    return s


def test_missing_file_fails_naming_the_path(tmp_path, make_pipeline):
    missing = tmp_path / "no" / "such-clip.mp4"
    p = make_pipeline(width=320, height=320)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(missing)))
    expect_failed(p, "cam", str(missing))


@pytest.mark.parametrize("name", ["random_bytes", "text"])
def test_file_that_is_not_video_fails(name, media, make_pipeline):
    p = make_pipeline(width=320, height=320)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(media[name])))
    expect_failed(p, "cam", str(media[name]))


def test_audio_only_file_fails_with_no_video_track(media, make_pipeline):
    p = make_pipeline(width=320, height=320)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(media["audio_only"])))
    expect_failed(p, "cam", "no video track")


def test_unresolvable_host_fails(make_pipeline):
    p = make_pipeline(width=320, height=320)
    p.add_stream(sc.StreamConfig(camera_id="cam", url="rtsp://nonexistent.invalid/x"))
    expect_failed(p, "cam", "does not resolve", "nonexistent.invalid")


def test_connection_refused_backs_off_and_retries(make_pipeline):
    """An outage, not a configuration error: it keeps trying, doubling the wait up to the cap."""
    port = free_port()
    initial, cap = 0.4, 1.2  # waits 0.4, 0.8, 1.2, 1.2 ... each +-20 %
    p = make_pipeline(width=320, height=320)
    p.add_stream(
        sc.StreamConfig(
            camera_id="cam",
            url=f"rtsp://127.0.0.1:{port}/x",
            backoff_initial_s=initial,
            backoff_max_s=cap,
            open_timeout_s=2,
        )
    )
    assert wait_for(lambda: p.stream_stats("cam")["state"] == "backoff", 5, 0.005)
    t_first_failure = time.monotonic()
    s = p.stream_stats("cam")
    assert "refused" in s["last_error"].lower(), s["last_error"]
    assert f"127.0.0.1:{port}" in s["last_error"], s["last_error"]
    assert s["reconnects"] == 0 and s["last_frame_age_s"] is None, s

    # When does each retry happen? (reconnects counts the attempts after each wait)
    seen = [t_first_failure]
    states = set()
    deadline = t_first_failure + 4.5
    while len(seen) < 5 and time.monotonic() < deadline:
        s = p.stream_stats("cam")
        states.add(s["state"])
        if s["reconnects"] >= len(seen):
            assert s["reconnects"] == len(seen), "missed a retry: poll faster"
            seen.append(time.monotonic())
        time.sleep(0.005)
    assert len(seen) == 5, f"only {len(seen) - 1} retries in 4.5 s: {seen}"
    waits = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    for got, want in zip(waits, [initial, 2 * initial, cap, cap], strict=True):
        assert 0.8 * want - 0.05 <= got <= 1.2 * want + 0.25, (waits, want)
    assert states <= {"backoff", "connecting"}, states


def test_failed_streams_end_their_threads_and_do_not_spin(tmp_path, media, make_pipeline):
    proc = psutil.Process()
    threads_before = proc.num_threads()
    p = make_pipeline(width=320, height=320)
    urls = {
        "missing": str(tmp_path / "missing.mp4"),
        "not_video": str(media["random_bytes"]),
        "audio": str(media["audio_only"]),
        "dns": "rtsp://nonexistent.invalid/x",
    }
    for cam, url in urls.items():
        p.add_stream(sc.StreamConfig(camera_id=cam, url=url, backoff_initial_s=0.1))
    for cam in urls:
        expect_failed(p, cam)
    # Each stream thread has returned (a failed stream holds no thread).
    assert wait_for(lambda: proc.num_threads() <= threads_before, 3), (
        threads_before,
        proc.num_threads(),
    )
    cpu0 = time.process_time()
    time.sleep(1.0)
    cpu = time.process_time() - cpu0
    assert cpu < 0.5, f"{cpu:.2f} s of CPU in 1 s with only failed streams"
    for s in p.stats():
        assert s["state"] == "failed" and s["reconnects"] == 0, s
    assert sorted(p.camera_ids()) == sorted(urls)  # failed streams stay listed for the operator


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("camera_id", "cam 1"),
        ("camera_id", ""),
        ("camera_id", "x" * 65),
        ("url", ""),
        ("rtsp_transport", "sctp"),
        ("analyze_fps", -1.0),
        ("analyze_fps", float("nan")),
        ("stall_timeout_s", 0.0),
        ("open_timeout_s", -5.0),
        ("backoff_initial_s", 0.0),
        ("pre_event_s", -1.0),
        ("decoder_threads", -1),
        ("hwaccel", "gpu"),
        ("hw_device", -1),
    ],
)
def test_bad_config_value_names_the_field(field, value):
    kwargs: dict = {"camera_id": "cam1", "url": "/tmp/clip.mp4", field: value}
    with pytest.raises(ValueError, match=field):
        sc.StreamConfig(**kwargs)


def test_backoff_initial_above_max_is_rejected():
    with pytest.raises(ValueError, match="backoff_initial_s"):
        sc.StreamConfig(camera_id="cam1", url="/x.mp4", backoff_initial_s=10, backoff_max_s=5)
    # Equal is fine.
    cfg = sc.StreamConfig(camera_id="cam1", url="/x.mp4", backoff_initial_s=5, backoff_max_s=5)
    assert cfg.backoff_initial_s == cfg.backoff_max_s == 5


def test_good_config_values_are_accepted():
    cfg = sc.StreamConfig(
        camera_id="Gate_3.north-1",
        url="rtsp://10.0.0.1/stream",
        rtsp_transport="udp",
        analyze_fps=0.0,
        decoder_threads=0,
        pre_event_s=0.0,
    )
    assert (cfg.camera_id, cfg.rtsp_transport, cfg.analyze_fps) == ("Gate_3.north-1", "udp", 0.0)


def test_duplicate_camera_id_is_rejected(media, make_pipeline):
    p = make_pipeline(width=320, height=320)
    p.add_stream(sc.StreamConfig(camera_id="cam", url=str(media["clean"])))
    with pytest.raises(ValueError, match="cam"):
        p.add_stream(sc.StreamConfig(camera_id="cam", url=str(media["text"])))
    assert p.camera_ids() == ["cam"]
    assert p.stream_stats("cam")["url"] == str(media["clean"])  # the first one is untouched


def test_unknown_camera_raises_key_error(make_pipeline):
    p = make_pipeline(width=320, height=320)
    with pytest.raises(KeyError):
        p.stream_stats("nope")
    with pytest.raises(sc.UnknownCameraError):
        p.stream_stats("nope")
    with pytest.raises(KeyError):
        p.packet_ring("nope")
    with pytest.raises(KeyError):
        p.latest_frame("nope")
    assert p.remove_stream("nope") is False
