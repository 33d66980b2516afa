"""Shared fixtures: the bundled real clip, a pipeline that is always closed, a bus run
directory, a polling helper."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import smartcity as sc

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "media"
VTEST = MEDIA / "vtest-h264.mp4"


@pytest.fixture(scope="session")
def vtest() -> Path:
    """The real CCTV-style clip: H.264 768x576, 10 fps, 795 frames, GOP 30, no B-frames."""
    assert VTEST.exists(), f"missing {VTEST}"
    return VTEST


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A fresh bus run directory (0700, from mkdtemp) with a short path: ipc:// paths must stay
    under 107 bytes. Removed afterwards; it must hold only files by then."""
    d = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.fixture
def make_pipeline() -> Iterator[Callable[..., sc.Pipeline]]:
    """Factory for pipelines that are closed at the end of the test, whatever happens."""
    made: list[sc.Pipeline] = []

    def make(**kwargs: object) -> sc.Pipeline:
        p = sc.Pipeline(**kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll until predicate() is true; False if the time-out passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def drain(pipeline: sc.Pipeline, camera_id: str, max_batch: int = 8) -> list[dict]:
    """Consume batches until the stream ends; returns per-slot metadata."""
    slots: list[dict] = []
    while True:
        batch = pipeline.next_batch(max_batch, 100)
        if batch is None:
            if pipeline.stream_stats(camera_id)["state"] in ("stopped", "failed"):
                batch = pipeline.next_batch(max_batch, 0)
                if batch is None:
                    return slots
            else:
                continue
        with batch:
            for i, cam in enumerate(batch.camera_ids):
                slots.append(
                    {
                        "camera_id": cam,
                        "frame_number": int(batch.frame_numbers[i]),
                        "pts": float(batch.pts[i]),
                    }
                )


class BackgroundConsumer:
    """Takes batches on a thread of its own, as the inference loop will; records what came."""

    def __init__(self, pipeline: sc.Pipeline, max_batch: int = 8) -> None:
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.seen: set[str] = set()
        self.slots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer")

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.pipeline.next_batch(self.max_batch, 50)
            if batch is not None:
                self.seen.update(batch.camera_ids)
                self.slots += batch.size
                batch.release()

    def __enter__(self) -> BackgroundConsumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# The API on a fresh store with one user per role (tests/support/api.py).
from tests.support.api import api  # noqa: E402, F401
