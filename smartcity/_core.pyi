"""smartcity C++ core: multi-stream ingest, decode, sampling and batching (typing stub)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

class UnknownCameraError(KeyError):
    """A camera_id that the pipeline does not hold."""

class ClipRangeError(LookupError):
    """A clip range that is not, or not yet, in the packet ring; the message says what it holds."""

class ClipWriteError(OSError):
    """A clip that could not be written: the path, the disk, or a codec MP4 cannot hold."""

class ResizeMode(enum.IntEnum):
    letterbox = 0
    stretch = 1

class DType(enum.IntEnum):
    float32 = 0
    uint8 = 1

class ResizeFilter(enum.IntEnum):
    """auto: bilinear, area for 2x downscales; fast_bilinear: 2-tap like cv2.INTER_LINEAR."""

    auto = 0
    bilinear = 1
    fast_bilinear = 2
    area = 3

class StreamState(enum.IntEnum):
    connecting = 0
    running = 1
    backoff = 2
    stopped = 3
    failed = 4

class SlotGeometry:
    """Where a frame lands in a tensor slot: x_model = x_frame * scale_x + pad_x."""

    src_w: int
    src_h: int
    dst_x: int
    dst_y: int
    dst_w: int
    dst_h: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

def compute_geometry(
    src_w: int, src_h: int, dst_w: int, dst_h: int, resize: ResizeMode = ...
) -> SlotGeometry:
    """Placement of a src_w x src_h frame in a dst_w x dst_h slot."""

def build_info() -> dict[str, str]:
    """Versions of smartcity and FFmpeg, CUDA yes/no and architectures, compiler, build type."""

def set_ffmpeg_log_level(level: int) -> None:
    """FFmpeg's log level (-8 quiet ... 48 debug); the module starts at 8 (fatal only)."""

def trim_heap() -> bool:
    """Returns free heap pages to the OS (glibc's malloc_trim); True when some were released."""

def redact_url(url: str) -> str:
    """The URL with any user:password@ replaced by ***@."""

def nv12_to_tensor(
    y: npt.NDArray[np.uint8],
    uv: npt.NDArray[np.uint8],
    *,
    width: int = 640,
    height: int = 640,
    resize: ResizeMode = ...,
    pad_value: int = 114,
    bt709: bool = False,
    full_range: bool = False,
    bgr: bool = False,
    device: str = "cpu",
) -> npt.NDArray[np.float32]:
    """NV12 planes to a (3, height, width) float32 RGB slot; device 'cpu' (reference) or 'cuda'."""

def cuda_device_count() -> int:
    """Visible CUDA devices (0 in builds without CUDA)."""

def gpu_decode() -> dict[str, Any]:
    """{"available": bool, "reason": str}: whether streams with hwaccel auto or cuda can decode
    on the GPU here (a codec or size NVDEC refuses still falls back per stream), and why not."""

class StreamConfig:
    """One camera's ingest settings. ValueError naming the field for a bad value."""

    def __init__(
        self,
        *,
        camera_id: str,
        url: str,
        rtsp_transport: str = "tcp",
        loop: bool = False,
        realtime: bool = False,
        analyze_fps: float = 0.0,
        decode_only: bool = False,
        block_when_busy: bool = False,
        open_timeout_s: float = 10.0,
        stall_timeout_s: float = 10.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        pre_event_s: float = 10.0,
        decoder_threads: int = 1,
        hwaccel: str = "none",
        hw_device: int = 0,
    ) -> None: ...
    @property
    def camera_id(self) -> str: ...
    @property
    def url(self) -> str:
        """The URL with credentials redacted (the real one is never handed back)."""
    @property
    def rtsp_transport(self) -> str: ...
    @property
    def loop(self) -> bool: ...
    @property
    def realtime(self) -> bool: ...
    @property
    def analyze_fps(self) -> float: ...
    @property
    def decode_only(self) -> bool: ...
    @property
    def block_when_busy(self) -> bool: ...
    @property
    def open_timeout_s(self) -> float: ...
    @property
    def stall_timeout_s(self) -> float: ...
    @property
    def backoff_initial_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...
    @property
    def pre_event_s(self) -> float: ...
    @property
    def decoder_threads(self) -> int: ...
    @property
    def hwaccel(self) -> str:
        """none | auto | cuda: decode on the GPU (NVDEC) where possible."""
    @property
    def hw_device(self) -> int: ...

