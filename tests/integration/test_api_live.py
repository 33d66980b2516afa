"""The API on a real bus: incidents from the incidents service reach WebSocket and SSE clients
(filtered, camera-scoped), operator actions are pushed, camera changes are announced as
config.changed, health reaches /metrics and /system/health, webhooks get signed deliveries of
incident events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from smartcity.api.webhooks import verify
from smartcity.bus import Broker, ConfigChangedEvent, HealthEvent, IncidentEvent, Publisher
from smartcity.bus.sockets import publisher_endpoint, subscriber_endpoint
from smartcity.bus.subscriber import Subscriber
from tests.support.api import Api, make_api, make_served, password


@pytest.fixture
def bus(run_dir: Path) -> Iterator[Publisher]:
    """A broker in run_dir and a publisher on it (what the engine and incidents service are)."""
    broker = Broker(run_dir).start()
    pub = Publisher(publisher_endpoint(run_dir))
    try:
        yield pub
    finally:
        pub.close()
        broker.stop()


@pytest.fixture
def bus_api(tmp_path: Path, run_dir: Path, bus: Publisher) -> Iterator[tuple[Api, Publisher]]:
    for a in make_api(tmp_path, run_dir=str(run_dir)):
        yield a, bus


def _token(url: str, user: str) -> str:
    import httpx

    r = httpx.post(f"{url}/api/v1/auth/token", json={"username": user, "password": password(user)})
    return str(r.json()["token"])


def _opened(api: Api, pub: Publisher, camera: str, type: str = "wrong_way") -> str:
    """What the incidents service does: store first, then publish."""
    iid = api.incident(camera=camera, type=type)
    ev = IncidentEvent(type=type, seq=0, id=iid, cam=camera, state="open",
                       t_ns=time.time_ns(), track_ids=(7,), score=0.9)  # fmt: skip
    # the subscription of the API's bus thread may still be travelling to the broker: repeat
    # until the API has seen something (a late joiner misses the first messages by design)
    pub.publish(ev)
    return iid


def _wait_bridge(api: Api, pub: Publisher) -> None:
    """Until the API's bus thread receives (the SUB socket's subscription has reached the
    broker): health messages are harmless to repeat."""
    bridge = api.app.state.bus_bridge
    assert bridge is not None
    deadline = time.monotonic() + 20
    while bridge.received == 0:
        assert time.monotonic() < deadline, "the API never received from the bus"
        pub.publish(HealthEvent(cam="cam1", seq=0, t_ns=time.time_ns(), state="running",
                                source_fps=10.0, infer_ms=12.5, decoder="nvdec"))  # fmt: skip
        time.sleep(0.05)


def test_websocket_gets_incidents_filtered_and_scoped(bus_api) -> None:
    api, pub = bus_api
    _wait_bridge(api, pub)
    token = api.token("op1")  # restricted to cam1
    with api.client.websocket_connect(
        "/api/v1/live/ws?types=incident.*", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        assert ws.receive_json()["type"] == "hello"
        hidden = _opened(api, pub, "cam2")  # out of scope: never delivered
        t0 = time.monotonic()
        iid = _opened(api, pub, "cam1")
        msg = ws.receive_json()
        latency = time.monotonic() - t0
        assert msg["type"] == "incident.opened.wrong_way", msg
        assert msg["data"]["id"] == iid and msg["data"]["severity"] == "high"
        assert msg["camera"] == "cam1"
        print(f"websocket delivery after the store commit: {latency * 1000:.1f} ms")
        # an operator action is pushed too
        r = api.client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=api.auth("operator"))
        assert r.status_code == 200
        msg = ws.receive_json()
        assert msg["type"] == "incident.changed.wrong_way"
        assert msg["data"]["action"] == "acknowledge" and msg["data"]["by"] == "user:operator"
        # the connection may change its filter
        ws.send_text(json.dumps({"types": ["camera.state"]}))
        assert ws.receive_json()["type"] == "filter"
        pub.publish(HealthEvent(cam="cam1", seq=0, t_ns=time.time_ns(), state="reconnecting"))
        msg = ws.receive_json()
        assert msg["type"] == "camera.state" and msg["data"]["state"] == "reconnecting"
        # too big a message closes the connection
        ws.send_text("x" * 10_000)
        with pytest.raises(Exception):  # noqa: B017 - the close, in whatever form
            for _ in range(5):
                ws.receive_json()
    assert hidden


def test_sse_fallback_delivers(tmp_path: Path, run_dir: Path, bus: Publisher) -> None:
    """Over a real socket (the test client buffers whole answers; an event stream never ends)."""
    import httpx

    for srv, store in make_served(tmp_path, run_dir=str(run_dir)):
        tok = _token(srv.url, "viewer")
        iid = store.incidents.create(type="crash", camera_id="cam2", key="k",
                                     severity="critical").id  # fmt: skip
        ev = IncidentEvent(type="crash", seq=0, id=iid, cam="cam2", state="open",
                           t_ns=time.time_ns())  # fmt: skip
        got: list[str] = []
        url = f"{srv.url}/api/v1/live/events?types=incident.opened.*"
        auth = {"Authorization": f"Bearer {tok}"}
        with httpx.stream("GET", url, headers=auth, timeout=20) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("event: hello"):
                    break
            stop = threading.Event()

            def keep_publishing(stop: threading.Event, ev: IncidentEvent) -> None:
                while not stop.wait(0.1):  # until the API's SUB socket has joined
                    bus.publish(ev)

            t = threading.Thread(target=keep_publishing, args=(stop, ev), daemon=True)
            t.start()
            try:
                for line in lines:
                    got.append(line)
                    if line.startswith("data:") and iid in line:
                        break
            finally:
                stop.set()
                t.join()
        assert "event: incident.opened.crash" in got


def test_camera_change_is_announced_on_the_bus(bus_api, run_dir: Path) -> None:
    api, pub = bus_api
    with Subscriber(subscriber_endpoint(run_dir), ["config.changed"]) as sub:
        h = api.auth("maintenance")
        deadline = time.monotonic() + 20
        ev = None
        n = 0
        while ev is None:
            assert time.monotonic() < deadline
            n += 1
            geometry = {"location": {"latitude": -6.2, "longitude": 106.8 + n / 1000}}
            r = api.client.patch("/api/v1/cameras/cam1", json={"geometry": geometry}, headers=h)
            assert r.status_code == 200, r.text
            ev = sub.recv(timeout_s=0.2)
    assert isinstance(ev, ConfigChangedEvent)
    assert ev.cams == ("cam1",) and ev.reason == "api: camera changed"


def test_health_reaches_metrics_and_system_health(bus_api) -> None:
    api, pub = bus_api
    _wait_bridge(api, pub)
    text = api.client.get("/metrics", headers=api.auth("maintenance")).text
    assert 'smartcity_stream_source_fps{camera="cam1"} 10' in text
    assert 'smartcity_inference_ms{camera="cam1"} 12.5' in text
    assert 'smartcity_stream_up{camera="cam1"} 1' in text
    assert "smartcity_api_request_seconds_bucket" in text
    health = api.client.get("/api/v1/system/health", headers=api.auth("viewer")).json()
    assert health["cameras"]["cam1"]["state"] == "running"
    assert health["cameras"]["cam1"]["decoder"] == "nvdec"  # where the engine decodes it
    assert health["cameras"]["cam1"]["hwaccel_note"] is None
    assert health["cameras"]["cam2"]["decoder"] is None  # no health message yet
    assert health["services"]["bus"]["state"] == "running"
    assert health["services"]["engine"]["state"] == "running"
    assert health["services"]["incidents"]["state"] == "unknown"  # no ingest written yet
    assert health["cameras"]["cam2"]["state"] == "unknown"


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


def test_webhook_receives_signed_incident_events(bus_api) -> None:
    api, pub = bus_api
    _Receiver.got = []
    srv = HTTPServer(("127.0.0.1", 0), _Receiver)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        r = api.client.post("/api/v1/webhooks", headers=api.auth("admin"), json={
            "name": "cad", "url": f"http://127.0.0.1:{srv.server_port}/hook",
            "events": ["incident.opened.*"], "cameras": ["cam1"]})  # fmt: skip
        assert r.status_code == 201, r.text
        secret, hook = r.json()["secret"], r.json()["webhook"]
        assert "secret" not in json.dumps(api.client.get(
            "/api/v1/webhooks", headers=api.auth("admin")).json())  # fmt: skip
        _wait_bridge(api, pub)
        _opened(api, pub, "cam2")  # other camera: not for this hook
        iid = _opened(api, pub, "cam1")
        deadline = time.monotonic() + 20
        while not _Receiver.got:
            assert time.monotonic() < deadline, "no delivery"
            time.sleep(0.05)
        headers, body = _Receiver.got[0]
        assert verify(secret, headers["x-smartcity-signature"], body)
        assert not verify("another-secret-0123", headers["x-smartcity-signature"], body)
        doc = json.loads(body)
        assert doc["type"] == "incident.opened.wrong_way" and doc["data"]["id"] == iid
        # the receiver saw the request before it answered: wait for the log to say so
        while True:
            log = api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries",
                                 headers=api.auth("admin")).json()  # fmt: skip
            if log and log[0]["status"] != "pending":
                break
            assert time.monotonic() < deadline, log
            time.sleep(0.05)
        assert [d["status"] for d in log] == ["delivered"] and log[0]["last_status_code"] == 204
        assert len(_Receiver.got) == 1
    finally:
        srv.shutdown()
        srv.server_close()


class _FakePipeline:
    """What the engine's evidence server reads: the latest frame of a camera (grey, 320x240)."""

    def snapshot(self, cam: str) -> dict[str, Any] | None:
        import numpy as np

        if cam != "cam1":
            return None
        return {"image": np.full((240, 320, 3), 128, np.uint8), "frame": 42, "pts": 4.2,
                "t_ns": time.time_ns()}  # fmt: skip


