"""Engine configuration files for the engine's integration tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import ROOT


def camera(cid: str, vtest: Path, **extra: object) -> dict:
    return {"id": cid, "url": str(vtest), "analyze_fps": 4, "loop": True, "realtime": True, **extra}


def write_config(path: Path, cameras: list[dict], **extra: object) -> Path:
    cfg = {
        "model": "person-ssdlite",
        "models_root": str(ROOT / "models"),
        "max_batch": 4,
        "health_interval_s": 0.5,
        "cameras": cameras,
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path
