"""`smartcity doctor`: what this machine gives the appliance, and what the appliance will use.

Each check prints `ok`, `warn` or `fail` with what it found; the last lines say which decoder,
inference backend, database and data directory the appliance will use, and why. The exit status
is 1 when a check failed (the appliance cannot run as configured), else 0.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 5 * 1024**3  # evidence needs room; retention keeps a reserve (docs/storage.md)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def _run(cmd: list[str], timeout: float = 5.0) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, str(e)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_core() -> Check:
    try:
        from smartcity import _core

        info = _core.build_info()
    except ImportError as e:
        return Check("core", FAIL, f"the compiled core does not import: {e} (run make build)")
    return Check(
        "core",
        OK,
        f"smartcity core {info.get('version')} ({info.get('build_type')}, {info.get('compiler')}),"
        f" FFmpeg {info.get('ffmpeg')}, CUDA build: {info.get('cuda')}"
        + (f" {info.get('cuda_version')}" if info.get("cuda") == "yes" else ""),
    )


def check_hw_decoders() -> Check:
    """Hardware decoders of the system FFmpeg (the libraries the core links; NVDEC is
    h264_cuvid / hevc_cuvid), listed by its `ffmpeg` program."""
    if shutil.which("ffmpeg") is None:
        return Check("hardware decoders", WARN, "no ffmpeg program to list the decoders with")
    rc, text = _run(["ffmpeg", "-hide_banner", "-decoders"])
    if rc != 0:
        return Check("hardware decoders", WARN, f"ffmpeg -decoders failed: {text[:200]}")
    names = {ln.split()[1] for ln in text.splitlines() if len(ln.split()) > 1}
    hw = sorted(n for n in names if n.endswith(("_cuvid", "_qsv", "_vaapi", "_v4l2m2m")))
    wanted = [n for n in hw if n.startswith(("h264", "hevc"))]
    if not wanted:
        return Check("hardware decoders", WARN, "no H.264/HEVC hardware decoder in FFmpeg")
    return Check("hardware decoders", OK, ", ".join(wanted))


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs through NVML (pynvml) when importable, else nvidia-smi, else none."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            dec = pynvml.nvmlDeviceGetDecoderUtilization(h)[0]
            name = pynvml.nvmlDeviceGetName(h)
            out.append({
                "index": i, "name": name if isinstance(name, str) else name.decode(),
                "memory_total_mb": mem.total // 2**20, "memory_used_mb": mem.used // 2**20,
                "utilization_pct": util.gpu, "decoder_pct": dec,
                "temperature_c": pynvml.nvmlDeviceGetTemperature(h, 0),
            })  # fmt: skip
        return out
    except Exception:  # noqa: BLE001, S110 - no NVML: try nvidia-smi
        pass
    if shutil.which("nvidia-smi") is None:
        return []
    q = "index,name,memory.total,memory.used,utilization.gpu,utilization.decoder,temperature.gpu"
    rc, text = _run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits"])
    if rc != 0:
        return []
    out = []
    for line in text.splitlines():
        f = [v.strip() for v in line.split(",")]
        if len(f) != 7:
            continue
        try:
            out.append({"index": int(f[0]), "name": f[1], "memory_total_mb": int(f[2]),
                        "memory_used_mb": int(f[3]), "utilization_pct": int(f[4]),
                        "decoder_pct": int(f[5]), "temperature_c": int(f[6])})  # fmt: skip
        except ValueError:
            continue
    return out


def check_cpu(cpuinfo: str | None = None) -> Check:
    """The CPU and its int8 instructions (``cpuinfo``: the text of /proc/cpuinfo, read when
    None). ONNX Runtime's int8 kernels use VNNI where the CPU has it; with AVX2 alone their
    uint8 x int8 pair sums saturate, and an int8 copy of a model agrees less with the original
    (docs/detection.md: quantize on the CPU the appliance runs on)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError as e:
            return Check("CPU", WARN, f"cannot read /proc/cpuinfo: {e}")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() not in fields:
            fields[k.strip()] = v.strip()
    flags = set(fields.get("flags", "").split())
    name = fields.get("model name", "unknown model")
    cpus = os.cpu_count() or 0
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        kind = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI"
        return Check("CPU", OK, f"{name}, {cpus} CPUs; int8 kernels: {kind}")
    if "avx2" in flags:
        return Check("CPU", WARN, f"{name}, {cpus} CPUs; int8 kernels: AVX2 only (no VNNI): an "
                     "int8 model copy agrees less with its original here; make it here "
                     "(smartcity models quantize) and check it")  # fmt: skip
    seen = " ".join(sorted(flags)[:8]) or "none"
    return Check("CPU", WARN, f"{name}, {cpus} CPUs; no AVX2: ONNX Runtime runs its slower "
                 f"kernels (flags read: {seen})")  # fmt: skip


def check_gpus() -> Check:
    found = gpus()
    if not found:
        return Check("GPUs", WARN, "no NVIDIA GPU visible: the CPU path will be used")
    desc = "; ".join(f"{g['index']}: {g['name']}, {g['memory_total_mb']} MiB" for g in found)
    return Check("GPUs", OK, desc)


