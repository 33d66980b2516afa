"""smartcity: video analytics appliance for police and traffic command centers."""

from smartcity._core import (
    Batch,
    Detections,
    DType,
    Pipeline,
    ResizeFilter,
    ResizeMode,
    SlotGeometry,
    StreamConfig,
    StreamState,
    UnknownCameraError,
    build_info,
    compute_geometry,
    postprocess,
    redact_url,
)

__version__ = build_info()["version"]

__all__ = [
    "Batch",
    "DType",
    "Detections",
    "Pipeline",
    "ResizeFilter",
    "ResizeMode",
    "SlotGeometry",
    "StreamConfig",
    "StreamState",
    "UnknownCameraError",
    "__version__",
    "build_info",
    "compute_geometry",
    "postprocess",
    "redact_url",
]
