"""Evidence files: written once, never overwritten, each with its sha256.

Layout under the evidence root: `YYYY/MM/DD/<incident id>/<name>` (the incident's opening
day, UTC). A file is created with O_EXCL (an existing one is an error, never replaced), written,
fsync'ed, and its directory fsync'ed before the caller stores its row; a failed write leaves no
partial file. `annotate_snapshot` draws an incident's boxes on an engine snapshot.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smartcity.classes import APPLIANCE_CLASSES


class EvidenceError(RuntimeError):
    """An evidence file could not be written; `disk_full` when the disk is the reason."""

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    path: str  # relative to the evidence root, '/'-separated
    kind: str  # snapshot | clip
    size: int
    sha256: str


def _safe_part(s: str) -> str:
    if not s or s in (".", "..") or any(c in s for c in "/\\\0"):
        raise EvidenceError(f"evidence name part {s!r}: must be a plain file or folder name")
    return s


class EvidenceWriter:
    """Writes evidence files below `root` (created 0750 when missing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)

    def write(
        self, incident_id: str, opened_ns: int, name: str, kind: str, data: bytes
    ) -> EvidenceFile:
        day = time.strftime("%Y/%m/%d", time.gmtime(opened_ns / 1e9))
        rel = f"{day}/{_safe_part(incident_id)}/{_safe_part(name)}"
        path = self.root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise EvidenceError(
                f"cannot create evidence folder {rel.rsplit('/', 1)[0]}: {e}",
                disk_full=e.errno == errno.ENOSPC,
            ) from e
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError as e:
            raise EvidenceError(f"evidence file {rel} exists already; it is never replaced") from e
        except OSError as e:
            raise EvidenceError(
                f"cannot create evidence file {rel}: {e}", disk_full=e.errno == errno.ENOSPC
            ) from e
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise EvidenceError(
                f"cannot write evidence file {rel}: {e}", disk_full=e.errno == errno.ENOSPC
            ) from e
        os.close(fd)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return EvidenceFile(rel, kind, len(data), hashlib.sha256(data).hexdigest())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def annotate_snapshot(
    jpeg: bytes,
    boxes: np.ndarray,
    class_ids: Sequence[int],
    track_ids: Sequence[int],
    highlight: Sequence[int] = (),
    caption: str = "",
    quality: int = 90,
) -> bytes:
    """Draws boxes (frame pixels) with class and track id; the incident's tracks in red."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise EvidenceError("the snapshot is not a JPEG image")
    hl = {int(t) for t in highlight}
    thick = max(1, round(img.shape[1] / 640))
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(xyxy) == len(class_ids) == len(track_ids):
        raise EvidenceError("boxes, class_ids and track_ids must have the same length")
    for box, cls, tid in zip(xyxy, class_ids, track_ids, strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        colour = (0, 0, 255) if int(tid) in hl else (0, 200, 0)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2 * thick if int(tid) in hl else thick)
        name = APPLIANCE_CLASSES[cls] if 0 <= int(cls) < len(APPLIANCE_CLASSES) else str(cls)
        cv2.putText(
            img,
            f"{name} {int(tid)}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thick,
            colour,
            thick,
            cv2.LINE_AA,
        )
    if caption:
        cv2.putText(
            img, caption, (8, 20 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * thick, (255, 255, 255),
            thick + 1, cv2.LINE_AA,
        )  # fmt: skip
    ok, out = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EvidenceError("cannot encode the annotated snapshot")
    return out.tobytes()
