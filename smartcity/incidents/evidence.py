"""Evidence helpers: where an incident's files go and the annotated snapshot.

Files are written by the store (`store.evidence.write`: never replaced, fsync'ed, recorded
with size and sha256). Layout under the evidence root: `YYYY/MM/DD/<incident id>/<name>` (the
incident's opening day, UTC). `annotate_snapshot` draws an incident's boxes on an engine
snapshot.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Sequence

import cv2
import numpy as np

from smartcity.classes import APPLIANCE_CLASSES


class EvidenceError(RuntimeError):
    """Evidence could not be made (a bad name, a snapshot that is not an image)."""


def _safe_part(s: str) -> str:
    if not s or s in (".", "..") or any(c in s for c in "/\\\0"):
        raise EvidenceError(f"evidence name part {s!r}: must be a plain file or folder name")
    return s


def evidence_path(incident_id: str, opened_ns: int, name: str) -> str:
    """`YYYY/MM/DD/<incident id>/<name>` below the evidence root (the incident's opening day)."""
    day = time.strftime("%Y/%m/%d", time.gmtime(opened_ns / 1e9))
    return f"{day}/{_safe_part(incident_id)}/{_safe_part(name)}"


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


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
