"""The machine's figures for the admin page (GET /api/v1/system/resources): CPU use and load,
memory, the data directory's disk, the machine's uptime (psutil, a dependency of the package) and
the NVIDIA GPUs through NVML (the `pynvml` module of the nvidia-ml-py package) when it can be
imported: utilization, memory, temperature and decoder (NVDEC) use. Without it, or without a
driver or a GPU, the report says why ("no GPU: ...") and the rest is still answered.

Each NVML figure is read on its own: a figure the card or its mode does not support (a MIG
instance has no utilization of its own) is null with the reason in the device's `problems`,
the other figures are still given.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psutil

#: a CPU sample younger than this is answered again rather than measured over a shorter time
CPU_MIN_INTERVAL_S = 0.5
#: with no earlier sample (or one older than this) CPU use is measured over CPU_SAMPLE_S
CPU_STALE_S = 60.0
CPU_SAMPLE_S = 0.2


class CpuUse:
    """Whole-machine CPU use in percent since the previous call (psutil's cpu_times), kept per
    instance so that other users of psutil.cpu_percent are not disturbed. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float, float] | None = None  # (monotonic, busy, total)
        self._percent: float | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        t = psutil.cpu_times()
        total = sum(t)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return time.monotonic(), total - idle, total

    def percent(self) -> float:
        with self._lock:
            now = time.monotonic()
            last = self._last
            if (
                last is not None
                and self._percent is not None
                and now - last[0] < CPU_MIN_INTERVAL_S
            ):
                return self._percent
            if last is None or now - last[0] > CPU_STALE_S:
                last = self._sample()
                time.sleep(CPU_SAMPLE_S)
            cur = self._sample()
            d_total = cur[2] - last[2]
            pct = 0.0 if d_total <= 0 else 100.0 * (cur[1] - last[1]) / d_total
            self._last = cur
            self._percent = round(min(100.0, max(0.0, pct)), 1)
            return self._percent


def _disk(data_dir: Path) -> dict[str, Any]:
    """The file system of the data directory (its nearest existing parent before it is made)."""
    path = data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        du = shutil.disk_usage(path)
    except OSError as e:
        return {"path": str(data_dir), "error": f"{type(e).__name__}: {e}"}
    return {
        "path": str(data_dir),
        "total_bytes": du.total,
        "used_bytes": du.used,
        "free_bytes": du.free,
        "percent": round(100.0 * du.used / du.total, 1) if du.total else None,
    }


def machine_report(data_dir: Path, cpu: CpuUse) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": {
            "percent": cpu.percent(),
            "cores": psutil.cpu_count() or os.cpu_count() or 1,
            "physical_cores": psutil.cpu_count(logical=False),
            "load": load,  # 1, 5, 15 minutes
        },
        "memory": {
            "total_bytes": vm.total,
            "available_bytes": vm.available,
            "used_bytes": vm.total - vm.available,
            "percent": round(100.0 * (vm.total - vm.available) / vm.total, 1) if vm.total else 0.0,
            "swap_total_bytes": sw.total,
            "swap_used_bytes": sw.used,
        },
        "disk": _disk(data_dir),
        "uptime_s": round(max(0.0, time.time() - psutil.boot_time()), 1),
    }


# ---------------------------------------------------------------- GPUs (NVML)

_NVML_LOCK = threading.Lock()


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _memory(nvml: Any, h: Any, error: type[BaseException]) -> Any:
    """Memory info v2 where the driver has it: its `used` leaves out the driver's reserved
    memory, as nvidia-smi shows it (v1's counts it: 615 MiB on an idle H200); else v1."""
    v2 = getattr(nvml, "nvmlMemory_v2", None)
    if v2 is not None:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(h, v2)
        except error:
            pass
    return nvml.nvmlDeviceGetMemoryInfo(h)


def _device(nvml: Any, i: int, error: type[BaseException]) -> dict[str, Any]:
    problems: list[str] = []

    def read(what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except error as e:
            problems.append(f"{what}: {_text(e) or type(e).__name__}")
            return None

    h = read("handle", nvml.nvmlDeviceGetHandleByIndex, i)
    name = uuid = util = mem = temp = dec = None
    if h is not None:
        name = read("name", nvml.nvmlDeviceGetName, h)
        uuid = read("uuid", nvml.nvmlDeviceGetUUID, h)
        util = read("utilization", nvml.nvmlDeviceGetUtilizationRates, h)
        mem = read("memory", _memory, nvml, h, error)
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        temp = read("temperature", nvml.nvmlDeviceGetTemperature, h, sensor)
        dec = read("decoder", nvml.nvmlDeviceGetDecoderUtilization, h)  # [percent, period µs]
    return {
        "index": i,
        "name": _text(name) if name is not None else f"GPU {i}",
        "uuid": _text(uuid) if uuid is not None else None,
        "utilization_percent": int(util.gpu) if util is not None else None,
        "memory_total_bytes": int(mem.total) if mem is not None else None,
        "memory_used_bytes": int(mem.used) if mem is not None else None,
        "temperature_c": int(temp) if temp is not None else None,
        "decoder_percent": int(dec[0]) if dec is not None else None,
        "problems": problems,
    }


def gpu_report() -> dict[str, Any]:
    """The GPUs NVML sees, or why there are none to show."""
    none: dict[str, Any] = {"available": False, "driver": None, "devices": []}
    try:
        import pynvml
    except ImportError:
        return {**none, "reason": "no GPU: pynvml (the nvidia-ml-py package) is not installed"}
    except Exception as e:  # noqa: BLE001 - a broken install is reported, not raised
        return {**none, "reason": f"no GPU: pynvml cannot be imported ({type(e).__name__}: {e})"}
    error: type[BaseException] = getattr(pynvml, "NVMLError", Exception)
    with _NVML_LOCK:  # nvmlInit / nvmlShutdown are reference-counted: pair them
        try:
            pynvml.nvmlInit()
        except error as e:
            return {**none, "reason": f"no GPU: NVML does not start ({_text(e)}): no driver?"}
        try:
            try:
                driver: str | None = _text(pynvml.nvmlSystemGetDriverVersion())
            except error:
                driver = None
            try:
                count = int(pynvml.nvmlDeviceGetCount())
                devices = [_device(pynvml, i, error) for i in range(count)]
            except error as e:
                return {**none, "driver": driver, "reason": f"no GPU: NVML: {_text(e)}"}
        finally:
            try:
                pynvml.nvmlShutdown()
            except error:
                pass
    if not devices:
        return {**none, "driver": driver, "reason": "no GPU: NVML sees no device"}
    return {
        "available": True,
        "driver": driver,
        "devices": devices,
        "reason": f"{len(devices)} GPU(s) through NVML",
    }
