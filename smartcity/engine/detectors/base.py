"""The detector protocol, input preparation and the batch -> Detections helper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from smartcity import _core
from smartcity.engine.models import ModelCard


class BackendUnavailable(RuntimeError):
    """A backend asked for that this machine cannot run; the message says what is missing."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"backend {backend} is not available: {reason}")
        self.backend = backend
        self.reason = reason


class Detector(Protocol):
    """A model behind one verb: infer(batch tensor) -> raw outputs in the card's tensor order."""

    @property
    def card(self) -> ModelCard: ...

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]: ...


@runtime_checkable
class DeviceDetector(Detector, Protocol):
    """A detector that also takes a batch already in device memory (the GPU path).

    infer_device(ptr, shape, dtype): ptr is the address of a C-contiguous (N, 3, H, W) tensor the
    caller owns and keeps alive for the call; outputs come back as host arrays.
    """

    def infer_device(
        self, ptr: int, shape: Sequence[int], dtype: Any = np.float32
    ) -> list[np.ndarray]: ...


def takes_core_tensor(card: ModelCard, dtype: np.dtype | type) -> bool:
    """True when the model takes the core's tensor of this dtype as is (no swap, no scaling).

    The core writes RGB planes, float32 in [0, 1] or uint8 in [0, 255]; device pointers (GPU
    path) can only be handed over when this holds.
    """
    dt = np.dtype(dtype)
    if card.colour_order != "rgb" or dt.name != card.dtype:
        return False
    return dt == np.uint8 or card.value_range[1] == 1.0


def prepare_input(card: ModelCard, tensor: np.ndarray) -> np.ndarray:
    """The (N, 3, H, W) RGB tensor of a Batch (float32 in [0, 1] or uint8) as the model takes it.

    No copy when the pipeline was made with card.pipeline_options() and the model takes RGB in
    the core's range; otherwise channels are swapped and values scaled here.
    """
    if tensor.ndim != 4 or tensor.shape[1:] != (3, card.input_height, card.input_width):
        raise ValueError(
            f"model {card.name} takes (N, 3, {card.input_height}, {card.input_width}), got "
            f"{tensor.shape}: make the pipeline with card.pipeline_options()"
        )
    x = tensor[:, ::-1] if card.colour_order == "bgr" else tensor
    if card.dtype == "float32":
        if x.dtype == np.uint8:
            x = x.astype(np.float32) * np.float32(card.value_range[1] / 255.0)
        elif card.value_range[1] != 1.0:
            x = x * np.float32(card.value_range[1])
    elif x.dtype != np.uint8:
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def batch_device_of(detector: Detector) -> int:
    """The CUDA device whose memory the detector can read a batch from without a copy through
    the host (a GPU backend with infer_device, given the core's tensor as it is), else -1.

    The engine makes its Pipeline with batch_device set to this: frames decoded by NVDEC then
    stay on the GPU from the decoder to the model (smartcity/_core Batch.device_ptr)."""
    if not isinstance(detector, DeviceDetector) or not getattr(detector, "on_cuda", False):
        return -1
    card = detector.card
    dtype = np.uint8 if card.dtype == "uint8" else np.float32
    if not takes_core_tensor(card, dtype):
        return -1
    takes = getattr(detector, "input_dtype", None)  # TensorRT: the built engine's input type
    if takes is not None and np.dtype(takes) != np.dtype(dtype):
        return -1
    return int(getattr(detector, "device_id", 0))


def infer_batch(detector: Detector, batch: _core.Batch) -> list[np.ndarray]:
    """The model's raw outputs for a batch: a device batch (batch.on_device) goes to the
    detector's infer_device as a device pointer, any other batch to infer as the host tensor."""
    if batch.on_device and isinstance(detector, DeviceDetector):
        return detector.infer_device(batch.device_ptr(), batch.shape, np.dtype(batch.dtype))
    return detector.infer(batch.tensor)


def detect(
    detector: Detector, batch: _core.Batch, pipeline: _core.Pipeline | None = None
) -> list[_core.Detections]:
    """Run the model on a batch and decode its outputs in C++: one Detections per slot.

    With the batch's pipeline, Pipeline.submit decodes them with each slot's geometry read in
    C++; without it, smartcity.postprocess with the batch's geometry arrays (same result).
    Slots whose frame could not be converted (batch.valid False) get no detections.
    """
    card = detector.card
    outputs = infer_batch(detector, batch)
    if pipeline is not None:
        return pipeline.submit(batch, outputs, **card.postprocess_options())
    return _core.postprocess(
        outputs,
        scale=batch.scale,
        pad=batch.pad,
        frame_size=batch.frame_size,
        valid=batch.valid,
        **card.postprocess_options(),
    )
