"""Test media made on the fly with the ffmpeg CLI, and an RTSP server run as a subprocess.

Clips are small and short; tests make them in pytest's tmp_path(_factory). The RTSP server is
the product's (smartcity/scenarios/rtsp_server.py, started by smartcity.scenarios.serve), run
by Debian's /usr/bin/python3 (GStreamer's Python bindings are not in the venv).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from smartcity.scenarios.serve import SERVER_SCRIPT, RtspServerProcess
from smartcity.scenarios.serve import free_port as _free_port

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
RTSP_SERVER_SCRIPT = SERVER_SCRIPT

_ENCODERS = {"h264": "libx264", "hevc": "libx265", "mpeg4": "mpeg4", "mjpeg": "mjpeg"}


def _run(cmd: list[str], timeout: float = 120) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def make_clip(
    path: Path,
    codec: str = "h264",
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    seconds: float = 2.0,
    bframes: int = 0,
    gop: int | None = None,
) -> Path:
    """Encode a moving test pattern. The container follows the suffix (.mp4, .mkv, .avi, .ts).

    B-frames, when asked for, are non-reference frames (no B-pyramid) in a fixed pattern, so a
    decoder told to skip non-reference frames skips bframes out of every bframes + 1 frames
    between anchors. The clip has exactly round(fps * seconds) frames.
    """
    if codec not in _ENCODERS:
        raise ValueError(f"codec must be one of {sorted(_ENCODERS)}, got {codec!r}")
    path = Path(path)
    w, h = size
    gop = gop or fps
    frames = round(fps * seconds)
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
    cmd += ["-i", f"testsrc2=size={w}x{h}:rate={fps}", "-frames:v", str(frames)]
    cmd += ["-c:v", _ENCODERS[codec]]
    if codec == "h264":
        cmd += ["-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop), "-bf", str(bframes)]
        cmd += ["-x264-params", "b-pyramid=none:b-adapt=0:scenecut=0"]
    elif codec == "hevc":
        params = f"log-level=error:keyint={gop}:min-keyint={gop}:bframes={bframes}:b-pyramid=0"
        params += ":b-adapt=0:scenecut=0"
        cmd += ["-preset", "veryfast", "-pix_fmt", "yuv420p", "-x265-params", params]
    elif codec == "mpeg4":
        cmd += ["-q:v", "5", "-pix_fmt", "yuv420p", "-g", str(gop), "-bf", str(bframes)]
    else:  # mjpeg: every frame is a key frame; bframes and gop do not apply
        cmd += ["-q:v", "5", "-pix_fmt", "yuvj420p"]
    if path.suffix == ".mp4":
        cmd += ["-movflags", "+faststart"]
    if codec == "hevc" and path.suffix in (".mp4", ".mov"):
        cmd += ["-tag:v", "hvc1"]
    cmd.append(str(path))
    _run(cmd)
    return path


def probe_video(path: Path) -> dict[str, str]:
    """codec_name, width, height, nb_read_frames (frames an independent decoder counts)."""
    out = _run(
        [
            FFPROBE,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "default=noprint_wrappers=1",
            str(path),
        ]
    )
    info = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if "nb_read_frames" not in info:
        raise RuntimeError(f"ffprobe found no video track in {path}: {out!r}")
    return info


def count_frames(path: Path) -> int:
    """Frames in the clip's video track, counted by decoding it with ffprobe."""
    return int(probe_video(path)["nb_read_frames"])


def corrupt_clip(src: Path, dst: Path, seed: int = 1, bursts: int = 40) -> Path:
    """Remux src into MPEG-TS (no re-encoding) and overwrite random byte bursts.

    The first 2 KB (PAT/PMT and the first key frame's start) and the last 10% stay intact;
    the bursts land in the middle of the file, in packet payload and TS headers alike, the way
    a lossy link damages a stream. MPEG-TS lets the demuxer resynchronise after each burst.
    """
    dst = Path(dst)
    ts = dst.with_suffix(".clean.ts")
    _run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-f", "mpegts"]
        + [str(ts)]
    )
    data = bytearray(ts.read_bytes())
    ts.unlink()
    rng = random.Random(seed)
    lo = max(2048, len(data) // 10)
    hi = len(data) * 9 // 10
    if hi - lo < 4096:
        raise ValueError(f"{src} is too small to corrupt ({len(data)} bytes)")
    for _ in range(bursts):
        n = rng.randint(16, 96)
        at = rng.randint(lo, hi - n)
        data[at : at + n] = rng.randbytes(n)
    dst.write_bytes(bytes(data))
    return dst


def make_audio_only(path: Path, seconds: float = 2.0) -> Path:
    """An MP4 with one AAC audio track and no video track."""
    _run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
        + ["-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path)]
    )
    return Path(path)


def make_not_video(path: Path, kind: str = "random", seed: int = 7) -> Path:
    """A file named like a video that is not one: random bytes or plain text."""
    path = Path(path)
    if kind == "random":
        path.write_bytes(random.Random(seed).randbytes(64 * 1024))
    elif kind == "text":
        path.write_text("This is not a video.\n" * 2000)
    else:
        raise ValueError(f"kind must be 'random' or 'text', got {kind!r}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port()


class RtspServer(RtspServerProcess):
    """The product's RTSP server (smartcity/scenarios/rtsp_server.py, run by /usr/bin/python3)
    serving one clip at rtsp://127.0.0.1:port/cam; start() skips the test where Debian's
    python3-gi / gir1.2-gst-rtsp-server-1.0 are missing. See RtspServerProcess for the rest.
    """

    def start(self) -> RtspServer:
        reason = self.missing()
        if reason:
            pytest.skip(f"no RTSP test server: {reason}")
        super().start()
        return self

    def __enter__(self) -> RtspServer:
        return self.start()
