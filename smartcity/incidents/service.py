"""`smartcity incidents`: tracks and health from the bus -> rules -> incidents, traffic figures.

One process for the whole camera set. Per tracks message: the camera's RuleSet (geometry,
rules) gives findings and traffic measurements; the IncidentManager writes incidents to the
store and only then publishes `incident.<type>`; the EvidenceCollector asks the engine for a
snapshot and a clip in worker threads; the TrafficAggregator makes minute buckets, written to
the store and published as `stats.<cam>`. Camera health comes from `health.<cam>` messages
and from a snapshot every few seconds per camera (a thread of its own). Bus gaps are counted
per camera in the store's ingest counters as missed messages, never dropped silently.
Retention runs every few minutes; a disk that cannot be kept, or evidence that cannot be
written for lack of space, raises a system incident while analysis goes on.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from smartcity.bus import Publisher, Subscriber, publisher_endpoint, subscriber_endpoint
from smartcity.bus.events import HealthEvent, StatsEvent, TracksEvent
from smartcity.bus.evidence import EvidenceClient, EvidenceError
from smartcity.incidents.config import IncidentsSettings
from smartcity.incidents.evidence import EvidenceCollector
from smartcity.incidents.lifecycle import IncidentManager, ensure_system_camera
from smartcity.incidents.rules.camera_health import CameraHealthMonitor
from smartcity.incidents.rules.ruleset import RuleSet
from smartcity.incidents.traffic import TrafficAggregator, TrafficBucket, to_record
from smartcity.incidents.types import Finding, FrameTracks
from smartcity.store import Store, StoreError
from smartcity.store.retention import apply_retention

log = logging.getLogger("smartcity.incidents")

HISTORY_FRAMES = 64  # recent frames per camera kept to annotate snapshots


def frame_of(ev: TracksEvent) -> FrameTracks:
    return FrameTracks(
        cam=ev.cam,
        frame=ev.frame,
        pts=ev.pts,
        t_ns=ev.t_ns,
        w=ev.w,
        h=ev.h,
        track_id=ev.track_id,
        class_id=ev.class_id,
        score=ev.score,
        xyxy=ev.xyxy,
        ground_xy=ev.ground_xy,
        speed_kmh=ev.speed_kmh,
    )


@dataclass
class ServiceCounters:
    tracks_messages: int = 0
    health_messages: int = 0
    other_cameras: int = 0  # messages of cameras this service is not configured for
    findings: int = 0
    buckets_written: int = 0
    stats_published: int = 0
    store_errors: int = 0
    retention_runs: int = 0
    health_frames: int = 0
    health_frame_errors: int = 0
    last_error: str = ""
    by_rule: collections.Counter[str] = field(default_factory=collections.Counter)


class IncidentsService:
    """IncidentsService(settings, run_dir).run(stop) until stop is set (or `seconds` pass)."""

    def __init__(
        self,
        settings: IncidentsSettings,
        run_dir: str | None = None,
        *,
        store: Store | None = None,
        evidence_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.store = store or Store.open(settings.database, data_dir=settings.data_dir)
        self._own_store = store is None
        ensure_system_camera(self.store)
        for cam in settings.cameras:
            if self.store.cameras.exists(cam.cam):
                self.store.cameras.update(cam.cam, name=cam.name, geometry=dict(cam.raw_geometry))
            else:
                self.store.cameras.add(
                    cam.cam, cam.name, "engine:" + cam.cam, geometry=dict(cam.raw_geometry)
                )
        self.rules = {c.cam: RuleSet(c.geometry, c.rules) for c in settings.cameras}
        self.health = {c.cam: CameraHealthMonitor(c.cam, c.health) for c in settings.cameras}
        self._health_lock = threading.Lock()
        self._history: dict[str, collections.deque[FrameTracks]] = {
            c.cam: collections.deque(maxlen=HISTORY_FRAMES) for c in settings.cameras
        }
        self._history_lock = threading.Lock()
        self.publisher = Publisher(publisher_endpoint(run_dir))
        self.subscriber = Subscriber(subscriber_endpoint(run_dir), ["tracks.", "health."])
        factory = evidence_factory or (lambda: EvidenceClient(run_dir))
        self._evidence_factory = factory
        self._inbox: queue.Queue[Finding] = queue.Queue()  # findings made by other threads
        self.evidence = EvidenceCollector(
            self.store,
            factory,
            settings.evidence,
            tracks_of=self._tracks_of,
            on_failure=self._evidence_failed,
        )
        self.manager = IncidentManager(
            self.store, self.publisher.publish, settings.lifecycle, on_open=self.evidence.request
        )
        self.traffic = TrafficAggregator(settings.stats_lateness_s)
        self.counters = ServiceCounters()
        self._ingest_seen: dict[str, tuple[int, int, int]] = {}
        self._stop_frames = threading.Event()
        self._frames_thread: threading.Thread | None = None

    # ---------------------------------------------------------------- helpers for threads
    def _tracks_of(self, cam: str, frame: int) -> FrameTracks | None:
        with self._history_lock:
            hist = list(self._history.get(cam, ()))
        for f in reversed(hist):
            if f.frame == frame:
                return f
        return hist[-1] if hist else None

    def _evidence_failed(self, incident_id: str, message: str, disk_full: bool) -> None:
        try:
            self.store.incidents.add_note(incident_id, message, actor="system")
        except StoreError as e:
            log.warning("cannot note the evidence failure on %s: %s", incident_id, e)
        if disk_full:
            self._inbox.put(
                Finding(
                    rule="system",
                    cam="appliance",
                    key="evidence_disk_full",
                    pts=time.time(),
                    t_ns=time.time_ns(),
                    severity="critical",
                    details={"message": "evidence cannot be written: the disk is full"},
                )
            )

    def _frames_loop(self) -> None:
        """A snapshot per camera every snapshot_every_s for the frozen/blinded/moved checks."""
        cams = [c for c in self.settings.cameras if c.snapshot_every_s > 0]
        if not cams:
            return
        client = self._evidence_factory()
        due = {c.cam: 0.0 for c in cams}
        try:
            while not self._stop_frames.is_set():
                now = time.monotonic()
                for c in cams:
                    if now < due[c.cam] or self._stop_frames.is_set():
                        continue
                    due[c.cam] = now + c.snapshot_every_s
                    try:
                        snap = client.snapshot(c.cam, timeout_s=2.0)
                    except EvidenceError:
                        self.counters.health_frame_errors += 1
                        continue
                    img = cv2.imdecode(np.frombuffer(snap.jpeg, np.uint8), cv2.IMREAD_COLOR)
                    if img is None:
                        self.counters.health_frame_errors += 1
                        continue
                    with self._health_lock:
                        found = self.health[c.cam].update_frame(img, snap.pts, snap.t_ns)
                    self.counters.health_frames += 1
                    for f in found:
                        self._inbox.put(f)
                self._stop_frames.wait(0.2)
        finally:
            client.close()

    # ---------------------------------------------------------------- the loop
    def run(self, stop: threading.Event, seconds: float | None = None) -> ServiceCounters:
        self._frames_thread = threading.Thread(
            target=self._frames_loop, name="health-frames", daemon=True
        )
        self._frames_thread.start()
        end = None if seconds is None else time.monotonic() + seconds
        next_tick = next_ingest = time.monotonic()
        next_retention = time.monotonic() + min(60.0, self.settings.retention_every_s)
        try:
            while not stop.is_set() and (end is None or time.monotonic() < end):
                ev = self.subscriber.recv(timeout_s=0.2)
                if isinstance(ev, TracksEvent):
                    self._on_tracks(ev)
                elif isinstance(ev, HealthEvent):
                    self._on_health(ev)
                while not self._inbox.empty():
                    self._handle(self._inbox.get_nowait())
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + 1.0
                    self._tick()
                if now >= next_ingest:
                    next_ingest = now + self.settings.ingest_every_s
                    self._write_ingest()
                if now >= next_retention:
                    next_retention = now + self.settings.retention_every_s
                    self._retention()
        finally:
            self._write_buckets(self.traffic.flush())
            self._write_ingest()
        return self.counters

    def close(self) -> None:
        self._stop_frames.set()
        if self._frames_thread is not None:
            self._frames_thread.join(5.0)
        self.evidence.close()
        self.subscriber.close()
        self.publisher.close()
        if self._own_store:
            self.store.close()

    def _handle(self, f: Finding) -> None:
        try:
            what = self.manager.handle(f)
        except StoreError as e:
            self.counters.store_errors += 1
            self.counters.last_error = str(e)
            log.error("incident for %s/%s not stored: %s", f.cam, f.rule, e)
            return
        self.counters.findings += 1
        if what == "opened":
            self.counters.by_rule[f.rule] += 1

    def _on_tracks(self, ev: TracksEvent) -> None:
        rules = self.rules.get(ev.cam)
        if rules is None:
            self.counters.other_cameras += 1
            return
        self.counters.tracks_messages += 1
        frame = frame_of(ev)
        with self._history_lock:
            self._history[ev.cam].append(frame)
        out = rules.update(frame)
        for f in out.findings:
            self._handle(f)
        for c in out.traffic.crossings:
            self.traffic.add_crossing(ev.cam, c)
        for lane in out.traffic.lanes:
            self.traffic.add_lane(ev.cam, lane)
        self.traffic.advance(ev.cam, ev.t_ns)
        try:
            self.manager.advance(ev.cam, ev.pts, ev.t_ns)
        except StoreError as e:
            self.counters.store_errors += 1
            self.counters.last_error = str(e)

    def _on_health(self, ev: HealthEvent) -> None:
        mon = self.health.get(ev.cam)
        if mon is None:
            self.counters.other_cameras += 1
            return
        self.counters.health_messages += 1
        with self._health_lock:
            found = mon.update_health(ev, time.time_ns())
        for f in found:
            self._handle(f)

    def _tick(self) -> None:
        now_ns = time.time_ns()
        with self._health_lock:
            found = [f for mon in self.health.values() for f in mon.tick(now_ns)]
        for f in found:
            self._handle(f)
        self._write_buckets(self.traffic.pop_closed())
        self.manager.advance("appliance", now_ns / 1e9, now_ns)

    def _write_buckets(self, buckets: list[TrafficBucket]) -> None:
        if not buckets:
            return
        try:
            self.counters.buckets_written += self.store.traffic.upsert(
                [to_record(b) for b in buckets]
            )
        except StoreError as e:
            self.counters.store_errors += 1
            self.counters.last_error = str(e)
            log.error("traffic buckets not stored: %s", e)
        # stats.<cam>: the line counts of each closed minute, per class.
        per: dict[tuple[str, int], collections.Counter[str]] = {}
        for b in buckets:
            if b.kind == "line":
                per.setdefault((b.cam, b.start_ns), collections.Counter())[b.cls] += b.count
        for (cam, start), counts in sorted(per.items()):
            self.publisher.publish(
                StatsEvent(cam=cam, seq=0, t0_ns=start, t1_ns=start + 60_000_000_000,
                           counts=dict(counts))
            )  # fmt: skip
            self.counters.stats_published += 1

    def _write_ingest(self) -> None:
        """Tracks messages received, missed (bus gaps, and those published while this service
        was down: the first sequence number after a start against the last one stored) and
        malformed, per camera, into the store."""
        for cam in self.rules:
            st = self.subscriber.stats.get(f"tracks.{cam}")
            if st is None or st.last_seq is None:
                continue
            rec, gaps, bad = st.received, st.gaps, st.decode_errors
            down = 0
            if cam not in self._ingest_seen:  # first write since this service started
                stored = self.store.ingest.get(cam)
                before = stored.last_seq if stored is not None else None
                if before is not None and st.first_seq is not None and st.first_seq > before:
                    down = st.first_seq - before - 1  # published while we were down
            r0, g0, b0 = self._ingest_seen.get(cam, (0, 0, 0))
            try:
                self.store.ingest.add(
                    cam,
                    received=rec - r0,
                    missed=gaps - g0 + down,
                    decode_errors=bad - b0,
                    last_seq=st.last_seq,
                )
            except StoreError as e:
                self.counters.store_errors += 1
                self.counters.last_error = str(e)
                continue
            self._ingest_seen[cam] = (rec, gaps, bad)

    def _retention(self) -> None:
        try:
            report = apply_retention(self.store, self.settings.retention)
        except (StoreError, OSError) as e:
            self.counters.last_error = f"retention: {e}"
            log.error("retention failed: %s", e)
            return
        self.counters.retention_runs += 1
        now = time.time_ns()
        self.manager.raise_system(
            "disk_reserve",
            report.alarm or "",
            now,
            severity="critical",
            details={"free_bytes": report.free_bytes, "reserve_bytes": report.reserve_needed},
            closed=report.alarm is None,
        )
