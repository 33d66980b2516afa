"""The `smartcity` command line as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartcity", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_info_prints_build_info_as_json():
    r = _run("info")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert {"version", "ffmpeg", "cuda", "compiler", "build_type"} <= info.keys()


def test_models_verify_accepts_the_embedded_model():
    r = _run("models", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "person-ssdlite" in r.stdout


def test_models_verify_refuses_a_broken_card(tmp_path):
    card = tmp_path / "broken"
    card.mkdir()
    (card / "model.yaml").write_text("name: broken\n")
    r = _run("models", "--root", str(tmp_path), "verify")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "broken" in r.stdout + r.stderr


def test_demo_prints_the_live_table():
    r = _run("demo", "--streams", "2", "--seconds", "2")
    assert r.returncode == 0, r.stderr
    assert "cam01" in r.stdout and "cam02" in r.stdout and "running" in r.stdout
    assert "total: 2 streams" in r.stdout


def test_demo_with_a_missing_clip_fails_clearly(tmp_path):
    r = _run("demo", "--clip", str(tmp_path / "nope.mp4"), "--seconds", "1")
    assert r.returncode == 2
    assert "clip not found" in r.stderr
