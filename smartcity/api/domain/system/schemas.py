"""System: the log view, the models in use, the machine's resources."""

from __future__ import annotations

import msgspec


class LogRecord(msgspec.Struct):
    ts: str
    service: str
    level: str
    camera: str | None
    msg: str


class LogTail(msgspec.Struct):
    file: str
    records: list[LogRecord]  # oldest first
    skipped: int  # lines that are not records (not JSON, fields missing, too long)
    partial: bool  # the last line was still being written (left out)
    scanned_bytes: int
    complete: bool  # false: older lines were not looked at (limit reached or 8 MiB read)


class ModelInfo(msgspec.Struct):
    name: str  # the folder
    in_use: bool  # the engine's configuration names it
    problem: str | None = None  # a card that is refused, a missing or changed file
    description: str | None = None
    file: str | None = None
    file_size: int | None = None
    sha256: str | None = None  # the card's
    sha256_ok: bool | None = None  # the file has it (None: not checked, e.g. no file)
    input_width: int | None = None
    input_height: int | None = None
    dtype: str | None = None
    max_batch: int | None = None
    format: str | None = None
    classes: list[str] | None = None
    class_map: dict[str, str] | None = None


class BackendInfo(msgspec.Struct):
    name: str
    available: bool
    reason: str


class ModelsReport(msgspec.Struct):
    models_root: str
    engine_model: str | None  # from the engine's file (None: not known to the api)
    engine_backend: str | None  # auto | tensorrt | onnxruntime-cuda | onnxruntime
    backend_auto: str | None  # what `auto` takes on this machine
    backend_reason: str
    backends: list[BackendInfo]
    models: list[ModelInfo]
    problems: list[str]


class CpuFigures(msgspec.Struct):
    percent: float  # whole machine, since the previous request (the first: over 0.2 s)
    cores: int  # logical
    physical_cores: int | None
    load: list[float] | None  # load average over 1, 5, 15 minutes


class MemoryFigures(msgspec.Struct):
    total_bytes: int
    available_bytes: int
    used_bytes: int  # total - available
    percent: float
    swap_total_bytes: int
    swap_used_bytes: int


class DiskFigures(msgspec.Struct):
    path: str  # the data directory
    total_bytes: int | None = None
    used_bytes: int | None = None
    free_bytes: int | None = None
    percent: float | None = None
    error: str | None = None


class GpuDevice(msgspec.Struct):
    index: int
    name: str
    uuid: str | None
    utilization_percent: int | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    temperature_c: int | None
    decoder_percent: int | None  # NVDEC
    problems: list[str]  # figures NVML would not give, with its reason


class GpuFigures(msgspec.Struct):
    available: bool
    reason: str  # "no GPU: ..." when there is none to show
    driver: str | None
    devices: list[GpuDevice]


class Resources(msgspec.Struct):
    cpu: CpuFigures
    memory: MemoryFigures
    disk: DiskFigures
    uptime_s: float  # the machine's
    gpu: GpuFigures
