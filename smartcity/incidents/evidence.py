"""Evidence helpers: where an incident's files go and the annotated snapshot.

Files are written by the store (`store.evidence.write`: never replaced, fsync'ed, recorded
with size and sha256). Layout under the evidence root: `YYYY/MM/DD/<incident id>/<name>` (the
incident's opening day, UTC). `annotate_snapshot` draws an incident's boxes on an engine
snapshot.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from smartcity.bus.evidence import Clip, Snapshot
from smartcity.classes import APPLIANCE_CLASSES
from smartcity.incidents.types import Finding, FrameTracks
from smartcity.store import IncidentRecord, Store

log = logging.getLogger("smartcity.incidents.evidence")


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


class _EvidenceSource(Protocol):
    def snapshot(self, cam: str, timeout_s: float = ...) -> Snapshot: ...
    def clip(
        self, cam: str, t0: float, t1: float, wait_s: float = ..., timeout_s: float | None = ...
    ) -> Clip: ...
    def close(self) -> None: ...


@dataclass
class EvidenceSettings:
    snapshot: bool = True
    clip: bool = True
    pre_s: float = 5.0  # clip seconds before the finding (stream time)
    post_s: float = 5.0  # and after it
    timeout_s: float = 10.0  # for a snapshot; a clip also waits for post_s
    workers: int = 2


class EvidenceCollector:
    """Fetches an incident's snapshot and clip from the engine's evidence server in worker
    threads (the rules never wait for it) and stores them (`store.evidence.write`).

    Each worker owns its client (ZeroMQ sockets are not shared between threads). A failure is
    noted on the incident (`on_failure(incident_id, message, disk_full)`), never raised.
    """

    def __init__(
        self,
        store: Store,
        client_factory: Callable[[], _EvidenceSource],
        settings: EvidenceSettings | None = None,
        tracks_of: Callable[[str, int], FrameTracks | None] | None = None,
        on_failure: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or EvidenceSettings()
        self._factory = client_factory
        self._tracks_of = tracks_of
        self._on_failure = on_failure
        self._jobs: queue.Queue[tuple[str, IncidentRecord, Finding] | None] = queue.Queue()
        self.counts = {"snapshots": 0, "clips": 0, "failures": 0}
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"evidence-{i}", daemon=True)
            for i in range(max(1, self.settings.workers))
        ]
        for t in self._threads:
            t.start()

    def request(self, rec: IncidentRecord, f: Finding) -> None:
        if self.settings.snapshot:
            self._jobs.put(("snapshot", rec, f))
        if self.settings.clip:
            self._jobs.put(("clip", rec, f))

    def pending(self) -> int:
        return self._jobs.qsize()

    def close(self, timeout_s: float = 5.0) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _work(self) -> None:
        client = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                if client is None:
                    client = self._factory()
                kind, rec, f = job
                try:
                    if kind == "snapshot":
                        self._snapshot(client, rec, f)
                    else:
                        self._clip(client, rec, f)
                except Exception as e:  # noqa: BLE001 - reported on the incident, never raised
                    self._count("failures")
                    msg = f"{kind} for incident {rec.id} failed: {e}"
                    log.warning("%s", msg)
                    if self._on_failure is not None:
                        try:
                            self._on_failure(rec.id, msg, is_disk_full(e))
                        except Exception:  # noqa: BLE001
                            log.exception("reporting an evidence failure failed")
        finally:
            if client is not None:
                client.close()

    def _snapshot(self, client: _EvidenceSource, rec: IncidentRecord, f: Finding) -> None:
        snap = client.snapshot(f.cam, timeout_s=self.settings.timeout_s)
        jpeg = snap.jpeg
        tracks = self._tracks_of(f.cam, snap.frame) if self._tracks_of else None
        if tracks is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snap.t_ns / 1e9))
            jpeg = annotate_snapshot(
                jpeg,
                tracks.xyxy,
                [int(c) for c in tracks.class_id],
                [int(t) for t in tracks.track_id],
                highlight=f.track_ids,
                caption=f"{f.rule} {f.cam} {stamp}",
            )
        path = evidence_path(rec.id, f.t_ns, "snapshot.jpg")
        self.store.evidence.write(rec.id, "snapshot", path, jpeg)
        self._count("snapshots")

    def _clip(self, client: _EvidenceSource, rec: IncidentRecord, f: Finding) -> None:
        s = self.settings
        clip = client.clip(
            f.cam,
            f.pts - s.pre_s,
            f.pts + s.post_s,
            wait_s=s.post_s + 10.0,
            timeout_s=s.post_s + 10.0 + s.timeout_s,
        )
        path = evidence_path(rec.id, f.t_ns, "clip.mp4")
        self.store.evidence.write(rec.id, "clip", path, clip.mp4)
        self._count("clips")