def test_live_picture_with_tracks_drawn_and_mjpeg(
    tmp_path: Path, run_dir: Path, bus: Publisher
) -> None:
    import cv2
    import httpx
    import numpy as np

    from smartcity.bus import TracksEvent
    from smartcity.bus.evidence import evidence_endpoint
    from smartcity.engine.evidence import EvidenceServer

    server = EvidenceServer(_FakePipeline(), evidence_endpoint(run_dir)).start()
    try:
        for srv, _store in make_served(tmp_path, run_dir=str(run_dir), mjpeg_fps=10.0):
            tok = _token(srv.url, "viewer")
            auth = {"Authorization": f"Bearer {tok}"}
            tracks = TracksEvent(
                cam="cam1", seq=0, frame=42, pts=4.2, t_ns=time.time_ns(), w=320, h=240,
                track_id=np.array([7], np.int64), class_id=np.array([2], np.int32),
                score=np.array([0.9], np.float32),
                xyxy=np.array([[100, 60, 220, 180]], np.float32),
            )  # fmt: skip
            deadline = time.monotonic() + 20
            while True:  # until the API's bus thread has the tracks of that frame
                bus.publish(tracks)
                r = httpx.get(f"{srv.url}/api/v1/live/cameras/cam1/snapshot.jpg", headers=auth)
                assert r.status_code == 200, r.text
                img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
                assert img.shape == (240, 320, 3)
                edge = img[60:180, 99:102].astype(int)  # the box's left edge
                if abs(edge[:, :, 1] - edge[:, :, 2]).mean() > 40:  # green drawn on grey
                    break
                assert time.monotonic() < deadline, "tracks never drawn"
                time.sleep(0.1)
            assert abs(img[20:40, 20:40].astype(int) - 128).max() < 12  # the rest untouched
            r = httpx.get(f"{srv.url}/api/v1/live/cameras/cam2/snapshot.jpg", headers=auth)
            assert r.status_code == 404 and "no frame" in r.text
            frames = 0
            with httpx.stream("GET", f"{srv.url}/api/v1/live/cameras/cam1/mjpeg",
                              headers=auth, timeout=20) as s:  # fmt: skip
                assert s.headers["content-type"].startswith("multipart/x-mixed-replace")
                buf = b""
                for chunk in s.iter_bytes():
                    buf += chunk
                    frames = buf.count(b"Content-Type: image/jpeg")
                    if frames >= 2:
                        break
            assert frames >= 2
    finally:
        server.stop()


