"""`smartcity demo --appliance`: the whole appliance on an embedded default (docs/operations.md,
"The demo").

Writes appliance.yaml, engine-traffic.yaml, engine-person.yaml and incidents.yaml into a demo
directory (default ./demo-data, the data directory inside it), then starts:

- one `smartcity scenarios serve NAME.mp4 --port P --loop` per rendered scene (RTSP on
  loopback; the scenes are rendered once, into the scenario cache);
- `smartcity run --config appliance.yaml`: the broker, the traffic engine (the 4 rendered
  scenes, models/synthetic-traffic), the incidents service and the api;
- a second engine on the same bus, run by the demo (the engine takes one model per process):
  4 looping copies of tests/media/vtest-h264.mp4 with models/person-ssdlite. Its evidence
  server binds ipc://<run dir>/evidence.people (`--evidence-name people`) beside the supervised
  engine's ipc://<run dir>/evidence; the API and the incidents service ask both.

It prints the console's URL and the admin's one-time password and runs until Ctrl-C (or
`--seconds`), then stops everything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "media" / "vtest-h264.mp4"
MODELS = ROOT / "models"
PERSON_MODEL = "person-ssdlite"
TRAFFIC_MODEL = "synthetic-traffic"
#: Library scenes that fire within their first loop: a wrong-way car (20 s), a stopped car
#: (30 s), counting on an arterial (25 s), a queue building up (60 s).
SCENES = ("wrong_way_urban", "stopped_vehicle_urban", "counting_arterial", "congestion_arterial")
VTEST_CAMERAS = 4
RESOLUTION = "640x360"
DEFAULT_DIR = "demo-data"
DEFAULT_PORT = 8080
DEFAULT_RTSP_PORT = 8554
PASSWORD_FILE = "admin-password"
STOP_WAIT_S = 12.0
PERSON_ENGINE = "engine-p"  # the name of the person engine's lines
READY_TIMEOUT_S = 120.0

#: VTEST_GEOMETRY (smartcity.incidents.rules.oracle, an assumed calibration and walkway lanes)
#: plus a counting line across the walkway; people only, so the rules that fire there are the
#: crossings (counts), crowds and loitering.
VTEST_EXTRA_LINES = ({"name": "walkway", "a": [384, 150], "b": [384, 576], "in": "left"},)
VTEST_RULES = {
    "crowd": {"min_people": 4, "radius_m": 4, "min_s": 3, "clear_people": 2},
    "loitering": {"radius_m": 3, "min_s": 20},
    "pedestrian_on_carriageway": False,  # the "lanes" are a walkway
}


class DemoError(RuntimeError):
    """Something the demo needs is missing (a port taken, gst-rtsp-server absent ...)."""


@dataclass(frozen=True)
class Scene:
    name: str  # the library scenario
    cam: str  # the camera id
    video: Path  # the rendered MP4
    head: Mapping[str, Any]  # NAME.scenario.json
    port: int  # its RTSP server

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.name}"


@dataclass(frozen=True)
class DemoFiles:
    dir: Path
    appliance: Path
    engine_person: Path
    engine_traffic: Path
    incidents: Path
    data_dir: Path
    run_dir: Path
    port: int


# ---------------------------------------------------------------------------------- scenes
def render_scenes(
    cache: str | Path | None = None,
    *,
    rtsp_port: int = DEFAULT_RTSP_PORT,
    seconds: float | None = None,
    names: Sequence[str] = SCENES,
) -> list[Scene]:
    """Render (or reuse from the cache) the demo's scenes at 640x360."""
    from smartcity import scenarios
    from smartcity.scenarios import serve

    out = []
    for i, name in enumerate(names):
        video, _ = serve.render_cached(
            scenarios.load(name), cache, seconds=seconds, resolution=RESOLUTION
        )
        head = json.loads(video.with_name(f"{name}.scenario.json").read_text(encoding="utf-8"))
        out.append(Scene(name, name.replace("_", "-"), video, head, rtsp_port + i))
    return out


def _pts(a: Any) -> list[list[float]]:
    return [[round(float(x), 4), round(float(y), 4)] for x, y in np.asarray(a, np.float64)]


