"""`smartcity doctor`: every check reports, a bad data directory fails, a busy port warns."""

from __future__ import annotations

import json
import socket

from smartcity import doctor
from smartcity.cli import main


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_report_on_this_machine(tmp_path) -> None:
    rep = doctor.run(tmp_path / "data", None, "127.0.0.1", 0)
    checks = _by_name(rep)
    assert checks["core"]["status"] == "ok"
    assert checks["backend onnxruntime"]["status"] == "ok"
    assert checks["data directory"]["status"] in ("ok", "warn")
    assert (
        checks["database"]["status"] == "ok"
        and "created at first start" in (checks["database"]["detail"])
    )
    assert rep["ok"] is True
    assert any(d.startswith("inference: onnxruntime") for d in rep["decisions"])
    assert any("embedded default" in d for d in rep["decisions"])
    from smartcity import _core

    if not _core.gpu_decode()["available"]:  # this machine: no GPU, so the reason is given
        assert any(
            d.startswith("decode: FFmpeg on the CPU (") and "CUDA" in d for d in rep["decisions"]
        )


def test_unwritable_data_dir_fails(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc = main(["doctor", "--data-dir", str(blocker / "data"), "--port", "0", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and rep["ok"] is False
    assert _by_name(rep)["data directory"]["status"] == "fail"


def test_busy_port_warns(tmp_path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        c = doctor.check_port("127.0.0.1", port)
        assert c.status == "warn" and "in use" in c.detail
    finally:
        s.close()


def test_existing_database_is_checked(tmp_path) -> None:
    from smartcity.store import Store

    Store.open(data_dir=tmp_path).close()
    c = doctor.check_database(None, tmp_path)
    assert c.status == "ok" and "integrity ok" in c.detail
