"""Live reconfiguration of `smartcity engine`: what changed between two configurations, and the
queue of reload requests that signal handlers and bus messages fill from any thread.

The engine applies a reload between batches on its loop thread (process.Engine.reload); this
module only decides what has to happen (docs/events.md, "Live reconfiguration"):

- a camera that is gone is removed (its stream stops, its tracker and calibration go with it);
- a new camera is added (with its calibration);
- a camera whose stream settings changed (STREAM_FIELDS, or its calibration removed) is removed
  and added again: only that camera restarts;
- a camera whose calibration alone changed gets the new one without restarting its stream;
- the cameras of the store (`cameras_from_store`) are compared like the file's: the engine's
  loader has already added them to the new configuration;
- LIVE_FIELDS take effect at once; every other engine setting (model, models_root, max_batch,
  inference_threads, tracking, and any field added to EngineSettings later) is reported as
  needing a restart and otherwise ignored until the engine starts again.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smartcity.engine.process import CameraSettings, EngineSettings

#: Camera settings that need the camera's stream to start again when they change.
STREAM_FIELDS = ("url", "analyze_fps", "rtsp_transport", "loop", "realtime")
#: Engine settings applied live (used by the Python loop only; `cameras_from_store` is read
#: again at every reload, the new block included).
LIVE_FIELDS = ("max_wait_ms", "health_interval_s", "cameras_from_store")


def restart_fields(settings: EngineSettings) -> tuple[str, ...]:
    """Engine settings fixed for the life of the process (a change is reported, not applied):
    every field but the cameras and LIVE_FIELDS."""
    return tuple(
        f.name for f in fields(settings) if f.name != "cameras" and f.name not in LIVE_FIELDS
    )


#: `reason` of the config.changed message the engine publishes after applying a change, and the
#: prefix of the one it publishes when it refuses a new file ("refused: <what is wrong>"). The
#: engine takes config.changed messages with these reasons as reports, never as requests.
APPLIED = "applied"
REFUSED = "refused"


@dataclass(frozen=True)
class ConfigDiff:
    """What a reload has to do, camera by camera (ids in the new file's order)."""

    added: tuple[CameraSettings, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[CameraSettings, ...] = ()  # the new settings of each camera restarted
    recalibrated: tuple[CameraSettings, ...] = ()  # image_to_ground changed, stream untouched
    live: tuple[str, ...] = ()  # LIVE_FIELDS that changed
    needs_restart: tuple[str, ...] = ()  # RESTART_FIELDS that changed (not applied)

    @property
    def cams(self) -> tuple[str, ...]:
        """Every camera concerned, sorted."""
        ids = {c.camera_id for c in (*self.added, *self.restarted, *self.recalibrated)}
        return tuple(sorted(ids | set(self.removed)))

    @property
    def empty(self) -> bool:
        return not (self.cams or self.live or self.needs_restart)


def _stream_changed(old: CameraSettings, new: CameraSettings) -> list[str]:
    changed = [f for f in STREAM_FIELDS if getattr(old, f) != getattr(new, f)]
    if old.image_to_ground is not None and new.image_to_ground is None:
        # The pipeline cannot drop a calibration from a running camera: restart it.
        changed.append("image_to_ground")
    return changed


def diff_settings(old: EngineSettings, new: EngineSettings) -> ConfigDiff:
    """What turns the running configuration `old` into `new` (both already validated)."""
    before = {c.camera_id: c for c in old.cameras}
    after = {c.camera_id: c for c in new.cameras}
    added, restarted, recalibrated = [], [], []
    for cid, cam in after.items():
        was = before.get(cid)
        if was is None:
            added.append(cam)
        elif _stream_changed(was, cam):
            restarted.append(cam)
        elif was.image_to_ground != cam.image_to_ground:
            recalibrated.append(cam)
    removed = tuple(cid for cid in before if cid not in after)
    return ConfigDiff(
        added=tuple(added),
        removed=removed,
        restarted=tuple(restarted),
        recalibrated=tuple(recalibrated),
        live=tuple(f for f in LIVE_FIELDS if getattr(old, f) != getattr(new, f)),
        needs_restart=tuple(f for f in restart_fields(old) if getattr(old, f) != getattr(new, f)),
    )


@dataclass
class ReloadResult:
    """What one reload did. `refused` holds the reason when the new file was not valid (then
    nothing changed); `errors` what failed while applying (the camera named)."""

    reasons: tuple[str, ...]
    diff: ConfigDiff = field(default_factory=ConfigDiff)
    refused: str = ""
    errors: list[str] = field(default_factory=list)
    applied: tuple[str, ...] = ()  # cameras changed, as published on config.changed


class ReloadRequests:
    """Reload requests from any thread or a signal handler (SimpleQueue.put is reentrant);
    the engine's loop takes them all at once between batches."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[str] = queue.SimpleQueue()

    def request(self, reason: str) -> None:
        self._q.put(reason)

    def take(self) -> tuple[str, ...]:
        """Every reason waiting, oldest first (empty when there is none)."""
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return tuple(out)
