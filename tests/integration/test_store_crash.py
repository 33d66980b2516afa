"""Crash safety: what the store said was committed survives a SIGKILL of the writer."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_fixtures, used as arguments)

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from smartcity.store import Store
from tests.store_fixtures import db_url, pg_store, pg_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]

# The writer: every loop opens an incident, merges into it, logs a note, writes a snapshot and
# a traffic minute, bumps the ingest counters; it prints an incident's id (flushed) only after
# the store returned, i.e. after the commit. It runs until it is killed.
WRITER = r"""
import sys
from datetime import UTC, datetime, timedelta
from smartcity.store import BucketRecord, Store

url, root = sys.argv[1], sys.argv[2]
s = Store.open(url, evidence_root=root)
if not s.cameras.exists("cam1"):
    s.cameras.add("cam1", "crash test", "rtsp://x")
t0 = datetime(2026, 1, 1, tzinfo=UTC)
i = 0
while True:
    inc = s.incidents.create(type="crash", camera_id="cam1", key=f"k{i}", pts=float(i))
    print(inc.id, flush=True)
    s.incidents.merge(inc.id, pts=i + 0.5, track_ids=[i])
    s.incidents.add_note(inc.id, "note", actor="op")
    s.evidence.write(inc.id, "snapshot", f"{inc.id}.jpg", b"x" * 4096)
    s.traffic.upsert([BucketRecord("cam1", "line", "l1", "1m", t0 + timedelta(minutes=i),
                                   "car", "in", i)])
    s.ingest.add("cam1", received=1)
    i += 1
"""


def test_sigkill_loses_nothing_committed(db_url, tmp_path):
    evidence = tmp_path / "evidence"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, db_url, str(evidence)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    printed: list[str] = []
    try:
        assert proc.stdout is not None
        while len(printed) < 25:
            line = proc.stdout.readline()
            if not line:
                _, err = proc.communicate()
                raise AssertionError(f"writer ended early (rc {proc.returncode}):\n{err[-3000:]}")
            printed.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        printed += [ln.strip() for ln in out.splitlines() if ln.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with Store.open(db_url, evidence_root=evidence) as s:
        assert s.integrity_check() == []
        stored = {i.id for i in s.incidents.list(limit=1000).items}
        missing = [i for i in printed if i not in stored]
        assert not missing, f"{len(missing)} committed incidents lost: {missing[:5]}"
        # Every stored evidence row has its complete file (file first, then the row).
        for iid in stored:
            for ev in s.evidence.list(iid):
                assert s.evidence.abspath(ev).stat().st_size == ev.size == 4096
        # The store keeps working after the crash: a new incident on an unused key.
        s.incidents.create(type="crash", camera_id="cam1", key="after")
        assert s.integrity_check() == []
