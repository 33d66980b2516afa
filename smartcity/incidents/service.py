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

Live reload (docs/incidents.md, "Live reload"): a `config.changed` request from the API (reason
"api: ...") or SIGHUP (through the CLI, `request_reload`) makes the loop re-read the file and the
store's cameras (`cameras_from_store`) and change only the cameras that changed: a camera gone
is dropped (its traffic minutes written first), a new one gets its RuleSet, a changed geometry
or rules a new RuleSet (its track state starts again), changed health settings a new monitor.
A camera that leaves, a RuleSet that is replaced and every camera at a stop first finish their
rules (`RuleSet.finish`): line crossings still waiting to settle are counted, not lost.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy.engine import make_url

from smartcity.bus import Publisher, Subscriber, publisher_endpoint, subscriber_endpoint
from smartcity.bus.events import (
    CONFIG_CHANGED,
    ConfigChangedEvent,
    HealthEvent,
    StatsEvent,
    TracksEvent,
)
from smartcity.bus.evidence import EvidenceError, EvidenceRouter
from smartcity.engine.reload import ReloadRequests
from smartcity.incidents.config import (
    CameraRules,
    IncidentsConfigError,
    IncidentsSettings,
    StoreCameras,
    load_incidents_config,
    with_store_cameras,
)
from smartcity.incidents.evidence import EvidenceCollector
from smartcity.incidents.lifecycle import IncidentManager, ensure_system_camera
from smartcity.incidents.rules.camera_health import CameraHealthMonitor
from smartcity.incidents.rules.ruleset import RuleOutput, RuleSet
from smartcity.incidents.traffic import TrafficAggregator, TrafficBucket, to_record
from smartcity.incidents.types import Finding, FrameTracks
from smartcity.store import Store, StoreError, UnknownCameraError
from smartcity.store.engine import URL_ENV, default_url
from smartcity.store.retention import apply_retention

log = logging.getLogger("smartcity.incidents")