def scene_geometry(head: Mapping[str, Any], cam: str) -> dict[str, Any]:
    """The incidents configuration's `geometry:` of a rendered scene, from its truth
    (geometry_from_scenario: lanes, counting lines, carriageways, crossings, waiting areas and
    the exact image -> ground homography)."""
    from smartcity.incidents.geometry import geometry_from_scenario

    g = geometry_from_scenario(head, cam=cam)
    assert g.calibration is not None
    H = np.asarray(g.calibration.image_to_ground, np.float64)
    lanes = []
    for ln in g.lanes:
        lane: dict[str, Any] = {
            "name": ln.name,
            "polygon_m": _pts(ln.polygon),
            "direction": [round(float(v), 6) for v in ln.direction],
            "road": ln.road,
            "direction_name": ln.direction_name,
        }
        if ln.speed_limit_kmh is not None:
            lane["speed_limit_kmh"] = float(ln.speed_limit_kmh)
        lanes.append(lane)
    return {
        "calibration": {"homography": [[float(v) for v in row] for row in H]},
        "lanes": lanes,
        "lines": [
            {"name": ln.name, "a_m": _pts([ln.a])[0], "b_m": _pts([ln.b])[0], "in": ln.in_side}
            for ln in g.lines
        ],
        "carriageways": [{"name": r.name, "polygon_m": _pts(r.polygon)} for r in g.carriageways],
        "crossings": [{"name": r.name, "polygon_m": _pts(r.polygon)} for r in g.crossings],
        "waiting_areas": [{"name": r.name, "polygon_m": _pts(r.polygon)} for r in g.waiting_areas],
        "location": {"road": g.location.road},
        "width": g.width,
        "height": g.height,
    }


