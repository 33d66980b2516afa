"""Detector backends: raw model outputs from a batch tensor, and `detect` for whole batches.

card = load_card("models/person-ssdlite")
detector = create_detector(card, "auto", intra_op_threads=1)   # TensorRT, ORT CUDA, ORT CPU
pipeline = smartcity.Pipeline(**card.pipeline_options(), max_batch=card.max_batch)
...
with pipeline.next_batch(card.max_batch, 50) as batch:
    for dets in detect(detector, batch):   # one smartcity.Detections per slot
        ...
"""

from smartcity.engine.detectors.backends import (
    BACKENDS,
    CHOICES,
    BackendProbe,
    choose_backend,
    create_detector,
    probe_backends,
)
from smartcity.engine.detectors.base import (
    BackendUnavailable,
    Detector,
    DeviceDetector,
    batch_device_of,
    detect,
    infer_batch,
    prepare_input,
    takes_core_tensor,
)
from smartcity.engine.detectors.ort import OnnxRuntimeDetector

__all__ = [
    "BACKENDS",
    "CHOICES",
    "BackendProbe",
    "BackendUnavailable",
    "Detector",
    "DeviceDetector",
    "OnnxRuntimeDetector",
    "batch_device_of",
    "choose_backend",
    "create_detector",
    "detect",
    "infer_batch",
    "prepare_input",
    "probe_backends",
    "takes_core_tensor",
]
