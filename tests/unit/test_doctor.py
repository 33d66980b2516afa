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


def test_cpu_int8_kernels_are_named() -> None:
    """VNNI (AVX-512 or AVX) is ok; AVX2 alone warns that int8 copies agree less there; no
    AVX2 warns too; this machine's own /proc/cpuinfo gives a report either way."""
    head = "processor\t: 0\nmodel name\t: Test CPU 3000\nflags\t\t: fpu sse2 avx avx2"
    ok = doctor.check_cpu(head + " avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert ok.status == "ok" and "Test CPU 3000" in ok.detail and "AVX-512 VNNI" in ok.detail
    assert "AVX-VNNI" in doctor.check_cpu(head + " avx_vnni\n").detail
    avx2 = doctor.check_cpu(head + "\n")
    assert avx2.status == "warn" and "AVX2 only" in avx2.detail and "quantize" in avx2.detail
    old = doctor.check_cpu("model name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert old.status == "warn" and "no AVX2" in old.detail and "sse2" in old.detail
    here = doctor.check_cpu()
    assert here.name == "CPU" and here.status in ("ok", "warn") and "CPUs" in here.detail