def test_websocket_over_uvicorn(tmp_path: Path, run_dir: Path, bus: Publisher) -> None:
    """The live feed through a real server (the test client above does not go through
    uvicorn's WebSocket protocol, which needs the `websockets` package)."""
    from websockets.sync.client import connect

    for srv, store in make_served(tmp_path, run_dir=str(run_dir)):
        tok = _token(srv.url, "viewer")
        url = srv.url.replace("http://", "ws://") + "/api/v1/live/ws?types=incident.*"
        with connect(url, additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            iid = store.incidents.create(type="speeding", camera_id="cam1", key="k",
                                         severity="medium").id  # fmt: skip
            ev = IncidentEvent(type="speeding", seq=0, id=iid, cam="cam1", state="open",
                               t_ns=time.time_ns())  # fmt: skip
            deadline = time.monotonic() + 20
            while True:  # until the API's SUB socket has joined the broker
                bus.publish(ev)
                try:
                    msg = json.loads(ws.recv(timeout=0.2))
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "no event over the WebSocket"
            assert msg["type"] == "incident.opened.speeding" and msg["data"]["id"] == iid
        # without credentials the upgrade is refused
        import websockets

        with pytest.raises(websockets.exceptions.WebSocketException):
            with connect(url) as ws:
                ws.recv(timeout=5)
