"""The admin endpoints of /api/v1/system: the backup download, the log view, the models in
use, restarting a service."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import sqlite3
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from smartcity.api.backup import CONFIG_ENV
from smartcity.store import Store
from smartcity.supervisor import LOG_FILE_ENV, LogStream, RestartPolicy, Service, Supervisor
from tests.conftest import wait_for
from tests.support.api import Api, make_api

BACKUP = "/api/v1/system/backup"


def _appliance(tmp_path: Path) -> Path:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "engine.yaml").write_text("model: person-ssdlite\n")
    (conf / "incidents.yaml").write_text("data_dir: /var/lib/smartcity\n")
    path = conf / "appliance.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "services:\n  engine: {config: engine.yaml}\n  incidents: {config: incidents.yaml}\n"
    )
    return path


def _members(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None and m.isfile(), m.name
            out[m.name] = f.read()
        return out


def test_backup_holds_a_consistent_database_and_the_configuration(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _appliance(tmp_path)
    monkeypatch.setenv(CONFIG_ENV, str(config))
    ids = {api.incident(), api.incident(camera="cam2", type="crowd"), api.incident()}
    r = api.client.get(BACKUP, headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/gzip")
    assert r.headers["content-disposition"].startswith('attachment; filename="smartcity-backup-')
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.content).hexdigest()
    files = _members(r.content)
    assert set(files) == {"smartcity.db", "manifest.json", "config/appliance.yaml",
                          "config/engine.yaml", "config/incidents.yaml"}  # fmt: skip
    manifest = json.loads(files["manifest.json"])
    assert manifest["kind"] == "smartcity-backup" and manifest["problems"] == []
    assert manifest["database"]["dialect"] == "sqlite" and manifest["database"]["schema_revision"]
    for m in manifest["members"]:
        assert hashlib.sha256(files[m["name"]]).hexdigest() == m["sha256"], m["name"]
        assert len(files[m["name"]]) == m["size"]
    by_name = {m["name"]: m for m in manifest["members"]}
    assert by_name["config/engine.yaml"]["source"] == str(config.parent / "engine.yaml")
    assert files["config/appliance.yaml"] == config.read_bytes()
    # the database copy: whole, one file (no -wal needed), the seeded incidents in it
    db = tmp_path / "restored.db"
    db.write_bytes(files["smartcity.db"])
    con = sqlite3.connect(db)
    try:
        assert [r[0] for r in con.execute("PRAGMA integrity_check")] == ["ok"]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert {r[0] for r in con.execute("SELECT id FROM incidents")} == ids
        assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 5
    finally:
        con.close()
    with Store.open(f"sqlite:///{db}") as restored:  # the appliance opens it as it is
        assert {i.id for i in restored.incidents.list(limit=10).items} == ids
    # audited with the archive's hash; nothing left in the data directory
    row = api.store.audit.list(action="system.backup", limit=5)[-1]
    assert row.outcome == "ok" and row.actor == "user:admin"
    assert row.data is not None and row.data["sha256"] == r.headers["x-content-sha256"]
    assert not list(api.data_dir.glob(".backup-*"))


def test_backup_without_a_known_configuration_has_the_database_only(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    r = api.client.get(BACKUP, headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    assert set(_members(r.content)) == {"smartcity.db", "manifest.json"}


def test_a_missing_configuration_file_is_named_in_the_manifest_and_the_audit(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))
    r = api.client.get(BACKUP, headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    manifest = json.loads(_members(r.content)["manifest.json"])
    assert len(manifest["problems"]) == 1 and "gone.yaml: not found" in manifest["problems"][0]
    assert api.store.audit.list(action="system.backup", limit=5)[-1].outcome == "error"


@pytest.mark.parametrize("role", ["viewer", "operator", "maintenance"])
def test_backup_is_for_admins_only(api: Api, role: str) -> None:
    assert api.client.get(BACKUP, headers=api.auth(role)).status_code == 403
    assert api.client.get(BACKUP).status_code == 401


def test_postgresql_is_told_to_use_pg_dump(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import smartcity.api.backup as backup

    monkeypatch.setattr(backup, "database_dialect", lambda store: "postgresql")
    r = api.client.get(BACKUP, headers=api.auth("admin"))
    assert r.status_code == 409 and "pg_dump" in r.json()["detail"], r.text
    assert api.store.audit.list(action="system.backup", limit=5)[-1].outcome == "failed"
    assert not list(api.data_dir.glob(".backup-*"))


# ---------------------------------------------------------------------------------- logs
LOGS = "/api/v1/system/logs"


def _write_log(path: Path) -> None:
    """Five records as `smartcity run` writes them, then lines that are not records and a
    last line still being written."""
    log = LogStream(path)
    log.emit("supervisor", "info", "supervising engine, incidents, api")
    log.line("engine", "WARNING: camera 'gate-1' reconnecting", stderr=True)
    log.line("engine", "ERROR: decoder failed for cam=gate-2", stderr=True)
    log.emit("api", "info", "listening on 127.0.0.1:8080")
    log.emit("incidents", "error", "evidence write failed: Disk full")
    log.close()
    with path.open("ab") as f:
        f.write(b"not json at all\n")
        f.write(b"[1, 2, 3]\n")
        f.write(b'{"ts": 1, "service": "api", "level": "info", "msg": "x"}\n')
        f.write(b'{"ts": "t", "service": "api", "level": "debug", "msg": "x"}\n')
        f.write(
            b'{"ts": "t", "service": "api", "level": "info", "msg": "' + b"a" * 70_000 + b'"}\n'
        )
        f.write(b"\n\xff\xfe\x00{\n")
        f.write(b'{"ts": "2026-11-28T10:00:00.000Z", "service": "engine", "lev')


def _logs(api: Api, user: str = "maintenance", **params: object) -> dict[str, Any]:
    r = api.client.get(LOGS, params=params, headers=api.auth(user))
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_logs_tail_filters_and_survives_malformed_lines(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOG_FILE_ENV, raising=False)
    _write_log(api.data_dir / "smartcity.log")  # the default place
    out = _logs(api)
    msgs = [r["msg"] for r in out["records"]]
    assert msgs == [
        "supervising engine, incidents, api",
        "WARNING: camera 'gate-1' reconnecting",
        "ERROR: decoder failed for cam=gate-2",
        "listening on 127.0.0.1:8080",
        "evidence write failed: Disk full",
    ]
    assert out["skipped"] == 6 and out["partial"] is True and out["complete"] is True
    assert out["file"] == str(api.data_dir / "smartcity.log")
    assert out["records"][1]["camera"] == "gate-1" and out["records"][1]["level"] == "warning"
    assert [r["service"] for r in _logs(api, service="engine")["records"]] == ["engine"] * 2
    assert [r["level"] for r in _logs(api, level="warning")["records"]] == [
        "warning", "error", "error"]  # fmt: skip
    assert [r["camera"] for r in _logs(api, camera="gate-2")["records"]] == ["gate-2"]
    assert [r["service"] for r in _logs(api, text="DISK")["records"]] == ["incidents"]
    assert [r["service"] for r in _logs(api, user="admin", limit=2)["records"]] == [
        "api", "incidents"]  # fmt: skip
    assert _logs(api, service="engine", level="error", text="nothing")["records"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"level": "debug"}, "level"),
     ({"service": "a b"}, "service"), ({"camera": "x" * 65}, "camera"),
     ({"text": "x" * 201}, "text")],
)  # fmt: skip
def test_logs_refuse_bad_filters_naming_them(
    api: Api, params: dict[str, object], field: str
) -> None:
    (api.data_dir / "smartcity.log").write_text("")
    r = api.client.get(LOGS, params=params, headers=api.auth("admin"))
    assert r.status_code == 400, r.text
    assert field in r.text


def test_logs_without_a_file_say_where_it_was_looked_for(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG_FILE_ENV, str(tmp_path / "var" / "smartcity.log"))
    r = api.client.get(LOGS, headers=api.auth("admin"))
    assert r.status_code == 404 and str(tmp_path / "var" / "smartcity.log") in r.json()["detail"]
    for role in ("viewer", "operator"):
        assert api.client.get(LOGS, headers=api.auth(role)).status_code == 403


def test_the_log_file_rotates_and_the_tail_reads_across_the_rotation(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log" / "smartcity.log"
    monkeypatch.setenv(LOG_FILE_ENV, str(path))
    log = LogStream(path, max_bytes=2000, keep=3)
    for i in range(60):
        log.emit("engine", "info", f"record {i:03d}")
    log.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["smartcity.log", "smartcity.log.1", "smartcity.log.2", "smartcity.log.3"]
    one = len(json.dumps({"ts": "2026-11-28T10:00:00.000Z", "service": "engine", "level": "info",
                          "camera": None, "msg": "record 000"})) + 1  # fmt: skip
    for p in path.parent.iterdir():
        assert p.stat().st_size < 2000 + one, p
        assert p.read_bytes().endswith(b"\n")  # a record is never split
    # the view: the current file, then the rotated .1 before it, in order, without gaps
    msgs = [r["msg"] for r in _logs(api, limit=1000)["records"]]
    numbers = [int(m.split()[1]) for m in msgs]
    assert numbers[-1] == 59 and numbers == list(range(numbers[0], 60)) and len(numbers) > 20
    assert [r["msg"] for r in _logs(api, limit=3)["records"]] == [
        "record 057", "record 058", "record 059"]  # fmt: skip


def test_smartcity_run_logs_to_the_data_dir_and_tells_the_api(tmp_path: Path) -> None:
    from smartcity.supervisor import parse_appliance_config, services_for

    doc = {"data_dir": "data", "services": {"engine": {"enabled": False},
                                            "incidents": {"enabled": False}}}  # fmt: skip
    cfg = parse_appliance_config(doc, tmp_path / "appliance.yaml")
    assert cfg.log.file == tmp_path / "data" / "smartcity.log"
    assert cfg.log.max_mb == 20 and cfg.log.keep == 5
    (api,) = services_for(cfg)
    assert api.env[LOG_FILE_ENV] == str(tmp_path / "data" / "smartcity.log")
    assert api.env[CONFIG_ENV] == str(tmp_path / "appliance.yaml")
    doc["log"] = {"file": "/var/log/sc.log", "max_mb": 1, "keep": 2}
    cfg = parse_appliance_config(doc, tmp_path / "appliance.yaml")
    assert cfg.log.file == Path("/var/log/sc.log") and cfg.log.keep == 2
    for bad, field in (({"keep": 0}, "log.keep"), ({"max_mb": -1}, "log.max_mb")):
        with pytest.raises(ValueError, match=field):
            parse_appliance_config({**doc, "log": bad}, tmp_path / "appliance.yaml")


def test_a_tail_that_starts_mid_file_drops_the_cut_line(tmp_path: Path) -> None:
    from smartcity.api.logs import LogQuery, read_tail

    path = tmp_path / "smartcity.log"
    log = LogStream(path)
    for i in range(100):
        log.emit("api", "info", f"record {i:03d}")
    log.close()
    tail = read_tail(path, LogQuery(limit=1000), budget=1000)  # about 11 lines' worth
    numbers = [int(r["msg"].split()[1]) for r in tail.records]
    assert numbers == list(range(100 - len(numbers), 100)) and 5 < len(numbers) < 12
    assert tail.skipped == 0 and tail.complete is False and tail.scanned_bytes == 1000


def test_a_long_unfinished_last_line_and_a_rotated_file_cut_mid_line(tmp_path: Path) -> None:
    from smartcity.api.logs import LogQuery, read_tail

    path = tmp_path / "smartcity.log"
    log = LogStream(path.with_name("smartcity.log.1"))
    for i in range(3):
        log.emit("api", "info", f"old {i}")
    log.close()
    with path.with_name("smartcity.log.1").open("ab") as f:
        f.write(b'{"ts": "x", "serv')  # a rotated file that was cut
    log = LogStream(path)
    log.emit("api", "info", "new 0")
    log.close()
    with path.open("ab") as f:
        f.write(b"z" * 200_000)  # being written: bigger than a block and than a record
    tail = read_tail(path, LogQuery(limit=10))
    assert [r["msg"] for r in tail.records] == ["old 0", "old 1", "old 2", "new 0"]
    assert tail.partial is True and tail.skipped == 1 and tail.complete is True


# ---------------------------------------------------------------------------------- models
MODELS = "/api/v1/system/models"
ROOT = Path(__file__).resolve().parents[2]


def _model(root: Path, name: str, payload: bytes | None, *, sha: str | None = None,
           fmt: str = "boxes_scores") -> None:  # fmt: skip
    d = root / name
    d.mkdir(parents=True)
    card = (ROOT / "models" / "person-ssdlite" / "model.yaml").read_text()
    card = card.replace("name: person-ssdlite", f"name: {name}")
    card = card.replace("file: person-ssdlite-300.onnx", "file: model.onnx")
    card = card.replace("format: boxes_scores", f"format: {fmt}")
    digest = sha or hashlib.sha256(payload or b"").hexdigest()
    card = "\n".join(
        f"sha256: {digest}" if line.startswith("sha256:") else line for line in card.splitlines()
    )
    (d / "model.yaml").write_text(card)
    if payload is not None:
        (d / "model.onnx").write_bytes(payload)


def test_models_lists_cards_sizes_and_hash_checks(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    _model(root, "good", b"onnx bytes")
    _model(root, "changed", b"onnx bytes", sha="ab" * 32)
    _model(root, "nofile", None)
    _model(root, "broken", b"x", fmt="yolox")
    (root / "not-a-model").mkdir()
    monkeypatch.setenv("SMARTCITY_MODELS", str(root))
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    r = api.client.get(MODELS, headers=api.auth("maintenance"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["models_root"] == str(root) and out["engine_model"] is None
    m = {x["name"]: x for x in out["models"]}
    assert sorted(m) == ["broken", "changed", "good", "nofile"]
    good = m["good"]
    assert good["sha256_ok"] is True and good["problem"] is None and good["file_size"] == 10
    assert (good["input_width"], good["input_height"], good["format"]) == (300, 300, "boxes_scores")
    assert good["classes"] == ["person"] and good["class_map"] == {"person": "person"}
    assert m["changed"]["sha256_ok"] is False and "sha256" in m["changed"]["problem"]
    assert m["nofile"]["sha256_ok"] is None and "model.onnx" in m["nofile"]["problem"]
    assert "output.format" in m["broken"]["problem"] and m["broken"]["format"] is None
    # the backends this machine can run: ONNX Runtime's CPU provider at least
    names = {b["name"]: b for b in out["backends"]}
    assert names["onnxruntime"]["available"] is True and out["backend_auto"] in names


def test_models_names_the_engines_model_and_backend(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.engine_config import camera, write_config

    monkeypatch.delenv("SMARTCITY_MODELS", raising=False)
    vtest = ROOT / "tests" / "media" / "vtest-h264.mp4"
    engine = write_config(tmp_path / "engine.yaml", [camera("c1", vtest)], backend="onnxruntime")
    appliance = tmp_path / "appliance.yaml"
    appliance.write_text(f"data_dir: data\nservices:\n  engine: {{config: {engine}}}\n"
                         "  incidents: {enabled: false}\n")  # fmt: skip
    monkeypatch.setenv(CONFIG_ENV, str(appliance))
    out = api.client.get(MODELS, headers=api.auth("admin")).json()
    assert out["problems"] == [] and out["engine_model"] == "person-ssdlite"
    assert out["engine_backend"] == "onnxruntime"
    m = {x["name"]: x for x in out["models"]}
    assert m["person-ssdlite"]["in_use"] is True and m["synthetic-traffic"]["in_use"] is False
    assert all(x["sha256_ok"] for x in m.values())  # the bundled models are intact
    # an engine file that cannot be read is named; the list is still there
    engine.write_text("model: [")
    out = api.client.get(MODELS, headers=api.auth("admin")).json()
    assert len(out["problems"]) == 1 and "engine" in out["problems"][0] and out["models"]


# ---------------------------------------------------------------------------------- restart
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\ntime.sleep(120)\n"
)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def _supervised(tmp_path: Path, run_dir: Path, **scripts: str) -> Iterator[Supervisor]:
    services = []
    for name, body in scripts.items():
        f = tmp_path / f"{name}.py"
        f.write_text(body)
        services.append(Service(name, (sys.executable, str(f))))
    sup = Supervisor(services, run_dir=run_dir, data_dir=tmp_path / "sup-data",
                     restart=RestartPolicy(initial_s=30, max_s=60), stop_grace_s=0.5,
                     log=LogStream(tmp_path / "sup.log"))  # fmt: skip
    stop = threading.Event()
    t = threading.Thread(target=sup.run, args=(stop,), name="supervisor")
    t.start()
    try:
        assert sup.started.wait(30), "the supervisor did not start"
        assert wait_for(lambda: all(s.pid for s in sup.status().values()), 30)
        yield sup
    finally:
        stop.set()
        t.join(30)
        sup.log.close()
        assert not t.is_alive(), "the supervisor did not stop"


@contextmanager
def _api(tmp_path: Path, **settings: Any) -> Iterator[Api]:
    tmp_path.mkdir()
    gen = make_api(tmp_path, **settings)
    try:
        yield next(gen)
    finally:
        gen.close()


def _restarted(sup: Supervisor, name: str, old: int) -> bool:
    st = sup.status()[name]
    return st.pid is not None and st.pid != old and not _alive(old)


def test_restart_from_the_api_restarts_that_child_only(tmp_path: Path, run_dir: Path) -> None:
    with (
        _supervised(tmp_path, run_dir, engine=SLEEPER, incidents=SLEEPER) as sup,
        _api(tmp_path / "api", run_dir=str(run_dir)) as api,
    ):
        before = {n: s.pid for n, s in sup.status().items()}
        r = api.client.post("/api/v1/system/services/engine/restart", headers=api.auth("admin"))
        assert r.status_code == 202, r.text
        assert r.json() == {"status": "restarting", "service": "engine", "pid": before["engine"]}
        assert before["engine"] is not None
        assert wait_for(lambda: _restarted(sup, "engine", before["engine"]), 30)
        st = sup.status()
        # started again at once (the backoff is 30 s), not counted as an exit
        assert st["engine"].restarts == 0 and st["engine"].requested_restarts == 1
        assert st["incidents"].pid == before["incidents"] and st["incidents"].restarts == 0
        row = api.store.audit.list(action="system.restart", limit=5)[-1]
        assert row.target == "engine" and row.outcome == "ok"
        # refused: an unknown service (named by the supervisor), a bad name, a non-admin
        r = api.client.post("/api/v1/system/services/nope/restart", headers=api.auth("admin"))
        assert r.status_code == 404 and "supervised: engine, incidents" in r.json()["detail"]
        r = api.client.post("/api/v1/system/services/a.b/restart", headers=api.auth("admin"))
        assert r.status_code == 400 and "service" in r.json()["detail"]
        r = api.client.post("/api/v1/system/services/engine/restart",
                            headers=api.auth("maintenance"))  # fmt: skip
        assert r.status_code == 403
        assert api.store.audit.list(action="system.restart", limit=5)[-1].outcome == "failed"


def test_a_child_ignoring_sigterm_is_killed_and_restarted(tmp_path: Path, run_dir: Path) -> None:
    from smartcity.api.control import control_request

    with _supervised(tmp_path, run_dir, engine=STUBBORN) as sup:
        old = sup.status()["engine"].pid
        assert old is not None
        answer = control_request(run_dir, {"op": "restart", "service": "engine"})
        assert answer == {"ok": True, "service": "engine", "pid": old}
        assert wait_for(lambda: _restarted(sup, "engine", old), 30)
        assert sup.status()["engine"].last_exit_code == -signal.SIGKILL
    msgs = [r["msg"] for r in _records(tmp_path / "sup.log")]
    assert any("did not stop within 0.5 s: killed" in m for m in msgs)
    assert any("on request; starting it again" in m for m in msgs)


def test_the_control_socket_refuses_bad_requests(tmp_path: Path, run_dir: Path) -> None:
    import socket

    from smartcity.api.control import control_request

    def raw(data: bytes) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(run_dir / "control"))
            s.sendall(data)
            out: dict[str, Any] = json.loads(s.makefile("rb").readline())
            return out

    with _supervised(tmp_path, run_dir, engine=SLEEPER) as sup:
        assert (run_dir / "control").stat().st_mode & 0o777 == 0o600
        assert "not JSON" in raw(b"restart engine\n")["error"]
        assert "longer than 4096" in raw(b"x" * 5000)["error"]
        assert "op: unknown" in control_request(run_dir, {"op": "shutdown"})["error"]
        assert "service:" in control_request(run_dir, {"op": "restart", "service": 7})["error"]
        assert raw(b"[1]\n") == {"ok": False, "error": "the request must be a JSON object"}
        assert sup.status()["engine"].requested_restarts == 0
    assert not (run_dir / "control").exists()  # removed at the stop


def test_restart_without_a_supervisor_says_why(api: Api, tmp_path: Path) -> None:
    r = api.client.post("/api/v1/system/services/engine/restart", headers=api.auth("admin"))
    assert r.status_code == 409 and "smartcity run" in r.json()["detail"]
    with _api(tmp_path / "other", run_dir=str(tmp_path)) as other:
        r = other.client.post("/api/v1/system/services/engine/restart", headers=other.auth("admin"))
    assert r.status_code == 503 and "no control socket" in r.json()["detail"], r.text


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