class Batch:
    """Frames of several streams in one tensor (a view of the core's buffer).

    The buffer goes back to the pool once release() is called or the Batch and every view of
    it are gone.
    """

    @property
    def size(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def tensor(self) -> npt.NDArray[Any]:
        """The (N, 3, H, W) input tensor (read-only view), RGB planes, float32 [0, 1] or uint8.
        In a device batch, slots written on the GPU are copied to the host first."""
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, 3, H, W) of the tensor, without touching it."""
    @property
    def dtype(self) -> str:
        """'float32' or 'uint8'."""
    @property
    def on_device(self) -> bool:
        """True in a device batch (the pipeline was made with batch_device >= 0)."""
    def device_ptr(self) -> int:
        """Address of the tensor in device memory (device batches only; RuntimeError otherwise),
        slots written on the CPU copied up first. Valid while the batch is held."""
    @property
    def slots_on_device(self) -> int:
        """Slots whose content is in device memory now (device batches)."""
    @property
    def camera_ids(self) -> list[str]: ...
    @property
    def frame_numbers(self) -> npt.NDArray[np.int64]: ...
    @property
    def pts(self) -> npt.NDArray[np.float64]:
        """Presentation time in seconds per slot (monotonic across file loops)."""
    @property
    def capture_ns(self) -> npt.NDArray[np.int64]:
        """Wall-clock time (ns since the epoch) when each frame left the decoder."""
    @property
    def scale(self) -> npt.NDArray[np.float32]:
        """(N, 2) scale_x, scale_y: x_model = x_frame * scale_x + pad_x."""
    @property
    def pad(self) -> npt.NDArray[np.float32]:
        """(N, 2) pad_x, pad_y in model pixels."""
    @property
    def frame_size(self) -> npt.NDArray[np.int32]:
        """(N, 2) width, height of each source frame."""
    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """False where a frame could not be converted (the slot holds padding)."""
    def release(self) -> None:
        """Give the buffer back now (array views taken earlier keep it alive)."""
    def __enter__(self) -> Batch: ...
    def __exit__(self, *args: object) -> None: ...

class Pipeline:
    """Streams decoded in C++ threads; sampled frames batched into one tensor."""

    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 640,
        resize: ResizeMode = ...,
        dtype: DType = ...,
        pad_value: int = 114,
        max_batch: int = 8,
        buffers: int = 3,
        resize_filter: ResizeFilter = ...,
        batch_device: int = -1,
    ) -> None: ...
    @property
    def batch_device(self) -> int:
        """CUDA device holding a copy of every batch (-1: host memory only)."""
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def resize(self) -> ResizeMode: ...
    @property
    def dtype(self) -> DType: ...
    @property
    def resize_filter(self) -> ResizeFilter: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def add_stream(self, config: StreamConfig) -> None:
        """Start a stream. ValueError for a bad config or a camera_id already present."""
    def remove_stream(self, camera_id: str) -> bool:
        """Stop a stream and wait for its thread; False when there is no such stream."""
    def camera_ids(self) -> list[str]: ...
    def stats(self) -> list[dict[str, Any]]:
        """Per-stream counters and state; see docs/engine.md for every key."""
    def stream_stats(self, camera_id: str) -> dict[str, Any]: ...
    def packet_ring(self, camera_id: str) -> dict[str, Any]:
        """What the evidence packet ring of a stream holds now."""
    def write_clip(self, camera_id: str, t0_s: float, t1_s: float, path: str) -> dict[str, Any]:
        """Remux the packet ring from the keyframe at or before t0_s through t1_s (stream time,
        as Batch.pts) into an MP4 at path: {path, packets, keyframe_start, first_s, last_s,
        duration_s, bytes, codec}."""
    def latest_frame(self, camera_id: str) -> tuple[npt.NDArray[np.uint8], int] | None:
        """(BGR uint8 image H x W x 3, frame number) of the latest sampled frame, or None."""
    def snapshot(self, camera_id: str) -> dict[str, Any] | None:
        """The latest sampled frame with its time: {image (BGR uint8 H x W x 3), frame, pts
        (stream time, s), t_ns (capture wall clock, ns)}, or None before the first frame."""
    def next_batch(self, max_batch: int = 8, max_wait_ms: int = 50) -> Batch | None:
        """The next batch of up to max_batch sampled frames, or None after max_wait_ms."""
    def configure_tracking(
        self,
        *,
        track_thresh: float = 0.5,
        match_thresh: float = 0.8,
        track_buffer: int = 30,
        speed_window_s: float = 1.0,
        duplicate_iou: float = 0.4,
        crowd_class: int = 0,
        speed_long_window_s: float = 3.0,
        speed_curvature_z: float = 5.0,
        speed_filter: str = "kalman",
        speed_accel: float = 3.0,
        speed_noise_px: float = 1.5,
        speed_noise_frac: float = 0.08,
        bottom_bias: Sequence[tuple[float, float]] | None = None,
        bottom_bias_classes: Sequence[int] = (1, 2, 3, 4, 5),
        recover_s: float = 2.0,
        recover_gate_m: float = 1.5,
        recover_min_s: float = 0.5,
        recover_classes: Sequence[int] = (1, 2, 3, 4, 5),
    ) -> None:
        """Settings of the per-camera ByteTrackers made from now on. bottom_bias: the model's
        (box height, box bottom below the ground contact) pairs in its input pixels (its card's
        box_bias), scaled to each camera's frame by its letterbox. recover_*: id recovery
        (ByteTracker)."""
    def set_calibration(self, camera_id: str, image_to_ground: npt.ArrayLike) -> None:
        """A camera's image -> ground (metres) homography: its tracks get ground_xy, speed_kmh."""
    def track(self, batch: Batch, detections: Sequence[Detections | None]) -> list[Tracks]:
        """Update each camera's tracker with its slot's detections; one Tracks per slot."""
    def submit(
        self,
        batch: Batch,
        outputs: Sequence[npt.ArrayLike],
        *,
        format: str,
        input_w: int,
        input_h: int,
        class_map: npt.ArrayLike,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
        class_score_thresholds: npt.ArrayLike | None = None,
    ) -> list[Detections]:
        """Raw outputs for a batch -> one Detections per slot in frame pixels, the slots'
        geometry read in C++ (slots that failed conversion get none)."""
    def close(self) -> None:
        """Stop every stream; next_batch returns None from then on."""
    def __enter__(self) -> Pipeline: ...
    def __exit__(self, *args: object) -> None: ...

