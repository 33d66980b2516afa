"""Evidence paths, a full disk while writing evidence, annotated snapshots."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from smartcity.incidents.evidence import (
    EvidenceError,
    annotate_snapshot,
    evidence_path,
    is_disk_full,
)

T = 1_790_000_000 * 10**9


def test_path_layout():
    assert evidence_path("inc-1", T, "snapshot.jpg") == "2026/09/21/inc-1/snapshot.jpg"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "..", "x\0y"])
def test_names_cannot_escape_the_root(bad):
    with pytest.raises(EvidenceError, match="plain file or folder name"):
        evidence_path(bad, T, "snapshot.jpg")
    with pytest.raises(EvidenceError, match="plain file or folder name"):
        evidence_path("inc", T, bad)


def test_store_write_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    import builtins
    import errno

    from smartcity.store import Store

    store = Store.open(data_dir=tmp_path)
    store.cameras.add("c1", "c1", "file:///x.mp4")
    inc = store.incidents.create(type="wrong_way", camera_id="c1", key="track:1")
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if "x" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as ei:
        store.evidence.write(inc.id, "clip", evidence_path(inc.id, T, "clip.mp4"), b"x" * 100)
    monkeypatch.undo()
    assert is_disk_full(ei.value)
    assert not [p for p in (tmp_path / "evidence").rglob("*") if p.is_file()]
    assert store.evidence.list(inc.id) == []
    store.close()


def test_annotate_draws_the_incident_track_in_red():
    img = np.full((360, 640, 3), 90, np.uint8)
    ok, jpeg = cv2.imencode(".jpg", img)
    assert ok
    out = annotate_snapshot(
        jpeg.tobytes(),
        np.array([[100, 100, 200, 200], [300, 100, 400, 200]], np.float32),
        [2, 0],
        [7, 8],
        highlight=[7],
        caption="wrong_way",
    )
    dec = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_COLOR)
    assert dec.shape == img.shape
    b, g, r = dec[150, 100].astype(int)  # left edge of the highlighted box
    assert r > 180 and g < 90
    b, g, r = dec[150, 300].astype(int)  # the other box is green
    assert g > 120 and r < 90
    with pytest.raises(EvidenceError, match="not a JPEG"):
        annotate_snapshot(b"nope", np.zeros((0, 4), np.float32), [], [])


class FakeSource:
    def __init__(self, fail=None):
        self.fail = fail
        self.closed = False
        self.asked = []

    def snapshot(self, cam, timeout_s=10.0):
        from smartcity.bus.evidence import Snapshot

        if self.fail == "snapshot":
            raise RuntimeError("no frame yet")
        ok, jpeg = cv2.imencode(".jpg", np.full((360, 640, 3), 80, np.uint8))
        return Snapshot(cam=cam, frame=42, pts=10.0, t_ns=T, w=640, h=360, jpeg=jpeg.tobytes())

    def clip(self, cam, t0, t1, wait_s=0.0, timeout_s=None):
        from smartcity.bus.evidence import Clip

        self.asked.append((t0, t1))
        if self.fail == "clip":
            raise OSError(28, "No space left on device")
        return Clip(cam, t0, t1, 10, True, t1 - t0, False, b"\x00\x00\x00\x18ftypmp42")

    def close(self):
        self.closed = True


def _store_with_incident(tmp_path):
    from smartcity.store import Store

    store = Store.open(data_dir=tmp_path)
    store.cameras.add("c1", "c1", "file:///x.mp4")
    inc = store.incidents.create(type="wrong_way", camera_id="c1", key="track:7")
    return store, inc


def test_collector_stores_snapshot_and_clip(tmp_path):
    from smartcity.incidents.evidence import EvidenceCollector, EvidenceSettings
    from smartcity.incidents.types import Finding, FrameTracks

    store, inc = _store_with_incident(tmp_path)
    src = FakeSource()
    frame = FrameTracks(
        "c1", 42, 10.0, T,
        track_id=np.array([7], np.int64), class_id=np.array([2], np.int32),
        xyxy=np.array([[10, 10, 100, 100]], np.float32),
    )  # fmt: skip
    col = EvidenceCollector(
        store, lambda: src, EvidenceSettings(pre_s=4, post_s=6), tracks_of=lambda c, n: frame
    )
    col.request(inc, Finding("wrong_way", "c1", "track:7", 10.0, T, track_ids=(7,)))
    col.close()
    ev = {e.kind: e for e in store.evidence.list(inc.id)}
    assert set(ev) == {"snapshot", "clip"} and col.counts["failures"] == 0
    assert src.asked == [(6.0, 16.0)] and src.closed
    snap = store.evidence.abspath(ev["snapshot"]).read_bytes()
    assert hashlib.sha256(snap).hexdigest() == ev["snapshot"].sha256
    img = cv2.imdecode(np.frombuffer(snap, np.uint8), cv2.IMREAD_COLOR)
    assert img[55, 10, 2] > 180  # the incident's track drawn in red
    store.close()


def test_collector_failures_are_reported_not_raised(tmp_path):
    from smartcity.incidents.evidence import EvidenceCollector
    from smartcity.incidents.types import Finding

    store, inc = _store_with_incident(tmp_path)
    failures = []
    col = EvidenceCollector(
        store, lambda: FakeSource(fail="clip"), on_failure=lambda *a: failures.append(a)
    )
    col.request(inc, Finding("wrong_way", "c1", "track:7", 10.0, T))
    col.close()
    assert col.counts == {"snapshots": 1, "clips": 0, "failures": 1}
    ((iid, msg, disk_full),) = failures
    assert iid == inc.id and "clip" in msg and disk_full
    store.close()
