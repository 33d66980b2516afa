"""GET /api/v1/system/resources: the machine's CPU, memory, disk and uptime, and the GPUs through
NVML where the `pynvml` module (nvidia-ml-py) is importable. No GPU here: NVML is a stub module
put in sys.modules, one that behaves as pynvml does (NVMLError, figures a card does not
support). And /system/health passes each camera's decoder (cpu, nvdec) and hwaccel_note."""

from __future__ import annotations

import shutil
import sys
import time
import types
from collections import namedtuple
from typing import Any

import psutil
import pytest

from smartcity.api import resources
from tests.support.api import Api

URL = "/api/v1/system/resources"
GiB = 1024**3


class NVMLError(Exception):
    """pynvml's error: str() is NVML's own text ("Not Supported", "Driver Not Loaded")."""


def fake_nvml(devices: list[dict[str, Any]], init_error: str | None = None) -> types.ModuleType:
    """A pynvml stand-in: each device a dict of figures; a figure that is an NVMLError is raised
    by its call, as NVML does for a figure the card does not support."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError  # type: ignore[attr-defined]
    m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    m.calls = {"init": 0, "shutdown": 0}  # type: ignore[attr-defined]
    util = namedtuple("util", "gpu memory")
    mem = namedtuple("mem", "total free used")

    def init() -> None:
        if init_error:
            raise NVMLError(init_error)
        m.calls["init"] += 1  # type: ignore[attr-defined]

    def shutdown() -> None:
        m.calls["shutdown"] += 1  # type: ignore[attr-defined]

    def figure(key: str, make: Any = lambda v: v) -> Any:
        def get(h: dict[str, Any], *args: Any) -> Any:
            v = h[key]
            if isinstance(v, NVMLError):
                raise v
            return make(v)

        return get

    def handle(i: int) -> dict[str, Any]:
        return devices[i]

    def temperature(h: dict[str, Any], sensor: int) -> int:
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return figure("temp")(h)  # type: ignore[no-any-return]

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    m.nvmlSystemGetDriverVersion = lambda: "560.35.03"  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = handle  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = figure("name")  # type: ignore[attr-defined]
    m.nvmlDeviceGetUUID = figure("uuid")  # type: ignore[attr-defined]
    m.nvmlDeviceGetUtilizationRates = figure("util", lambda v: util(v, 0))  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = figure("mem", lambda v: mem(v[1], v[1] - v[0], v[0]))  # type: ignore[attr-defined]
    m.nvmlDeviceGetTemperature = temperature  # type: ignore[attr-defined]
    m.nvmlDeviceGetDecoderUtilization = figure("dec", lambda v: [v, 167000])  # type: ignore[attr-defined]
    return m


def test_the_machine_figures(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` fails: not installed
    r = api.client.get(URL, headers=api.auth("maintenance"))
    assert r.status_code == 200, r.text
    body = r.json()
    cpu, memory, disk = body["cpu"], body["memory"], body["disk"]
    assert 0.0 <= cpu["percent"] <= 100.0
    assert cpu["cores"] == psutil.cpu_count() and len(cpu["load"]) == 3
    assert memory["total_bytes"] == psutil.virtual_memory().total
    assert 0 < memory["used_bytes"] < memory["total_bytes"]
    assert disk["path"] == str(api.data_dir)
    assert disk["total_bytes"] == shutil.disk_usage(api.data_dir).total
    assert disk["free_bytes"] > 0 and disk["error"] is None
    assert abs(body["uptime_s"] - (time.time() - psutil.boot_time())) < 60
    assert body["gpu"] == {
        "available": False,
        "reason": "no GPU: pynvml (the nvidia-ml-py package) is not installed",
        "driver": None,
        "devices": [],
    }
    # the admin page's figures are maintenance's and the admin's, not the control room's
    for role in ("viewer", "operator"):
        assert api.client.get(URL, headers=api.auth(role)).status_code == 403


def test_gpus_through_nvml(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml([
        {"name": "NVIDIA H200", "uuid": "GPU-1234", "util": 37, "mem": (20 * GiB, 141 * GiB),
         "temp": 41, "dec": 62},
        # a MIG-mode card: no utilization of its own, no temperature; the rest is still read
        {"name": b"NVIDIA A100", "uuid": "GPU-5678", "util": NVMLError("Not Supported"),
         "mem": (1 * GiB, 80 * GiB), "temp": NVMLError("Not Supported"), "dec": 0},
    ])  # fmt: skip
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    r = api.client.get(URL, headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    gpu = r.json()["gpu"]
    assert gpu["available"] and gpu["driver"] == "560.35.03", gpu
    h200, a100 = gpu["devices"]
    assert h200 == {
        "index": 0, "name": "NVIDIA H200", "uuid": "GPU-1234", "utilization_percent": 37,
        "memory_total_bytes": 141 * GiB, "memory_used_bytes": 20 * GiB, "temperature_c": 41,
        "decoder_percent": 62, "problems": [],
    }  # fmt: skip
    assert a100["name"] == "NVIDIA A100"  # bytes from an older pynvml
    assert a100["utilization_percent"] is None and a100["temperature_c"] is None
    assert a100["memory_used_bytes"] == 1 * GiB and a100["decoder_percent"] == 0
    assert a100["problems"] == ["utilization: Not Supported", "temperature: Not Supported"]
    assert nvml.calls == {"init": 1, "shutdown": 1}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("nvml", "reason"),
    [
        (fake_nvml([], init_error="Driver Not Loaded"),
         "no GPU: NVML does not start (Driver Not Loaded): no driver?"),
        (fake_nvml([]), "no GPU: NVML sees no device"),
    ],
)  # fmt: skip
def test_no_gpu_says_why(
    api: Api, monkeypatch: pytest.MonkeyPatch, nvml: types.ModuleType, reason: str
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    r = api.client.get(URL, headers=api.auth("maintenance"))
    assert r.status_code == 200, r.text
    gpu = r.json()["gpu"]
    assert gpu["available"] is False and gpu["devices"] == [] and gpu["reason"] == reason
    calls = nvml.calls  # type: ignore[attr-defined]
    assert calls["init"] == calls["shutdown"]  # never left initialised


def test_cpu_use_is_measured_between_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    times = namedtuple("times", "user system idle iowait")
    samples = iter([times(10, 0, 90, 0), times(25, 5, 110, 0), times(85, 5, 130, 0)])
    monkeypatch.setattr(psutil, "cpu_times", lambda: next(samples))
    monkeypatch.setattr(resources, "CPU_SAMPLE_S", 0.0)
    monkeypatch.setattr(resources, "CPU_MIN_INTERVAL_S", 0.0)
    cpu = resources.CpuUse()
    assert cpu.percent() == 50.0  # the first: two samples, busy 20 of 40
    assert cpu.percent() == 75.0  # then since the previous one: busy 60 of 80


def test_a_cpu_sample_just_taken_is_answered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    times = namedtuple("times", "user system idle iowait")
    samples = iter([times(10, 0, 90, 0), times(20, 0, 100, 0)])
    monkeypatch.setattr(psutil, "cpu_times", lambda: next(samples))  # a third read would fail
    monkeypatch.setattr(resources, "CPU_SAMPLE_S", 0.0)
    cpu = resources.CpuUse()
    assert cpu.percent() == 50.0
    assert cpu.percent() == 50.0  # within CPU_MIN_INTERVAL_S: not measured over ~0 s


def test_health_passes_each_cameras_decoder(api: Api) -> None:
    note = "cuda: no CUDA device (cudaErrorNoDevice); decoding on the CPU"
    metrics = api.app.state.metrics
    metrics.observe_health("cam1", {"state": "running", "decoder": "nvdec", "hwaccel_note": "",
                                    "_at": time.time()})  # fmt: skip
    metrics.observe_health("cam2", {"state": "running", "decoder": "cpu", "hwaccel_note": note,
                                    "_at": time.time()})  # fmt: skip
    cams = api.client.get("/api/v1/system/health", headers=api.auth("maintenance")).json()
    cams = cams["cameras"]
    assert (cams["cam1"]["decoder"], cams["cam1"]["hwaccel_note"]) == ("nvdec", None)
    assert (cams["cam2"]["decoder"], cams["cam2"]["hwaccel_note"]) == ("cpu", note)


def test_memory_used_leaves_out_the_drivers_reserve_where_nvml_can() -> None:
    """Memory info v2 (newer drivers) as nvidia-smi shows it; v1 where v2 is refused."""
    mem = namedtuple("mem", "total free used")
    reserved = 615 * 1024**2

    def info(h: Any, version: Any = None) -> Any:
        if version is None:
            return mem(80 * GiB, 80 * GiB - reserved, reserved)  # v1 counts the reserve
        if h == "old driver":
            raise NVMLError("Function Not Found")
        return mem(80 * GiB, 80 * GiB, 0)

    nvml = types.SimpleNamespace(nvmlMemory_v2=object(), nvmlDeviceGetMemoryInfo=info)
    assert resources._memory(nvml, "h", NVMLError).used == 0
    assert resources._memory(nvml, "old driver", NVMLError).used == reserved
    del nvml.nvmlMemory_v2  # an older pynvml
    assert resources._memory(nvml, "h", NVMLError).used == reserved
