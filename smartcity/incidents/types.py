"""The types the incident rules, the lifecycle and the service share.

A rule sees one `FrameTracks` at a time per camera and returns `Finding`s; the lifecycle
(smartcity.incidents.lifecycle) turns findings into incidents in the store. Per-object data are
numpy arrays, never lists of per-track Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _empty(dtype: type, shape: tuple[int, ...] = (0,)) -> Any:
    return field(default_factory=lambda: np.zeros(shape, dtype=dtype))


@dataclass(frozen=True, slots=True)
class FrameTracks:
    """The tracks of one analysed frame of one camera (a tracks.<cam> message, or a test's)."""

    cam: str
    frame: int  # frame number in the stream
    pts: float  # stream time, seconds (monotonic; the clock every rule measures time with)
    t_ns: int  # capture wall-clock time, ns since the Unix epoch
    w: int = 0  # frame size, pixels
    h: int = 0
    track_id: npt.NDArray[np.int64] = _empty(np.int64)
    class_id: npt.NDArray[np.int32] = _empty(np.int32)  # appliance classes (smartcity.classes)
    score: FloatArray = _empty(np.float32)
    xyxy: FloatArray = _empty(np.float32, (0, 4))  # frame pixels
    # Ground position (metres) of each box's bottom centre and smoothed ground speed (km/h);
    # NaN where the camera has no calibration or the speed is not known yet.
    ground_xy: FloatArray = _empty(np.float32, (0, 2))
    speed_kmh: FloatArray = _empty(np.float32)

    def __len__(self) -> int:
        return int(self.track_id.shape[0])


#: Incident severities, lowest first.
SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's statement about one incident at one moment.

    `key` identifies the incident within (camera, rule): the same key again updates the same
    incident (de-duplication); a rule that is done with it says so with `closed=True`.
    """

    rule: str  # incident type: wrong_way, stopped_vehicle, speeding, congestion, crowd, ...
    cam: str
    key: str  # e.g. "track:17", "lane:main.n0", "zone:square"
    pts: float  # stream time of the frame that produced it
    t_ns: int  # wall-clock time of that frame
    track_ids: tuple[int, ...] = ()
    severity: str = "medium"  # one of SEVERITIES
    score: float = 1.0  # rule confidence 0..1
    closed: bool = False  # the condition ended (congestion cleared, crowd dispersed ...)
    details: dict[str, str | int | float | bool | None] = field(default_factory=dict)
