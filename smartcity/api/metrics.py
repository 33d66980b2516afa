"""Prometheus /metrics: the API's own request latency, live connections and webhook queue,
and what the bus tells the API about streams (frame rates, inference time, bus gaps) and
incidents (opened per type). Text exposition format 0.0.4, written here (no client library)."""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

#: Latency histogram buckets, seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(d: dict[str, str]) -> str:
    if not d:
        return ""
    return "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in sorted(d.items())) + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (method, route, status) -> count; (method, route) -> bucket counts, sum, count
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.camera: dict[str, dict[str, Any]] = {}
        self.bus_gaps: dict[str, int] = defaultdict(int)
        self.incidents: dict[str, int] = defaultdict(int)
        self.started = time.time()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            h = self.latency.get(key)
            if h is None:
                h = self.latency[key] = [0.0] * (len(BUCKETS) + 2)
            h[bisect.bisect_left(BUCKETS, seconds)] += 1
            h[-1] += seconds

    def observe_health(self, cam: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.camera[cam] = dict(fields)

    def add_gaps(self, topic: str, n: int) -> None:
        with self._lock:
            self.bus_gaps[topic] += n

    def add_incident(self, type: str) -> None:
        with self._lock:
            self.incidents[type] += 1

    def render(self, extra: dict[str, float] | None = None) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help: str) -> None:
            out.append(f"# HELP {name} {help}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("smartcity_api_requests_total", "counter", "API requests by route and status")
            for (method, route, status), n in sorted(self.requests.items()):
                lab = _labels({"method": method, "route": route, "status": status})
                out.append(f"smartcity_api_requests_total{lab} {n}")
            family("smartcity_api_request_seconds", "histogram", "API request latency")
            for (method, route), h in sorted(self.latency.items()):
                base = {"method": method, "route": route}
                acc = 0.0
                for i, le in enumerate(BUCKETS):
                    acc += h[i]
                    out.append(
                        f"smartcity_api_request_seconds_bucket{_labels({**base, 'le': repr(le)})} "
                        f"{acc:g}"
                    )
                total = acc + h[len(BUCKETS)]
                out.append(
                    f"smartcity_api_request_seconds_bucket{_labels({**base, 'le': '+Inf'})} "
                    f"{total:g}"
                )
                out.append(f"smartcity_api_request_seconds_sum{_labels(base)} {h[-1]:.6f}")
                out.append(f"smartcity_api_request_seconds_count{_labels(base)} {total:g}")
            gauges = (
                ("source_fps", "smartcity_stream_source_fps", "frames per second from the camera"),
                ("infer_ms", "smartcity_inference_ms", "inference time per batch, ms"),
                ("track_ms", "smartcity_tracking_ms", "tracking time per frame, ms"),
                ("decode_p99_ms", "smartcity_decode_p99_ms", "decode time p99, ms"),
                ("last_frame_age_s", "smartcity_stream_frame_age_seconds", "age of last frame"),
            )
            for key, name, help in gauges:
                family(name, "gauge", help)
                for cam, f in sorted(self.camera.items()):
                    v = f.get(key)
                    if isinstance(v, int | float):
                        out.append(f"{name}{_labels({'camera': cam})} {float(v):g}")
            counters = (
                ("frames_decoded", "smartcity_stream_frames_decoded_total", "frames decoded"),
                ("frames_dropped", "smartcity_stream_frames_dropped_total", "frames dropped"),
                ("reconnects", "smartcity_stream_reconnects_total", "stream reconnects"),
                ("bus_dropped", "smartcity_bus_dropped_total", "bus messages the engine dropped"),
            )
            for key, name, help in counters:
                family(name, "counter", help)
                for cam, f in sorted(self.camera.items()):
                    v = f.get(key)
                    if isinstance(v, int | float):
                        out.append(f"{name}{_labels({'camera': cam})} {float(v):g}")
            family("smartcity_stream_up", "gauge", "1 when the camera's stream is running")
            for cam, f in sorted(self.camera.items()):
                up = 1 if f.get("state") == "running" else 0
                out.append(f"smartcity_stream_up{_labels({'camera': cam})} {up}")
            family("smartcity_bus_gaps_total", "counter", "bus messages the API missed, by topic")
            for topic, n in sorted(self.bus_gaps.items()):
                out.append(f"smartcity_bus_gaps_total{_labels({'topic': topic})} {n}")
            family(
                "smartcity_incidents_opened_total", "counter", "incidents opened since API start"
            )
            for t, n in sorted(self.incidents.items()):
                out.append(f"smartcity_incidents_opened_total{_labels({'type': t})} {n}")
        for name, v in sorted((extra or {}).items()):
            family(name, "gauge", name.replace("_", " "))
            out.append(f"{name} {v:g}")
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """Times every HTTP request, labelled by its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", "?"))
            self.metrics.observe_request(method, str(route), status[0], time.perf_counter() - t0)
