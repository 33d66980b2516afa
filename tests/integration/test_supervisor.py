"""`smartcity run`: the supervisor with real processes (stand-in children, and the real api).

Stand-ins are small Python scripts: `Supervisor([Service(name, argv)], ...)` in-process, or the
test-only `test_services` block of appliance.yaml through the command. Time-outs are generous;
nothing here measures speed.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import yaml

from smartcity.bus import IncidentEvent, Subscriber, subscriber_endpoint
from smartcity.cli import main as cli_main
from smartcity.store import Store
from smartcity.supervisor import (
    CRASH_LOOP_TYPE,
    ONE_TIME_PASSWORD_HIDDEN,
    ApplianceConfigError,
    LogStream,
    RestartPolicy,
    Service,
    Supervisor,
    load_appliance_config,
    parse_appliance_config,
)
from tests.conftest import ROOT, wait_for
from tests.support.api import api_only_appliance
from tests.support.media import free_port

PY = sys.executable


def script(tmp_path: Path, name: str, body: str) -> tuple[str, ...]:
    f = tmp_path / f"{name}.py"
    f.write_text(body)
    return (PY, str(f))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def supervising(sup: Supervisor) -> Iterator[threading.Event]:
    stop = threading.Event()
    t = threading.Thread(target=sup.run, args=(stop,), name="supervisor")
    t.start()
    try:
        assert sup.started.wait(30), "the supervisor did not start"
        yield stop
    finally:
        stop.set()
        t.join(30)
        sup.log.close()
        assert not t.is_alive(), "the supervisor did not stop"


SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"


def test_restart_with_growing_delays_others_untouched(tmp_path: Path, run_dir: Path) -> None:
    bad = script(tmp_path, "bad", "import sys\nprint('failing')\nsys.exit(1)\n")
    steady = script(tmp_path, "steady", "import sys, time\ntime.sleep(0.3)\nsys.exit(1)\n")
    good = script(tmp_path, "good", SLEEPER)
    sup = Supervisor(
        [Service("bad", bad), Service("steady", steady), Service("good", good)],
        run_dir=run_dir,
        data_dir=tmp_path / "data",
        restart=RestartPolicy(initial_s=0.05, max_s=0.4, stable_s=0.2, crash_loop_restarts=100),
        log=LogStream(tmp_path / "run.log"),
    )
    with supervising(sup):
        assert wait_for(lambda: sup.status()["good"].pid is not None, 30)
        good_pid = sup.status()["good"].pid
        assert wait_for(lambda: sup.status()["bad"].restarts >= 6, 60)
        assert wait_for(lambda: sup.status()["steady"].restarts >= 3, 60)
        st = sup.status()
        assert st["good"].pids == (good_pid,) and st["good"].restarts == 0
        assert good_pid is not None and not gone(good_pid)
    bad_st, steady_st = st["bad"], st["steady"]
    # doubling from initial_s up to max_s
    assert list(bad_st.delays[:6]) == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert bad_st.last_exit_code == 1 and not bad_st.crash_loop
    assert len(set(bad_st.pids)) == len(bad_st.pids) >= 6
    # a child that ran stable_s each time starts again from initial_s
    assert set(steady_st.delays) == {0.05}
    assert sup.stop_seconds is not None and sup.stop_seconds < 10
    for pid in (*st["good"].pids, *bad_st.pids, *steady_st.pids):
        assert gone(pid), pid
    recs = records(tmp_path / "run.log")
    sup_msgs = [r["msg"] for r in recs if r["service"] == "supervisor"]
    assert any("bad (pid" in m and "exited with code 1" in m and "restart in 0.1 s" in m
               for m in sup_msgs)  # fmt: skip
    assert any(r["service"] == "bad" and r["msg"] == "failing" for r in recs)


def test_crash_loop_is_one_system_incident_in_store_and_on_bus(
    tmp_path: Path, run_dir: Path
) -> None:
    go = tmp_path / "go"
    looping = script(
        tmp_path,
        "looping",
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.02)\n"
        "print('opening rtsp://admin:hunter2@10.1.1.1/stream1 camera gate-7', flush=True)\n"
        "print('ERROR: cannot reach the database', file=sys.stderr, flush=True)\n"
        "sys.exit(3)\n",
    )
    data = tmp_path / "data"
    sup = Supervisor(
        [Service("looping", looping), Service("good", script(tmp_path, "good", SLEEPER))],
        run_dir=run_dir,
        data_dir=data,
        restart=RestartPolicy(
            initial_s=0.05, max_s=0.3, stable_s=60, crash_loop_restarts=3, crash_loop_within_s=60
        ),
        log=LogStream(tmp_path / "run.log"),
    )
    events: list[IncidentEvent] = []
    with supervising(sup):
        with Subscriber(subscriber_endpoint(run_dir), ["incident."]) as sub:
            time.sleep(1.0)  # the subscription travels to the supervisor's publisher
            go.touch()
            deadline = time.monotonic() + 60
            while not events and time.monotonic() < deadline:
                ev = sub.recv(timeout_s=1.0)
                if isinstance(ev, IncidentEvent):
                    events.append(ev)
            assert events, "no incident on the bus"
            # it keeps restarting, at max_s, without a second report
            n = sup.status()["looping"].restarts
            assert wait_for(lambda: sup.status()["looping"].restarts >= n + 2, 30)
            while (ev := sub.recv(timeout_s=0.3)) is not None:
                events.append(ev)  # type: ignore[arg-type]
    st = sup.status()["looping"]
    assert st.crash_loop
    assert st.delays[:2] == (0.05, 0.1) and set(st.delays[2:]) == {0.3}
    assert len(sup.status()["good"].pids) == 1
    assert len(events) == 1
    ev = events[0]
    assert ev.type == CRASH_LOOP_TYPE and ev.cam == "appliance" and ev.state == "open"
    assert ev.details["service"] == "looping" and ev.details["last_exit_code"] == 3
    assert ev.details["restarts"] == 3 and ev.details["severity"] == "high"
    assert "rtsp://***@10.1.1.1/stream1" in str(ev.details["last_lines"])
    with Store.open(data_dir=data) as store:
        page = store.incidents.list(type=CRASH_LOOP_TYPE)
        assert len(page.items) == 1
        inc = page.items[0]
    assert inc.id == ev.id and inc.camera_id == "appliance" and inc.key == "service:looping"
    assert inc.severity == "high" and inc.state == "open"
    d = inc.details
    assert d["service"] == "looping" and d["restarts"] == 3 and d["last_exit_code"] == 3
    assert "ERROR: cannot reach the database" in d["last_lines"]
    assert "hunter2" not in json.dumps(d) and "hunter2" not in (tmp_path / "run.log").read_text()


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path, run_dir: Path) -> None:
    stubborn = script(
        tmp_path,
        "stubborn",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(120)\n",
    )
    reloadable = script(
        tmp_path,
        "reloadable",
        "import signal, time\n"
        "signal.signal(signal.SIGHUP, lambda *_: print('reloading', flush=True))\n"
        "print('up', flush=True)\nwhile True:\n    time.sleep(1)\n",
    )
    sup = Supervisor(
        [Service("stubborn", stubborn), Service("good", reloadable, reload=True)],
        run_dir=run_dir,
        data_dir=tmp_path / "data",
        log=LogStream(tmp_path / "run.log"),
        stop_grace_s=1.0,
    )

    def said(service: str, msg: str) -> bool:
        return any(
            r["service"] == service and r["msg"] == msg for r in records(tmp_path / "run.log")
        )

    with supervising(sup):
        assert wait_for(lambda: said("stubborn", "up") and said("good", "up"), 30)
        sup.request_reload()  # SIGHUP goes to the services marked reload only
        assert wait_for(lambda: said("good", "reloading"), 30)
        st = sup.status()
        assert st["stubborn"].restarts == 0
    assert st["stubborn"].pid is not None and st["good"].pid is not None
    assert gone(st["stubborn"].pid) and gone(st["good"].pid)
    after = sup.status()
    assert after["stubborn"].last_exit_code == -signal.SIGKILL
    assert after["good"].last_exit_code == -signal.SIGTERM
    msgs = [r["msg"] for r in records(tmp_path / "run.log")]
    assert any("did not stop within 1 s: killed" in m for m in msgs)


def test_run_command_sigterm_logs_and_no_orphans(tmp_path: Path, run_dir: Path) -> None:
    talker = script(
        tmp_path,
        "talker",
        "import os, sys, time\n"
        "print(f'pid={os.getpid()}', flush=True)\n"
        "print(\"camera 'gate-1' opening rtsp://user:pa55w0rd@10.0.0.9:554/s1\", flush=True)\n"
        "print('ERROR: decoder failed cam=gate-2', file=sys.stderr, flush=True)\n"
        "print('a plain warning', file=sys.stderr, flush=True)\n"
        "print('x' * 10000, flush=True)\n"
        "print('after the long line', flush=True)\n"
        "time.sleep(120)\n",
    )
    parent = script(
        tmp_path,
        "parent",
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(120)'])\n"
        "print(f'pid={os.getpid()} grandchild={p.pid}', flush=True)\n"
        "time.sleep(120)\n",
    )
    log = tmp_path / "logs" / "smartcity.log"
    cfg = {
        "data_dir": "data",
        "run_dir": str(run_dir),
        "log": {"file": "logs/smartcity.log", "level": "info", "console": True},
        "test_services": {"talker": list(talker), "parent": list(parent)},
    }
    appliance = tmp_path / "appliance.yaml"
    appliance.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "console.txt"
    with open(out, "wb") as console:
        proc = subprocess.Popen(
            [PY, "-m", "smartcity", "run", "--config", str(appliance)],
            stdout=console,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:

            def pids() -> list[int]:
                found = []
                for r in records(log):
                    if r["service"] in ("talker", "parent") and r["msg"].startswith("pid="):
                        found += [int(w.split("=")[1]) for w in r["msg"].split()]
                return found

            assert wait_for(lambda: len(pids()) == 3 or proc.poll() is not None, 60)
            assert len(pids()) == 3, out.read_text()
            assert wait_for(
                lambda: any(r["msg"] == "after the long line" for r in records(log)), 30
            )
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"smartcity run stopped {took:.2f} s after SIGTERM")
    assert rc == 0, out.read_text()
    assert took < 10
    for pid in pids():
        assert gone(pid), f"pid {pid} left behind"
    assert (log.stat().st_mode & 0o777) & ~0o640 == 0
    recs = records(log)
    for r in recs:
        assert set(r) == {"ts", "service", "level", "camera", "msg"}
        assert r["ts"].endswith("Z") and r["level"] in ("info", "warning", "error")
    talk = [r for r in recs if r["service"] == "talker"]
    cam1 = next(r for r in talk if "opening" in r["msg"])
    assert cam1 == {**cam1, "level": "info", "camera": "gate-1"}
    assert cam1["msg"] == "camera 'gate-1' opening rtsp://***@10.0.0.9:554/s1"
    err = next(r for r in talk if "decoder failed" in r["msg"])
    assert err["level"] == "error" and err["camera"] == "gate-2"
    warn = next(r for r in talk if r["msg"] == "a plain warning")
    assert warn["level"] == "warning" and warn["camera"] is None
    long = next(r for r in talk if r["msg"].startswith("xxx"))
    assert len(long["msg"].encode()) <= 8192 + 40 and long["msg"].endswith("[line cut at 8 KiB]")
    sup_msgs = [r["msg"] for r in recs if r["service"] == "supervisor"]
    assert any(m.startswith("started talker (pid") for m in sup_msgs)
    assert any(m.startswith("stopped in") for m in sup_msgs)
    text = out.read_text()
    assert "pa55w0rd" not in text and "pa55w0rd" not in log.read_text()
    assert any(
        line[:4].isdigit() and " talker " in line and " ERROR " in line and "cam=gate-2" in line
        for line in text.splitlines()
    ), text


def test_appliance_config_checked_whole(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = tmp_path / "appliance.yaml"
    (tmp_path / "engine.yaml").write_text("x: 1\n")

    def err(doc: dict) -> str:
        with pytest.raises(ApplianceConfigError) as e:
            parse_appliance_config(doc, base)
        return str(e.value)

    ok = {"data_dir": "d", "services": {"engine": {"enabled": False},
                                        "incidents": {"enabled": False}}}  # fmt: skip
    cfg = parse_appliance_config(ok, base)
    assert cfg.data_dir == tmp_path / "d" and cfg.services["api"].enabled
    assert cfg.api.data_dir == str(tmp_path / "d") and cfg.restart == RestartPolicy()
    assert err({**ok, "colour": 1}).startswith("colour: unknown field")
    assert err({"services": ok["services"]}).startswith("data_dir: missing")
    assert err({**ok, "restart": {"max_s": 0}}).startswith("restart.max_s: must be a positive")
    assert err({**ok, "restart": {"crash_loop": {"restarts": 2.5}}}).startswith(
        "restart.crash_loop.restarts:"
    )
    assert err({**ok, "restart": {"initial_s": 5, "max_s": 1}}).startswith("restart.max_s:")
    assert err({**ok, "log": {"level": "loud"}}).startswith("log.level:")
    assert err({**ok, "api": {"port": 70000}}).startswith("api.port:")
    assert err({**ok, "api": {"db_url": "sqlite:///x"}}).startswith("api.db_url:")
    assert err({**ok, "db_url": "nope"}).startswith("db_url:")
    assert err({"data_dir": "d"}).startswith("services.engine.config: missing")
    assert err({"data_dir": "d", "services": {"engine": {"config": "no.yaml"}}}).startswith(
        "services.engine.config: no file"
    )
    assert err({**ok, "test_services": {"a": "not a list"}}).startswith("test_services.a:")
    # the command: the services' own files are checked too
    doc = {"data_dir": "d", "services": {"engine": {"config": "engine.yaml"},
                                         "incidents": {"enabled": False}}}  # fmt: skip
    base.write_text(yaml.safe_dump(doc))
    assert cli_main(["run", "--config", str(base), "--check"]) == 2
    assert "services.engine.config (" in capsys.readouterr().err
    example = ROOT / "appliance" / "appliance.example.yaml"
    assert load_appliance_config(example).log.level == "info"
    assert cli_main(["run", "--config", str(example), "--check"]) == 0
    assert "is valid; services: engine, incidents, api" in capsys.readouterr().out


def test_real_api_under_the_supervisor(tmp_path: Path, run_dir: Path) -> None:
    port = free_port()
    doc = api_only_appliance(run_dir, port)
    appliance = tmp_path / "appliance.yaml"
    appliance.write_text(yaml.safe_dump(doc))
    cfg = load_appliance_config(appliance)
    console = io.StringIO()
    sup = Supervisor.from_config(cfg, LogStream(cfg.log.file, console=console))
    url = f"http://127.0.0.1:{port}/api/docs/openapi.json"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 200 and "openapi" in json.loads(r.read())
        except OSError:
            return False

    with supervising(sup):
        assert wait_for(answers, 90, interval=0.25), console.getvalue()
        st = sup.status()["api"]
    assert st.restarts == 0 and st.pid is not None and gone(st.pid)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert sup.status()["api"].last_exit_code in (0, -signal.SIGTERM)
    assert sup.stop_seconds is not None and sup.stop_seconds < 10
    print(f"api stopped in {sup.stop_seconds:.2f} s")
    # the one-time admin password: on the console, never in the log file
    recs = records(tmp_path / "smartcity.log")
    hidden = [r for r in recs if r["msg"] == ONE_TIME_PASSWORD_HIDDEN]
    assert len(hidden) == 1 and hidden[0]["service"] == "api"
    lines = console.getvalue().splitlines()
    i = next(i for i, line in enumerate(lines) if "one-time password" in line)
    password = next(line for line in lines[i + 1 :] if " api " in line).split()[-1]
    assert len(password) >= 10 and password not in (tmp_path / "smartcity.log").read_text()


def test_crash_loop_record_merges_while_active(tmp_path: Path) -> None:
    from smartcity.supervisor import CrashLoop, record_crash_loop

    crash = CrashLoop("engine", 5, 120.0, -11, ("Segmentation fault",), time.time_ns())
    with Store.open(data_dir=tmp_path) as store:
        first, state = record_crash_loop(store, crash)
        assert state == "open" and first.count == 1 and first.key == "service:engine"
        again, state = record_crash_loop(store, crash)
        assert state == "update" and again.id == first.id and again.count == 2
        store.incidents.resolve(first.id, actor="operator")
        new, state = record_crash_loop(store, crash)
        assert state == "open" and new.id != first.id
        assert new.details["last_exit_code"] == -11
        assert new.details["last_lines"] == ["Segmentation fault"]
