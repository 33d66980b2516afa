"""GET /api/v1/system/models: the model folders (their cards read with the engine's own loader,
smartcity.engine.models.load_card, without opening the ONNX file), whether each file has its
card's sha256, which model and backend the engine is configured with, and which inference
backends this machine can run (smartcity.engine.detectors.probe_backends).

Hashing a model file and probing the backends take a while (hundreds of MB; importing ONNX
Runtime and TensorRT), so both are cached: a file's hash by (path, size, mtime), the probe for
PROBE_TTL_S.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

PROBE_TTL_S = 300.0
_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], str] = {}
_probe: tuple[float, list[dict[str, Any]], str | None, str] | None = None


def _file_sha256(path: Path) -> str:
    from smartcity.engine.models import sha256_of

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _hashes:
            return _hashes[key]
    digest = sha256_of(path)
    with _lock:
        if len(_hashes) > 256:
            _hashes.clear()
        _hashes[key] = digest
    return digest


def backends() -> tuple[list[dict[str, Any]], str | None, str]:
    """([{name, available, reason}], the backend `auto` takes here or None, why)."""
    global _probe
    now = time.monotonic()
    with _lock:
        if _probe is not None and now - _probe[0] < PROBE_TTL_S:
            return _probe[1], _probe[2], _probe[3]
    try:
        from smartcity.engine.detectors import choose_backend, probe_backends

        probes = [
            {"name": p.name, "available": p.available, "reason": p.reason} for p in probe_backends()
        ]
        try:
            chosen, why = choose_backend()
        except RuntimeError as e:  # BackendUnavailable: none can run
            chosen, why = None, str(e)
    except Exception as e:  # noqa: BLE001 - the api runs without the core or ONNX Runtime
        probes, chosen, why = [], None, f"cannot probe the backends: {type(e).__name__}: {e}"
    with _lock:
        _probe = (now, probes, chosen, why)
    return probes, chosen, why


def engine_settings(config: Path | None, problems: list[str]) -> Any:
    """The engine's settings (engine.yaml named by the appliance file), or None."""
    if config is None:
        return None
    try:
        from smartcity.supervisor import load_appliance_config

        cfg = load_appliance_config(config)
        eng = cfg.services.get("engine")
        if eng is None or not eng.enabled or eng.config is None:
            return None
        from smartcity.engine.process import read_engine_file

        return read_engine_file(eng.config)
    except Exception as e:  # noqa: BLE001 - reported in the answer, the list still shown
        problems.append(f"the engine's configuration cannot be read: {type(e).__name__}: {e}")
        return None


def model_entry(directory: Path, in_use: str | None) -> dict[str, Any]:
    """One model folder: its card's fields, its file's size and hash check, or its problem."""
    from smartcity.engine.models import CardError, load_card

    entry: dict[str, Any] = {"name": directory.name, "in_use": directory.name == in_use}
    try:
        card = load_card(directory, check_file=False)
    except CardError as e:
        entry["problem"] = str(e)
        return entry
    onnx = card.onnx_path
    entry.update(
        description=card.description,
        file=card.file,
        input_width=card.input_width,
        input_height=card.input_height,
        dtype=card.dtype,
        max_batch=card.max_batch,
        format=card.output_format,
        classes=list(card.class_names),
        class_map=dict(card.class_mapping),
        sha256=card.sha256,
    )
    try:
        entry["file_size"] = onnx.stat().st_size
        entry["sha256_ok"] = _file_sha256(onnx) == card.sha256
        if not entry["sha256_ok"]:
            entry["problem"] = f"{card.file} does not have the card's sha256: changed or damaged"
    except OSError as e:
        entry["problem"] = f"{card.file}: {e.strerror or e}"
    return entry


def models_report(config: Path | None) -> dict[str, Any]:
    from smartcity.engine.models import CARD_FILE, default_models_root

    problems: list[str] = []
    eng = engine_settings(config, problems)
    root = Path(eng.models_root) if eng is not None else default_models_root()
    in_use = eng.model if eng is not None else None
    models = []
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file()):
            models.append(model_entry(d, in_use))
    else:
        problems.append(f"models_root {root}: not a folder")
    probes, chosen, why = backends()
    backend = eng.backend if eng is not None else None
    return {
        "models_root": str(root),
        "engine_model": in_use,
        "engine_backend": backend,
        "backend_auto": chosen,
        "backend_reason": why,
        "backends": probes,
        "models": models,
        "problems": problems,
    }