class Detections:
    """Detections of one frame, struct of arrays (read-only numpy views).

    xyxy (N, 4) float32 in frame pixels, score (N,) float32, class_id (N,) int32 (appliance
    classes: 0 person, 1 bicycle, 2 car, 3 motorcycle, 4 bus, 5 truck).
    """

    def __init__(
        self,
        xyxy: npt.ArrayLike = ...,
        score: npt.ArrayLike = ...,
        class_id: npt.ArrayLike = ...,
    ) -> None: ...
    def __len__(self) -> int: ...
    @property
    def xyxy(self) -> npt.NDArray[np.float32]: ...
    @property
    def score(self) -> npt.NDArray[np.float32]: ...
    @property
    def class_id(self) -> npt.NDArray[np.int32]: ...

#: (id int64, cls int32, score float32, xyxy float32 (N,4), gx/gy/kmh float32 (N,3))
TrackArrays: TypeAlias = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
]

def decode_tracks_payload(
    payload: bytes, max_array_len: int, max_map_len: int, max_str_len: int
) -> tuple[dict[str, Any], *TrackArrays] | None:
    """A whole tracks.<cam> payload parsed in C++: (header without 'tracks', id, cls, score,
    xyxy, gx/gy/kmh), or None when anything is off the fast path (decode in Python then)."""

def track_rows_to_arrays(rows: object) -> TrackArrays | None:
    """Rows of a tracks message (list of lists) -> (id, cls, score, xyxy (N,4), gx/gy/kmh (N,3)),
    or None when a value is not what the schema allows (the codec then names the field)."""

def postprocess(
    outputs: Sequence[npt.ArrayLike],
    *,
    format: str,
    scale: npt.ArrayLike,
    pad: npt.ArrayLike,
    frame_size: npt.ArrayLike,
    input_w: int,
    input_h: int,
    class_map: npt.ArrayLike,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    class_score_thresholds: npt.ArrayLike | None = None,
    valid: npt.ArrayLike | None = None,
) -> list[Detections]:
    """Raw model outputs (format yolo, yolov5, boxes_scores or end2end) to Detections per slot.

    scale, pad and frame_size are a Batch's (N, 2) arrays; class_map maps model class ids to
    appliance class ids (-1 drops); valid, a Batch's (N,) flags: False slots get no detections.
    ValueError with the reason for a wrong shape or setting.
    """

class TrackState(enum.IntEnum):
    """Life of a track: tentative -> confirmed <-> lost -> removed."""

    tentative = 0
    confirmed = 1
    lost = 2
    removed = 3

class Tracks:
    """Tracks output by one ByteTracker.update, struct of arrays (read-only numpy views)."""

    def __len__(self) -> int: ...
    @property
    def track_id(self) -> npt.NDArray[np.int64]: ...
    @property
    def xyxy(self) -> npt.NDArray[np.float32]: ...
    @property
    def score(self) -> npt.NDArray[np.float32]: ...
    @property
    def class_id(self) -> npt.NDArray[np.int32]: ...
    @property
    def ground_xy(self) -> npt.NDArray[np.float32]:
        """(N, 2) metres on the ground of each box's bottom centre; NaN without a calibration."""
    @property
    def speed_kmh(self) -> npt.NDArray[np.float32]:
        """(N,) ground speed over speed_window_s; NaN when unknown."""
    @property
    def state(self) -> npt.NDArray[np.int8]:
        """TrackState values (confirmed for every output row)."""

