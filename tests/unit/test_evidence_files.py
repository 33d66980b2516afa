"""Evidence files: written once, hashed, never replaced; annotated snapshots."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from smartcity.incidents.evidence import (
    EvidenceError,
    EvidenceWriter,
    annotate_snapshot,
    sha256_file,
)

T = 1_790_000_000 * 10**9


def test_written_once_with_sha256(tmp_path):
    w = EvidenceWriter(tmp_path / "ev")
    f = w.write("inc-1", T, "snapshot.jpg", "snapshot", b"abc" * 1000)
    assert f.path.endswith("/inc-1/snapshot.jpg") and f.path.count("/") == 4
    assert f.size == 3000 and f.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest()
    on_disk = tmp_path / "ev" / f.path
    assert sha256_file(on_disk) == f.sha256
    with pytest.raises(EvidenceError, match="never replaced"):
        w.write("inc-1", T, "snapshot.jpg", "snapshot", b"other")
    assert on_disk.read_bytes() == b"abc" * 1000  # what was stored is untouched


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "..", "x\0y"])
def test_names_cannot_escape_the_root(tmp_path, bad):
    w = EvidenceWriter(tmp_path)
    with pytest.raises(EvidenceError, match="plain file or folder name"):
        w.write(bad, T, "snapshot.jpg", "snapshot", b"x")
    with pytest.raises(EvidenceError, match="plain file or folder name"):
        w.write("inc", T, bad, "snapshot", b"x")


def test_blocked_folder_is_a_clear_error(tmp_path):
    w = EvidenceWriter(tmp_path)
    (tmp_path / "2026").write_text("not a folder")  # the year folder of T is a file
    with pytest.raises(EvidenceError, match="cannot create evidence folder 2026/"):
        w.write("inc", T, "clip.mp4", "clip", b"x")


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


def test_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno
    import os

    w = EvidenceWriter(tmp_path)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(EvidenceError) as ei:
        w.write("inc", T, "clip.mp4", "clip", b"x" * 100)
    assert ei.value.disk_full
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
