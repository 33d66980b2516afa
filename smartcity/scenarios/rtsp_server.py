#!/usr/bin/python3
"""An RTSP server that serves an H.264 MP4 clip without re-encoding (gst-rtsp-server).

Used by `smartcity scenarios serve` and by the core's RTSP tests (tests/support/media.py). It
imports nothing from smartcity and must be run by Debian's /usr/bin/python3, which has
python3-gi and gir1.2-gst-rtsp-server-1.0 (the project's venv has no GObject bindings);
smartcity.scenarios.serve starts it as a subprocess:

    /usr/bin/python3 rtsp_server.py --port 8554 --mount /cam --file clip.mp4 [--loop]

The clip's access units are read once (filesrc ! qtdemux ! h264parse ! appsink) and then
played to every client from its own media (appsrc ! h264parse ! rtph264pay) at the clip's
own pace; with --loop the timestamps go on growing across passes, so a client sees one
endless stream. Prints READY on stdout once listening; exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

_ = GstApp  # registers the appsrc/appsink methods


class Clip:
    """The access units of an MP4's H.264 track, in decode order, as byte-stream buffers."""

    def __init__(self, path: str) -> None:
        pipeline = Gst.parse_launch(
            "filesrc name=src ! qtdemux ! h264parse config-interval=-1 ! "
            "video/x-h264,stream-format=byte-stream,alignment=au ! "
            "appsink name=sink sync=false max-buffers=0"
        )
        pipeline.get_by_name("src").set_property("location", path)
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(Gst.State.PLAYING)
        self.units: list[tuple[bytes, int, int, int, bool]] = []  # data, pts, dts, duration, delta
        self.caps: Gst.Caps | None = None
        while True:
            sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
            if sample is None:
                break
            if self.caps is None:
                self.caps = sample.get_caps()
            buf = sample.get_buffer()
            ok, info = buf.map(Gst.MapFlags.READ)
            if not ok:
                raise RuntimeError("cannot map a buffer")
            data = bytes(info.data)
            buf.unmap(info)
            self.units.append(
                (
                    data,
                    buf.pts,
                    buf.dts,
                    buf.duration,
                    buf.has_flags(Gst.BufferFlags.DELTA_UNIT),
                )
            )
        msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        pipeline.set_state(Gst.State.NULL)
        if msg is not None:
            err, debug = msg.parse_error()
            raise RuntimeError(f"cannot read {path}: {err.message} ({debug})")
        if not self.units or self.caps is None:
            raise RuntimeError(f"no H.264 access units in {path}")
        s = self.caps.get_structure(0)
        ok, num, den = s.get_fraction("framerate")
        self.frame_ns = (
            Gst.util_uint64_scale(Gst.SECOND, den, num) if ok and num > 0 else Gst.SECOND // 25
        )
        first = min(u[1] for u in self.units if u[1] != Gst.CLOCK_TIME_NONE)
        last = max(u[1] for u in self.units if u[1] != Gst.CLOCK_TIME_NONE)
        self.first_pts = first
        self.pass_ns = last - first + self.frame_ns  # one pass of the clip


class Feeder:
    """Pushes the clip into one media's appsrc, looping with growing timestamps."""

    def __init__(self, clip: Clip, appsrc: Gst.Element, loop: bool) -> None:
        self.clip = clip
        self.appsrc = appsrc
        self.loop = loop
        self.index = 0
        self.passes = 0
        self.lock = threading.Lock()
        appsrc.set_property("caps", clip.caps)
        appsrc.set_property("format", Gst.Format.TIME)
        appsrc.set_property("is-live", False)
        appsrc.set_property("max-bytes", 1 << 20)
        appsrc.connect("need-data", self.on_need_data)

    def _shift(self, t: int, offset: int) -> int:
        if t == Gst.CLOCK_TIME_NONE:
            return t
        return max(0, t - self.clip.first_pts + offset)

    def on_need_data(self, src: Gst.Element, _length: int) -> None:
        with self.lock:
            if self.index >= len(self.clip.units):
                if not self.loop:
                    src.emit("end-of-stream")
                    return
                self.index = 0
                self.passes += 1
            data, pts, dts, duration, delta = self.clip.units[self.index]
            self.index += 1
            offset = self.passes * self.clip.pass_ns
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = self._shift(pts, offset)
            # B-frame clips have DTS before the first PTS: shift them with the PTS but keep
            # them non-negative (the first pass only).
            buf.dts = self._shift(dts, offset) if dts != Gst.CLOCK_TIME_NONE else dts
            buf.duration = duration if duration != Gst.CLOCK_TIME_NONE else self.clip.frame_ns
            if delta:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        src.emit("push-buffer", buf)


class Factory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, clip: Clip, loop: bool) -> None:
        super().__init__()
        self.clip = clip
        self.loop = loop
        self.feeders: list[Feeder] = []  # keeps the Python objects alive with their media
        self.set_shared(False)
        self.set_launch(
            "( appsrc name=src ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        feeder = Feeder(self.clip, appsrc, self.loop)
        self.feeders.append(feeder)
        media.connect("unprepared", lambda _m: self.feeders.remove(feeder))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--file", required=True, help="an MP4 clip with an H.264 video track")
    parser.add_argument("--loop", action="store_true", help="play the clip forever")
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()

    Gst.init(None)
    clip = Clip(args.file)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.mount, Factory(clip, args.loop))
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
