"""ONNX Runtime backend: the CUDA provider where onnxruntime-gpu and a GPU are present, else CPU.

The session never falls back silently: asked for CUDA (`device="cuda"`) and given the CPU
provider, the detector raises BackendUnavailable; left to choose (`device="auto"`), it logs
which provider it got and why. `provider` always says what the session really runs on.

Device tensors go in through IO binding: `infer_device(ptr, shape, dtype)` binds memory that is
already on the session's device (the core's device batch on the GPU path; any host pointer on
the CPU path) without a copy, and binds the outputs so ONNX Runtime allocates them on the
device and copies them to the host once, for the C++ post-processing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from smartcity.engine.detectors.base import BackendUnavailable, prepare_input, takes_core_tensor
from smartcity.engine.models import ModelCard

log = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"

# CUDA provider options the appliance sets (documented in ONNX Runtime's CUDA EP page).
DEFAULT_CUDA_OPTIONS: dict[str, Any] = {
    "arena_extend_strategy": "kSameAsRequested",  # the batch shape is steady: no 2x growth
    "cudnn_conv_algo_search": "HEURISTIC",  # EXHAUSTIVE costs seconds at start for a few %
    "do_copy_in_default_stream": True,
}


def providers_available() -> list[str]:
    """Execution providers this backend would use, best first."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in (CUDA_EP, CPU_EP) if p in have]


