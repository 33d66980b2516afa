"""ONNX Runtime backend: CUDA provider where onnxruntime-gpu and a GPU are present, else CPU."""

from __future__ import annotations

import numpy as np

from smartcity.engine.detectors.base import prepare_input
from smartcity.engine.models import ModelCard


def providers_available() -> list[str]:
    """Execution providers this backend would use, best first."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class OnnxRuntimeDetector:
    """One ONNX Runtime session for a model card.

    intra_op_threads: threads one inference may use (the appliance sets it from its config).
    A model whose batch is fixed in the ONNX file (person-ssdlite: 1) is run that many slots at
    a time, the last group padded with zeros; a dynamic batch runs the whole tensor at once.
    """

    def __init__(
        self,
        card: ModelCard,
        intra_op_threads: int = 1,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        self._card = card
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(card.onnx_path),
            sess_options=opts,
            providers=providers if providers is not None else providers_available(),
        )
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.fixed_batch: int | None = (
            batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        )
        self._outputs = list(card.output_tensors)

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def providers(self) -> list[str]:
        """The providers the session really got (ONNX Runtime may refuse one)."""
        return list(self.session.get_providers())

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(self._outputs, {self._card.input_name: x})
        return [np.asarray(o) for o in outs]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for an (N, 3, H, W) batch tensor, in the card's output.tensors order."""
        x = prepare_input(self._card, tensor)
        n = x.shape[0]
        if n == 0:
            raise ValueError("empty batch tensor")
        k = self.fixed_batch
        if k is None or n == k:
            return self._run(x)
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, k):
            chunk = x[start : start + k]
            if chunk.shape[0] < k:
                pad = np.zeros((k - chunk.shape[0], *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            parts.append(self._run(chunk))
        return [np.concatenate([p[i] for p in parts])[:n] for i in range(len(self._outputs))]