def check_backends() -> list[Check]:
    from smartcity.engine.detectors.backends import probe_backends

    out = []
    for p in probe_backends():
        out.append(Check(f"backend {p.name}", OK if p.available else WARN, p.reason))
    return out


def check_data_dir(data_dir: Path) -> Check:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".doctor-{os.getpid()}"
        probe.write_bytes(b"x")
        os.fsync(os.open(probe, os.O_RDONLY))
        probe.unlink()
    except OSError as e:
        return Check("data directory", FAIL, f"{data_dir}: not writable: {e.strerror}")
    du = shutil.disk_usage(data_dir)
    gib = du.free / 1024**3
    status = OK if du.free >= MIN_FREE_BYTES else WARN
    return Check("data directory", status, f"{data_dir}: writable, {gib:.1f} GiB free of "
                 f"{du.total / 1024**3:.1f} GiB")  # fmt: skip


def check_clock() -> Check:
    """NTP synchronisation: evidence timestamps must be right."""
    if Path("/run/systemd/timesync/synchronized").exists():
        return Check("clock", OK, "synchronised (systemd-timesyncd)")
    rc, text = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if rc == 0 and text.strip() == "yes":
        return Check("clock", OK, "synchronised (timedatectl)")
    rc, text = _run(["chronyc", "tracking"])
    if rc == 0 and "Leap status     : Normal" in text:
        return Check("clock", OK, "synchronised (chrony)")
    return Check("clock", WARN, "no time synchronisation found (timesyncd, chrony): evidence "
                 "timestamps depend on this machine's clock")  # fmt: skip


def check_port(host: str, port: int) -> Check:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as e:
        return Check(f"port {host}:{port}", WARN, f"in use or not allowed ({e.strerror}): the "
                     "API is running already, or set api.port")  # fmt: skip
    finally:
        s.close()
    return Check(f"port {host}:{port}", OK, "free for the API")


def check_database(url: str | None, data_dir: Path) -> Check:
    from smartcity.store import Store, StoreError
    from smartcity.store.engine import redact

    if url is None and not os.environ.get("SMARTCITY_DB_URL"):
        if not (data_dir / "smartcity.db").exists():
            return Check("database", OK, f"{data_dir / 'smartcity.db'}: created at first start")
    try:
        with Store.open(url, data_dir=data_dir, migrate_to_head=False) as st:
            problems = st.integrity_check()
            where = redact(st.engine.url)
    except StoreError as e:
        return Check("database", WARN, f"{e}")
    except Exception as e:  # noqa: BLE001 - reported
        return Check("database", FAIL, f"{type(e).__name__}: {e}")
    if problems:
        return Check("database", FAIL, f"{where}: " + "; ".join(problems))
    return Check("database", OK, f"{where}: schema at head, integrity ok")


def decisions(checks: list[Check], data_dir: Path, url: str | None) -> list[str]:
    from smartcity.engine.detectors.backends import choose_backend

    out = []
    try:
        name, why = choose_backend()
        out.append(f"inference: {name} ({why.split('; ')[0].split(', ', 1)[-1]})")
    except Exception as e:  # noqa: BLE001 - reported
        out.append(f"inference: none available ({e})")
    from smartcity import _core

    gpu_decode = _core.gpu_decode()
    if gpu_decode["available"]:
        out.append(
            "decode: NVDEC on the GPU for streams with hwaccel auto or cuda (the engine's"
            " default is auto), falling back to the CPU per stream (docs/engine.md)"
        )
    else:
        out.append(f"decode: FFmpeg on the CPU ({gpu_decode['reason']})")
    from smartcity.store.engine import redact

    given = url or os.environ.get("SMARTCITY_DB_URL")
    db = given or f"sqlite:///{data_dir / 'smartcity.db'}"
    out.append(f"database: {redact(db)} ({'given' if given else 'the embedded default, SQLite'})")
    out.append(f"data: {data_dir} (evidence under {data_dir / 'evidence'})")
    return out


def run(data_dir: Path, db_url: str | None, host: str, port: int) -> dict[str, Any]:
    checks = [check_core(), check_cpu(), check_hw_decoders(), check_gpus(), *check_backends(),
              check_data_dir(data_dir), check_database(db_url, data_dir), check_clock(),
              check_port(host, port)]  # fmt: skip
    return {"checks": [asdict(c) for c in checks], "decisions": decisions(checks, data_dir, db_url),
            "ok": all(c.status != FAIL for c in checks)}  # fmt: skip


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check this machine and say what the appliance will use")
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--db-url", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=lambda a: main(a.data_dir, a.db_url, a.host, a.port, a.json))


def main(data_dir: str, db_url: str | None, host: str, port: int, as_json: bool) -> int:
    report = run(Path(data_dir), db_url, host, port)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for c in report["checks"]:
            print(f"[{c['status']:4}] {c['name']}: {c['detail']}")
        print()
        for d in report["decisions"]:
            print(f"  will use {d}")
    return 0 if report["ok"] else 1