class OnnxRuntimeDetector:
    """One ONNX Runtime session for a model card.

    device: "cpu", "cuda" (CUDA provider or BackendUnavailable) or "auto" (CUDA where it is
    available, else CPU, logged). `providers` (a list of provider names or (name, options)
    pairs) overrides `device` entirely, as ONNX Runtime's own argument.
    intra_op_threads: threads one inference may use (the appliance sets it from its config).
    spin_wait: let ONNX Runtime's pool threads spin between inferences (its default). Off here:
    the core's decoder threads share the cores, and spinning took 15-25 % of the pipeline's
    frames/s at 2 threads in bench/detect.py.
    A model whose batch is fixed in the ONNX file (person-ssdlite: 1) is run that many slots at
    a time, the last group padded with zeros; a dynamic batch runs the whole tensor at once.
    """

    def __init__(
        self,
        card: ModelCard,
        intra_op_threads: int = 1,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        *,
        device: str = "auto",
        device_id: int = 0,
        cuda_options: Mapping[str, Any] | None = None,
        spin_wait: bool = False,
    ) -> None:
        import onnxruntime as ort

        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
        self._card = card
        self.device_id = device_id
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        self.intra_op_threads = intra_op_threads

        have = ort.get_available_providers()
        cuda_opts = {**DEFAULT_CUDA_OPTIONS, **(cuda_options or {}), "device_id": device_id}
        chosen: list[Any]
        if providers is not None:
            chosen = list(providers)
            wants_cuda = any((p if isinstance(p, str) else p[0]) == CUDA_EP for p in chosen)
        elif device == "cpu":
            chosen, wants_cuda = [CPU_EP], False
        elif device == "cuda":
            if CUDA_EP not in have:
                raise BackendUnavailable(
                    "onnxruntime-cuda",
                    f"this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider "
                    f"(providers: {', '.join(have)}): install onnxruntime-gpu instead of "
                    "onnxruntime",
                )
            chosen, wants_cuda = [(CUDA_EP, cuda_opts), CPU_EP], True
        else:
            wants_cuda = CUDA_EP in have
            chosen = [(CUDA_EP, cuda_opts), CPU_EP] if wants_cuda else [CPU_EP]

        self.session = ort.InferenceSession(
            str(card.onnx_path), sess_options=opts, providers=chosen
        )
        got = self.session.get_providers()
        self.provider: str = got[0] if got else CPU_EP
        if wants_cuda and self.provider != CUDA_EP:
            # ONNX Runtime drops a provider it cannot load (CUDA or cuDNN libraries missing, no
            # device) with only a log line of its own: say it here, and refuse when asked for.
            why = (
                f"ONNX Runtime gave the session {', '.join(got)} instead of {CUDA_EP}: the CUDA "
                "provider could not load (CUDA 12/13 runtime or cuDNN libraries missing, or no "
                "visible GPU; ONNX Runtime's own log says which)"
            )
            if device == "cuda" and providers is None:
                raise BackendUnavailable("onnxruntime-cuda", why)
            log.warning("%s: %s", card.name, why)
        else:
            log.info(
                "%s: ONNX Runtime %s on %s, %d intra-op thread(s)",
                card.name,
                ort.__version__,
                self.provider,
                intra_op_threads,
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

    @property
    def on_cuda(self) -> bool:
        return self.provider == CUDA_EP

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

    # -- IO binding ------------------------------------------------------------------------

    def _bind_outputs(self, io: Any) -> None:
        # Outputs stay where the model runs; copy_outputs_to_cpu brings them over once.
        dev = "cuda" if self.on_cuda else "cpu"
        for name in self._outputs:
            io.bind_output(name, dev, self.device_id if dev == "cuda" else 0)

    def _run_bound(self, io: Any) -> list[np.ndarray]:
        self._bind_outputs(io)
        io.synchronize_inputs()
        self.session.run_with_iobinding(io)
        io.synchronize_outputs()
        return [np.asarray(o) for o in io.copy_outputs_to_cpu()]

    def infer_ortvalue(self, value: Any) -> list[np.ndarray]:
        """Raw outputs for an onnxruntime.OrtValue holding the model's input (any device)."""
        io = self.session.io_binding()
        io.bind_ortvalue_input(self._card.input_name, value)
        return self._run_bound(io)

    def infer_device(
        self,
        ptr: int,
        shape: Sequence[int],
        dtype: Any = np.float32,
        *,
        device: str | None = None,
        device_id: int | None = None,
    ) -> list[np.ndarray]:
        """Raw outputs for an (N, 3, H, W) tensor at `ptr`, bound without a copy (IO binding).

        ptr: address of C-contiguous memory the caller owns and keeps alive for the call: device
        memory on the session's GPU when it runs on CUDA (the core's device batch), host memory
        on the CPU provider. device defaults to the session's ("cuda" or "cpu"). The tensor must
        already be what the model takes (takes_core_tensor(card, dtype)): no channel swap or
        scaling can be done on memory this call does not own. A fixed-batch model runs in groups
        by offsetting the pointer, so N must be a multiple of its batch.
        """
        card = self._card
        dt = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or shape[1:] != (3, card.input_height, card.input_width):
            raise ValueError(
                f"model {card.name} takes (N, 3, {card.input_height}, {card.input_width}), got "
                f"{shape}"
            )
        if shape[0] < 1:
            raise ValueError("empty batch tensor")
        if not takes_core_tensor(card, dt):
            raise ValueError(
                f"model {card.name} takes {card.dtype} {card.colour_order} in "
                f"[{card.value_range[0]:g}, {card.value_range[1]:g}]; a {dt} tensor would need "
                "a conversion: use infer() on the host tensor"
            )
        dev = device or ("cuda" if self.on_cuda else "cpu")
        did = self.device_id if device_id is None else device_id
        if dev == "cuda" and not self.on_cuda:
            raise ValueError(
                f"the session runs on {self.provider}: a CUDA pointer would be copied to the host "
                "by ONNX Runtime at every call; make the detector with device='cuda'"
            )
        n = shape[0]
        k = self.fixed_batch or n
        if n % k:
            raise ValueError(f"model {card.name} has a fixed batch of {k}: N={n} is no multiple")
        slot = k * int(np.prod(shape[1:])) * dt.itemsize
        parts: list[list[np.ndarray]] = []
        for g in range(n // k):
            io = self.session.io_binding()
            io.bind_input(card.input_name, dev, did, dt.type, [k, *shape[1:]], int(ptr) + g * slot)
            parts.append(self._run_bound(io))
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self._outputs))]
