"""Multi-object tracking: ByteTrack in the C++ core (docs/tracking.md).

```python
from smartcity.tracking import ByteTracker

tracker = ByteTracker(track_thresh=0.5, match_thresh=0.8, track_buffer=30, frame_rate=10)
tracks = tracker.update(dets.xyxy, dets.score, dets.class_id)
tracks.track_id, tracks.xyxy, tracks.score, tracks.class_id, tracks.state   # numpy arrays
```
"""

from __future__ import annotations

from smartcity._core import ByteTracker, Tracks, TrackState

__all__ = ["ByteTracker", "TrackState", "Tracks"]