class ByteTracker:
    """ByteTrack multi-object tracker for one stream (docs/tracking.md)."""

    def __init__(
        self,
        track_thresh: float = 0.5,
        match_thresh: float = 0.8,
        track_buffer: int = 30,
        frame_rate: float = 10.0,
        *,
        low_thresh: float = 0.1,
        second_match_thresh: float = 0.5,
        unconfirmed_match_thresh: float = 0.7,
        new_track_thresh: float | None = None,
        fuse_score: bool = True,
        trajectory_length: int = 30,
        speed_window_s: float = 1.0,
        duplicate_iou: float = 0.4,
        crowd_class: int = 0,
        speed_long_window_s: float = 3.0,
        speed_curvature_z: float = 5.0,
        speed_filter: str = "kalman",
        speed_accel: float = 3.0,
        speed_noise_px: float = 1.5,
        speed_noise_frac: float = 0.08,
        bottom_bias: Sequence[tuple[float, float]] | None = None,
        bottom_bias_classes: Sequence[int] = (1, 2, 3, 4, 5),
        bottom_bias_scale: float = 1.0,
        recover_s: float = 2.0,
        recover_gate_m: float = 1.5,
        recover_min_s: float = 0.5,
        recover_classes: Sequence[int] = (1, 2, 3, 4, 5),
    ) -> None:
        """ValueError naming the setting when one is out of range. bottom_bias: (box height,
        box bottom below the ground contact) pairs in the model's input pixels, taken off the box
        bottom of bottom_bias_classes before the ground position; bottom_bias_scale: frame pixels
        per input pixel. recover_s: a track of recover_classes matched for recover_min_s or more
        and lost past the buffer gives its id to a new track confirmed, within recover_s of its
        last match, where it would be by then (recover_gate_m on the ground; 0: off)."""
    def update(
        self,
        xyxy: npt.ArrayLike,
        scores: npt.ArrayLike,
        class_ids: npt.ArrayLike,
        timestamp: float | None = None,
    ) -> Tracks:
        """One frame's detections -> the confirmed tracks matched in it (GIL released).

        xyxy (N, 4), scores (N,), class_ids (N,); ValueError naming the argument for a wrong
        shape or a non-finite number. timestamp in seconds (default: frame index / frame_rate).
        """
    def reset(self) -> None:
        """Forget every track; ids start at 1 again."""
    def set_calibration(self, image_to_ground: npt.ArrayLike) -> None:
        """3x3 image (pixels) -> ground (metres) homography; ValueError if singular."""
    def clear_calibration(self) -> None:
        """Back to image coordinates only (ground_xy and speed_kmh NaN)."""
    @property
    def calibrated(self) -> bool: ...
    def trajectory(self, track_id: int) -> npt.NDArray[np.float64]:
        """(K, 3) rows of t seconds, cx, cy of a live track, oldest first; (0, 3) if none."""
    @property
    def frame_count(self) -> int: ...
    @property
    def max_frames_lost(self) -> int:
        """int(frame_rate / 30 * track_buffer): frames a lost track is kept."""
    @property
    def track_thresh(self) -> float: ...
    @property
    def match_thresh(self) -> float: ...
    @property
    def track_buffer(self) -> int: ...
    @property
    def frame_rate(self) -> float: ...

class Publisher:
    """The core's bus publisher: tracks.<camera> and health.<camera> to the broker's XSUB
    endpoint (docs/events.md). Never blocks; drops are counted and still take a sequence number."""

    def __init__(self, endpoint: str, sndhwm: int = ..., linger_ms: int = ...) -> None: ...
    def publish_tracks(
        self,
        camera: str,
        frame: int,
        pts: float,
        t_ns: int,
        width: int,
        height: int,
        track_id: npt.ArrayLike,
        xyxy: npt.ArrayLike,
        score: npt.ArrayLike,
        class_id: npt.ArrayLike,
        ground_xy: npt.ArrayLike | None = None,
        speed_kmh: npt.ArrayLike | None = None,
    ) -> bool: ...
    def publish_health(
        self,
        camera: str,
        stats: dict[str, Any],
        infer_ms: float = 0.0,
        track_ms: float = 0.0,
        t_ns: int = 0,
    ) -> bool: ...
    def publish_raw(self, topic: str, payload: bytes) -> bool: ...
    def next_seq(self, topic: str) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def sndhwm(self) -> int: ...
    @property
    def linger_ms(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Publisher: ...
    def __exit__(self, *args: object) -> None: ...
