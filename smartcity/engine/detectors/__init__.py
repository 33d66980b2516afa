"""Detector backends: raw model outputs from a batch tensor, and `detect` for whole batches.

card = load_card("models/person-ssdlite")
detector = OnnxRuntimeDetector(card)
pipeline = smartcity.Pipeline(**card.pipeline_options(), max_batch=card.max_batch)
...
with pipeline.next_batch(card.max_batch, 50) as batch:
    for dets in detect(detector, batch):   # one smartcity.Detections per slot
        ...
"""

from smartcity.engine.detectors.base import Detector, detect, prepare_input
from smartcity.engine.detectors.ort import OnnxRuntimeDetector

__all__ = ["Detector", "OnnxRuntimeDetector", "detect", "prepare_input"]
