"""Test media made on the fly with the ffmpeg CLI, and an RTSP server run as a subprocess.

Clips are small and short; tests make them in pytest's tmp_path(_factory). The RTSP server is
tests/support/rtsp_server.py run by Debian's /usr/bin/python3 (GStreamer's Python bindings are
not in the venv).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import pytest

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"

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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def _gst_rtsp_missing() -> str | None:
    """Why /usr/bin/python3 cannot run the RTSP server, or None when it can."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found"
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        " from gi.repository import Gst, GstRtspServer"
    )
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return "python3-gi / gir1.2-gst-rtsp-server-1.0 missing: " + proc.stderr.strip()[-300:]
    return None


class RtspServer:
    """tests/support/rtsp_server.py in a subprocess, serving one clip at rtsp://127.0.0.1:port/cam.

    start() waits for the server to listen; stop() ends it with SIGTERM, kill() with SIGKILL
    (an outage the client only learns about from the dead connection). start() again after
    either serves on the same port.
    """

    def __init__(
        self,
        port: int | None,
        clip: Path,
        mount: str = "/cam",
        loop: bool = True,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.clip = Path(clip)
        self.mount = mount
        self.loop = loop
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, credentials: str = "") -> str:
        auth = f"{credentials}@" if credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def start(self) -> RtspServer:
        reason = _gst_rtsp_missing()
        if reason:
            pytest.skip(f"no RTSP test server: {reason}")
        if self.running:
            raise RuntimeError("the RTSP server is already running")
        self._close_log()
        self._log = tempfile.NamedTemporaryFile(prefix="rtsp_server_", suffix=".log")
        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--port", str(self.port)]
        cmd += ["--mount", self.mount, "--file", str(self.clip)]
        if self.loop:
            cmd.append("--loop")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout_s
        out = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"READY" not in out:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                if sel.select(min(left, 0.2)):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(timeout=5)
                        break
                    out += chunk
        if b"READY" not in out:
            rc = self.proc.poll()
            self.kill()
            raise RuntimeError(
                f"RTSP server on port {self.port} did not get ready within "
                f"{self.ready_timeout_s} s (exit code {rc}):\n{out.decode(errors='replace')}"
                f"{self._log_tail()}"
            )
        return self

    def _signal(self, sig: int, wait_s: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
                os.killpg(proc.pid, signal.SIGCONT)  # a paused server handles SIGTERM too
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
        return proc.returncode

    def stop(self) -> int | None:
        """SIGTERM; the exit code (0 for a clean exit), None when it was not running."""
        return self._signal(signal.SIGTERM, 10)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything itself."""
        self._signal(signal.SIGKILL, 10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing more is sent (a stalled camera)."""
        if not self.running:
            raise RuntimeError("the RTSP server is not running")
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.kill()
        self._close_log()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