# ---------------------------------------------------------------------------------- configs
def default_run_dir(demo_dir: Path) -> Path:
    """A short bus run dir under /tmp, one per demo directory (ipc paths <= 107 bytes)."""
    h = hashlib.sha1(str(demo_dir.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"scdemo-{os.getuid()}-{h}"


def _dump(path: Path, header: str, data: Mapping[str, Any]) -> None:
    path.write_text(header + yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")


def write_configs(
    demo_dir: str | Path,
    scenes: Sequence[Scene],
    *,
    port: int = DEFAULT_PORT,
    run_dir: Path | None = None,
) -> DemoFiles:
    """appliance.yaml, engine-traffic.yaml, engine-person.yaml and incidents.yaml in demo_dir
    (written every start: edit them and run `smartcity run --config appliance.yaml` instead)."""
    from smartcity.incidents.rules.oracle import VTEST_GEOMETRY, rules_config_for

    d = Path(demo_dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    data_dir = d / "data"
    run_dir = run_dir or default_run_dir(d)
    files = DemoFiles(
        dir=d,
        appliance=d / "appliance.yaml",
        engine_person=d / "engine-person.yaml",
        engine_traffic=d / "engine-traffic.yaml",
        incidents=d / "incidents.yaml",
        data_dir=data_dir,
        run_dir=run_dir,
        port=port,
    )
    header = "# Written by `smartcity demo --appliance` at each start (docs/operations.md).\n"
    vtest_ids = [f"vtest-{i + 1}" for i in range(VTEST_CAMERAS)]
    _dump(
        files.appliance,
        header,
        {
            "data_dir": "data",
            "run_dir": str(run_dir),
            "log": {"file": "data/smartcity.log", "level": "info", "console": True},
            "services": {
                "engine": {"config": files.engine_traffic.name},
                "incidents": {"config": files.incidents.name},
                "api": {"enabled": True},
            },
            "api": {"host": "127.0.0.1", "port": port},
        },
    )
    calibration = VTEST_GEOMETRY["calibration"]
    _dump(
        files.engine_person,
        header + "# Run beside the appliance by the demo (its evidence server: evidence.people).\n",
        {
            "model": PERSON_MODEL,
            "models_root": str(MODELS),
            "max_batch": 8,
            "inference_threads": 1,
            "cameras": [
                {
                    "id": cam,
                    "url": str(CLIP),
                    "analyze_fps": 5,
                    "loop": True,
                    "realtime": True,
                    "calibration": calibration,
                }
                for cam in vtest_ids
            ],
        },
    )
    _dump(
        files.engine_traffic,
        header,
        {
            "model": TRAFFIC_MODEL,
            "models_root": str(MODELS),
            "max_batch": 8,
            "inference_threads": 1,
            "cameras": [
                {
                    "id": s.cam,
                    "url": s.url,
                    "rtsp_transport": "tcp",
                    "analyze_fps": 10,
                    "image_to_ground": [
                        [float(v) for v in row] for row in s.head["camera"]["image_to_ground"]
                    ],
                }
                for s in scenes
            ],
        },
    )
    no_health = {"enabled": False}  # looping files and scenes jump at each loop
    cameras: list[dict[str, Any]] = [
        {
            "id": cam,
            "name": f"Campus walkway {i + 1}",
            "snapshot_every_s": 0,
            "health": no_health,
            "geometry": {**VTEST_GEOMETRY, "lines": [dict(x) for x in VTEST_EXTRA_LINES]},
            "rules": VTEST_RULES,
        }
        for i, cam in enumerate(vtest_ids)
    ]
    cameras += [
        {
            "id": s.cam,
            "name": str(s.head.get("description") or s.name)[:80],
            "snapshot_every_s": 0,
            "health": no_health,
            "geometry": scene_geometry(s.head, s.cam),
            "rules": rules_config_for(s.head),
        }
        for s in scenes
    ]
    _dump(
        files.incidents,
        header,
        {
            "data_dir": "data",
            "evidence": {"snapshot": True, "clip": True, "pre_s": 5, "post_s": 5, "workers": 1},
            "stats": {"lateness_s": 5, "ingest_every_s": 5},
            "cameras": cameras,
        },
    )
    return files


def check_configs(files: DemoFiles) -> list[str]:
    """What `smartcity run --check` says of appliance.yaml, plus the person engine's file:
    the errors (empty when every file is valid)."""
    from smartcity.engine.process import EngineConfigError, load_engine_config
    from smartcity.supervisor import (
        ApplianceConfigError,
        check_service_configs,
        load_appliance_config,
    )

    try:
        cfg = load_appliance_config(files.appliance)
    except ApplianceConfigError as e:
        return [f"{files.appliance}: {e}"]
    errors, _ = check_service_configs(cfg)
    try:
        load_engine_config(files.engine_person)
    except (EngineConfigError, ValueError, OSError) as e:
        errors.append(f"{files.engine_person}: {e}")
    return errors


# ---------------------------------------------------------------------------------- processes
def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Proc:
    """A child in a process group of its own (Ctrl-C reaches the demo only), its output lines
    passed to on_line from a thread."""

    def __init__(self, name: str, argv: Sequence[str], on_line: Callable[[str, str], None]):
        self.name = name
        self.argv = tuple(argv)
        self.started = time.monotonic()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            process_group=0,
        )
        assert self.proc.stdout is not None
        self._thread = threading.Thread(
            target=self._read, args=(self.proc.stdout, on_line), daemon=True
        )
        self._thread.start()

    def _read(self, stream: IO[bytes], on_line: Callable[[str, str], None]) -> None:
        for raw in iter(stream.readline, b""):
            on_line(self.name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.running:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float) -> None:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self._thread.join(2)


class Demo:
    """Starts the RTSP servers, `smartcity run` and the traffic engine; `run(stop)` blocks."""

    def __init__(
        self, files: DemoFiles, scenes: Sequence[Scene], out: IO[str] | None = None
    ) -> None:
        self.files = files
        self.scenes = list(scenes)
        self.out = out or sys.stdout
        self.password: str | None = None
        self._lock = threading.Lock()
        self._procs: list[_Proc] = []
        self._serving: set[str] = set()
        self._broker_ready = threading.Event()
        self._password_seen = threading.Event()
        self._password_next = False
        self.first_incident_s: float | None = None

    # ------------------------------------------------------------------ output
    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _stamp(self, service: str, level: str, msg: str) -> str:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{now} {service:<10} {level.upper():<7} {msg}"

    def _on_run_line(self, _name: str, line: str) -> None:
        """`smartcity run`'s console: shown as is; the engine's start and the password noted."""
        parts = line.split(None, 4)
        msg = parts[4].strip() if len(parts) == 5 else line.strip()
        if self._password_next and msg:
            self._password_next = False
            self.password = msg
            self._password_seen.set()
        elif "one-time password" in msg and "created" in msg:
            self._password_next = True
        if "broker started" in msg:
            self._broker_ready.set()
        self.say(line)

    def _on_child_line(self, name: str, line: str) -> None:
        if not line.strip():
            return
        m = re.match(r"serving (rtsp://\S+)", line)
        if m:
            with self._lock:
                self._serving.add(name)
        level = "error" if "Traceback" in line or "ERROR" in line else "info"
        if "WARNING" in line:
            level = "warning"
        self.say(self._stamp(name, level, line))

    # ------------------------------------------------------------------ run
    def _start_servers(self) -> None:
        for s in self.scenes:
            if not _port_free(s.port):
                raise DemoError(f"RTSP port {s.port} (scene {s.name}) is taken: use --rtsp-port")
        py = sys.executable
        for s in self.scenes:
            argv = [py, "-m", "smartcity", "scenarios", "serve", str(s.video), "--port",
                    str(s.port), "--mount", f"/{s.name}", "--loop"]  # fmt: skip
            self._procs.append(_Proc(f"rtsp-{s.port}", argv, self._on_child_line))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._serving) == len(self.scenes):
                    return
            if any(not p.running for p in self._procs):
                raise DemoError("an RTSP server exited (see its lines above)")
            time.sleep(0.2)
        raise DemoError("the RTSP servers did not start within 60 s")

    def start(self) -> None:
        from smartcity.scenarios import serve

        if self.scenes:
            reason = serve.gst_rtsp_missing()
            if reason:
                raise DemoError(reason)
        if not _port_free(self.files.port):
            raise DemoError(f"port {self.files.port} is taken: use --port")
        self._start_servers()
        py = sys.executable
        run = [py, "-m", "smartcity", "run", "--config", str(self.files.appliance)]
        self._procs.append(_Proc("run", run, self._on_run_line))
        # The person engine joins once the broker has made the run dir; its evidence server
        # binds ipc://<run dir>/evidence.people (the supervised engine's holds .../evidence;
        # the API and the incidents service ask both).
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._broker_ready.wait(0.2):
            if not self._procs[-1].running or time.monotonic() > deadline:
                raise DemoError("`smartcity run` did not start its broker (see above)")
        eng = [py, "-m", "smartcity", "engine", "--config", str(self.files.engine_person),
               "--run-dir", str(self.files.run_dir), "--evidence-name", "people"]  # fmt: skip
        self._procs.append(_Proc(PERSON_ENGINE, eng, self._on_child_line))

    def banner(self) -> None:
        pw_file = self.files.dir / PASSWORD_FILE
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _port_open(self.files.port) and time.monotonic() < deadline:
            time.sleep(0.3)
        if self.password is None:
            self._password_seen.wait(1.0)
        if self.password is not None:
            fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.password + "\n")
            pw = f"{self.password}   (one-time: change it after logging in; kept in {pw_file})"
        elif pw_file.is_file():
            pw = f"{pw_file.read_text().strip()}   (from {pw_file}, the first start's)"
        else:
            pw = "(set at the first start; `smartcity users set-password admin`)"
        url = f"http://127.0.0.1:{self.files.port}/console"
        cams = VTEST_CAMERAS + len(self.scenes)
        self.say(
            "\n"
            "  smartcity demo: the appliance is running\n"
            f"    console   {url}\n"
            "    user      admin\n"
            f"    password  {pw}\n"
            f"    cameras   {cams}: vtest-1..{VTEST_CAMERAS} (person model), "
            + ", ".join(s.cam for s in self.scenes)
            + " (traffic model)\n"
            f"    data      {self.files.data_dir}  (rm -rf {self.files.dir} to start afresh)\n"
            "  Incidents and counts appear within a minute. Ctrl-C stops everything.\n"
        )

    def stop(self) -> None:
        """The traffic engine, the appliance (its services within 10 s), the RTSP servers."""
        for p in reversed(self._procs):
            p.terminate()
            if p.name in ("run", PERSON_ENGINE):
                p.wait(STOP_WAIT_S)
        for p in self._procs:
            p.wait(STOP_WAIT_S)
        self._procs.clear()

    def run(self, stop: threading.Event, seconds: float | None = None) -> int:
        t0 = time.monotonic()
        try:
            self.start()
            self.banner()
            while not stop.wait(0.5):
                if seconds is not None and time.monotonic() - t0 >= seconds:
                    break
                for i, p in enumerate(self._procs):
                    if p.running:
                        continue
                    if p.name == PERSON_ENGINE and time.monotonic() - p.started > 10:
                        # not the supervisor's: restarted here, at most every 10 s
                        self.say(self._stamp("demo", "warning", "the person engine exited"))
                        p.wait(1)
                        self._procs[i] = _Proc(p.name, p.argv, self._on_child_line)
                    elif p.name != PERSON_ENGINE:
                        self.say(self._stamp("demo", "error", f"{p.name} exited"))
                        return 1
            return 0
        except DemoError as e:
            self.say(f"smartcity demo: {e}")
            return 2
        finally:
            self.say(self._stamp("demo", "info", "stopping"))
            self.stop()
            self.say(self._stamp("demo", "info", "stopped"))


# ---------------------------------------------------------------------------------- command
def main(args: argparse.Namespace) -> int:
    demo_dir = Path(args.dir)
    try:
        print(f"smartcity demo: rendering the scenes (once; cached): {', '.join(SCENES)}")
        scenes = render_scenes(args.cache, rtsp_port=args.rtsp_port)
    except Exception as e:  # noqa: BLE001 - a scenario or the renderer: say which, exit 2
        print(f"smartcity demo: cannot render the scenes: {e}", file=sys.stderr)
        return 2
    files = write_configs(demo_dir, scenes, port=args.port)
    errors = check_configs(files)
    for err in errors:
        print(f"smartcity demo: {err}", file=sys.stderr)
    if errors:
        return 2
    print(f"smartcity demo: configuration in {files.dir}")
    stop = threading.Event()

    def on_stop(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    return Demo(files, scenes).run(stop, args.seconds)