HISTORY_FRAMES = 64  # recent frames per camera kept to annotate snapshots
#: `reason` prefix of the config.changed requests this service reloads on (the API's, after a
#: camera change); other requests are for the engine, and its reports are no requests.
API_REASON = "api:"
#: Settings fixed for the life of the process: a change at a reload is logged, not applied.
RESTART_FIELDS = (
    "data_dir",
    "database",
    "evidence",
    "lifecycle",
    "retention",
    "retention_every_s",
    "stats_lateness_s",
    "ingest_every_s",
)


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
class ServiceReload:
    """What one reload did, by camera id. `refused` says why nothing changed (the file or the
    store could not be read or did not validate); `errors` names the store cameras left out."""

    reasons: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()  # geometry or rules changed: a new RuleSet
    health: tuple[str, ...] = ()  # health settings changed: a new monitor
    needs_restart: tuple[str, ...] = ()  # RESTART_FIELDS that changed (not applied)
    refused: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def cams(self) -> tuple[str, ...]:
        return tuple(sorted({*self.added, *self.removed, *self.replaced, *self.health}))


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
    """IncidentsService(settings, run_dir).run(stop) until stop is set (or `seconds` pass).

    With `cameras_from_store` in the settings the store's enabled cameras are watched too (read
    here, and again at each reload). `config_path`: the file a reload reads again (without
    one a reload reads the store alone). `request_reload(reason)` from any thread or a signal
    handler, or a config.changed message whose reason starts with "api:", makes the loop reload
    between two messages (`reload`; `apply` with settings at hand); `reloads` lists the results.
    """

    def __init__(
        self,
        settings: IncidentsSettings,
        run_dir: str | None = None,
        *,
        store: Store | None = None,
        evidence_factory: Callable[[], Any] | None = None,
        config_path: str | Path | None = None,
        requests: ReloadRequests | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.config_path = None if config_path is None else Path(config_path)
        self.requests = requests if requests is not None else ReloadRequests()
        self.reloads: list[ServiceReload] = []
        self.store = store or Store.open(settings.database, data_dir=settings.data_dir)
        self._own_store = store is None
        try:
            ensure_system_camera(self.store)
            self._write_file_cameras(settings.cameras)
            settings, problems = with_store_cameras(
                settings, self._same_store(settings.cameras_from_store)
            )
        except BaseException:
            if self._own_store:
                self.store.close()
            raise
        for problem in problems:
            log.error("%s (camera left out)", problem)
        self.settings = settings
        self.rules = {c.cam: RuleSet(c.geometry, c.rules) for c in settings.cameras}
        self.health = {c.cam: CameraHealthMonitor(c.cam, c.health) for c in settings.cameras}
        self._health_lock = threading.Lock()
        self._history: dict[str, collections.deque[FrameTracks]] = {
            c.cam: collections.deque(maxlen=HISTORY_FRAMES) for c in settings.cameras
        }
        self._history_lock = threading.Lock()
        self.publisher = Publisher(publisher_endpoint(run_dir))
        self.subscriber = Subscriber(
            subscriber_endpoint(run_dir), ["tracks.", "health.", CONFIG_CHANGED]
        )
        factory = evidence_factory or (lambda: EvidenceRouter(run_dir))
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

    def _write_file_cameras(self, cameras: Iterable[CameraRules]) -> None:
        """The file's cameras into the store, geometry with them (the store's own cameras are
        the API's: never written here). A new one gets the placeholder URL `engine:<id>`."""
        for cam in cameras:
            if cam.from_store:
                continue
            if self.store.cameras.exists(cam.cam):
                self.store.cameras.update(cam.cam, name=cam.name, geometry=dict(cam.raw_geometry))
            else:
                self.store.cameras.add(
                    cam.cam, cam.name, "engine:" + cam.cam, geometry=dict(cam.raw_geometry)
                )

    def _same_store(self, block: StoreCameras | None) -> Store | None:
        """The service's own store when `cameras_from_store` names the same database (read
        through it), else None (the block's store is opened for each read)."""
        if block is None:
            return None
        url = block.url or os.environ.get(URL_ENV)
        if not url and block.data_dir is not None:
            url = default_url(block.data_dir)
        try:
            same = url is not None and make_url(url) == self.store.engine.url
        except Exception:  # noqa: BLE001 - not a URL: with_store_cameras says so when it opens
            same = False
        return self.store if same else None

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
        """A snapshot per camera every snapshot_every_s for the frozen/blinded/moved checks (the
        camera set as it is now: a reload may change it)."""
        client = None
        due: dict[str, float] = {}
        try:
            while not self._stop_frames.is_set():
                now = time.monotonic()
                cams = [c for c in self.settings.cameras if c.snapshot_every_s > 0]
                if cams and client is None:
                    client = self._evidence_factory()
                for c in cams:
                    if now < due.get(c.cam, 0.0) or self._stop_frames.is_set():
                        continue
                    due[c.cam] = now + c.snapshot_every_s
                    assert client is not None
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
                        mon = self.health.get(c.cam)  # None: removed meanwhile
                        found = [] if mon is None else mon.update_frame(img, snap.pts, snap.t_ns)
                    self.counters.health_frames += 1
                    for f in found:
                        self._inbox.put(f)
                self._stop_frames.wait(0.2)
        finally:
            if client is not None:
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
                elif isinstance(ev, ConfigChangedEvent):
                    self._on_config_changed(ev)
                reasons = self.requests.take()
                if reasons:
                    self.reload(reasons)
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
            for cam in list(self.rules):
                self._finish_rules(cam)
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
        self._take(ev.cam, rules.update(frame))
        self.traffic.advance(ev.cam, ev.t_ns)
        try:
            self.manager.advance(ev.cam, ev.pts, ev.t_ns)
        except StoreError as e:
            self.counters.store_errors += 1
            self.counters.last_error = str(e)

    def _take(self, cam: str, out: RuleOutput) -> None:
        for f in out.findings:
            self._handle(f)
        for c in out.traffic.crossings:
            self.traffic.add_crossing(cam, c)
        for lane in out.traffic.lanes:
            self.traffic.add_lane(cam, lane)

    def _finish_rules(self, cam: str) -> None:
        """The camera's stream ends here for its rules (it leaves, its rules are replaced, the
        service stops): line crossings waiting to settle count now."""
        rules = self.rules.get(cam)
        if rules is not None:
            self._take(cam, rules.finish())

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

    # ---------------------------------------------------------------- live reload
    def request_reload(self, reason: str = "request") -> None:
        """Ask the loop to reload between two messages; safe from any thread and from a signal
        handler."""
        self.requests.request(reason)

    def _on_config_changed(self, ev: ConfigChangedEvent) -> None:
        if ev.reason.startswith(API_REASON):  # a camera changed through the API
            cams = ",".join(ev.cams) or "-"
            self.requests.request(f"config.changed ({ev.reason}; cams {cams})")

    def reload(self, reasons: tuple[str, ...] = ("request",)) -> ServiceReload:
        """Read the file (config_path; without one, the settings in use) and the store's
        cameras again, then apply what changed camera by camera. A file or store that cannot be
        read or does not validate changes nothing: the result's `refused` says why."""
        why = "; ".join(reasons)
        try:
            new = self.settings
            if self.config_path is not None:
                new = load_incidents_config(self.config_path)
            new, problems = with_store_cameras(new, self._same_store(new.cameras_from_store))
        except IncidentsConfigError as e:
            result = ServiceReload(reasons, refused=str(e))
            log.error("reload (%s) refused, nothing changed: %s", why, e)
            self.reloads.append(result)
            return result
        for problem in problems:
            log.error("%s (camera left out)", problem)
        result = self.apply(new, reasons)
        result.errors[:0] = problems
        return result

    def apply(self, new: IncidentsSettings, reasons: tuple[str, ...] = ("apply",)) -> ServiceReload:
        """Turn the running camera set into `new`'s (validated), on the loop thread. Cameras
        whose settings did not change keep their RuleSet, monitor and state."""
        old = {c.cam: c for c in self.settings.cameras}
        cur = {c.cam: c for c in new.cameras}
        removed = tuple(cid for cid in old if cid not in cur)
        added = tuple(cid for cid in cur if cid not in old)
        # What the rules run on: the geometry as configured and the rules' settings.
        replaced = tuple(
            cid
            for cid, c in cur.items()
            if cid in old
            and (c.raw_geometry != old[cid].raw_geometry or dict(c.rules) != dict(old[cid].rules))
        )
        health = tuple(cid for cid, c in cur.items() if cid in old and c.health != old[cid].health)
        restart = tuple(f for f in RESTART_FIELDS if getattr(new, f) != getattr(self.settings, f))
        result = ServiceReload(
            reasons,
            added=added,
            removed=removed,
            replaced=replaced,
            health=health,
            needs_restart=restart,
        )
        for cid in removed:
            self._drop_camera(cid)
        for cid in replaced:
            self._finish_rules(cid)
        for cid in (*added, *replaced):
            self.rules[cid] = RuleSet(cur[cid].geometry, cur[cid].rules)
        with self._health_lock:
            for cid in (*added, *health):
                self.health[cid] = CameraHealthMonitor(cid, cur[cid].health)
        with self._history_lock:
            for cid in added:
                self._history[cid] = collections.deque(maxlen=HISTORY_FRAMES)
        changed_file_cams = [
            c
            for cid, c in cur.items()
            if not c.from_store
            and (
                cid not in old
                or old[cid].from_store
                or c.name != old[cid].name
                or c.raw_geometry != old[cid].raw_geometry
            )
        ]
        try:
            self._write_file_cameras(changed_file_cams)
        except StoreError as e:
            self.counters.store_errors += 1
            self.counters.last_error = str(e)
            log.error("cameras of the file not written to the store: %s", e)
        for name in restart:
            log.warning(
                "%s changed: it takes effect when the service starts again (ignored until then)",
                name,
            )
        keep = {f: getattr(self.settings, f) for f in RESTART_FIELDS}
        self.settings = replace(new, **keep)
        self.reloads.append(result)
        log.info(
            "reload (%s): added %s, removed %s, new rules for %s, new health monitor for %s",
            "; ".join(reasons),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
            ", ".join(replaced) or "none",
            ", ".join(health) or "none",
        )
        return result

    def _drop_camera(self, cam: str) -> None:
        """A camera leaves the set: its traffic minutes and ingest counters are written now (as
        at a stop) if the store still has it (a deleted camera's figures went with it), then
        its rules, monitor and recent frames go. Its open incidents stay as they are."""
        try:
            known = self.store.cameras.exists(cam)
        except StoreError:
            known = True  # try the writes; they count their own errors
        self._finish_rules(cam)
        buckets = self.traffic.pop_camera(cam)
        if known:
            self._write_ingest([cam])
            self._write_buckets(buckets)
        elif buckets:
            log.warning(
                "camera %s was deleted from the store: %d traffic buckets of its last minutes "
                "dropped",
                cam,
                len(buckets),
            )
        self.rules.pop(cam, None)
        with self._health_lock:
            self.health.pop(cam, None)
        with self._history_lock:
            self._history.pop(cam, None)

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
            try:
                self.counters.buckets_written += self.store.traffic.upsert(
                    [to_record(b) for b in buckets]
                )
            except UnknownCameraError:
                # A camera deleted through the API before this service's reload dropped it:
                # its figures went with it. The other cameras' minutes are written.
                gone = {b.cam for b in buckets if not self.store.cameras.exists(b.cam)}
                log.warning("traffic minutes of deleted cameras dropped: %s", ", ".join(gone))
                buckets = [b for b in buckets if b.cam not in gone]
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

    def _write_ingest(self, cams: Iterable[str] | None = None) -> None:
        """Tracks messages received, missed (bus gaps, and those published while this service
        was down: the first sequence number after a start against the last one stored) and
        malformed, per camera (every camera, or `cams`), into the store."""
        for cam in list(self.rules) if cams is None else cams:
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
            except UnknownCameraError:
                continue  # deleted through the API; the reload that drops it is on its way
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
