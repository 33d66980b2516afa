"""`smartcity models quantize NAME --calibration VIDEO`: an int8 copy of a model for the CPU.

ONNX Runtime's static quantization (QDQ format, int8 weights per channel, uint8 activations,
min/max calibration, or with ``--calibrate percentile`` the 99.999th percentile of each
activation, which a few outliers do not stretch) on frames of the site's own video, taken
through the core's own pipeline with the card's preprocessing, so the calibration sees exactly
what the engine will feed. The result is a new model folder (``<NAME>-int8`` beside the
original by default) with its own card (file, sha256, name and a description of where it came
from) and the original's licence files.

Then the copy is checked against the original on other frames of the check video (the
calibration video unless ``--check`` names another): detections of the int8 model matched to
the float model's (same class, IoU >= 0.5), and the time per frame of each on one thread. A
copy that finds less than ``--min-agreement`` of the original's detections is removed and the
command fails: quantization is not safe for every model.

Needs the ``onnx`` package (``pip install onnx``) on the machine that quantizes; the resulting
model runs with plain ONNX Runtime.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from smartcity import _core
from smartcity.engine.models import CARD_FILE, ModelCard, load_card, sha256_of


def _version() -> str:
    return str(_core.build_info().get("version", "?"))


class QuantizeError(RuntimeError):
    """Quantization could not be done or its result is refused (the message says why)."""


@dataclass(frozen=True)
class Agreement:
    frames: int
    float_detections: int
    int8_detections: int
    matched: int  # float detections the int8 model also found (same class, IoU >= 0.5)
    float_ms: float  # per frame, one thread
    int8_ms: float
    int8_matched: int = 0  # int8 detections the float model also made (same class, IoU >= 0.5)

    @property
    def recall(self) -> float:
        return self.matched / self.float_detections if self.float_detections else 1.0

    @property
    def precision(self) -> float:
        """The int8 detections that the float model also made (two int8 boxes on one object,
        where NMS kept both, are two agreeing detections, not one)."""
        return self.int8_matched / self.int8_detections if self.int8_detections else 1.0


def model_inputs(
    card: ModelCard, video: str | Path, count: int, *, every_s: float, phase: int = 0
) -> list[np.ndarray]:
    """`count` model inputs (1, 3, H, W) from `video`, one every `every_s` seconds (phase 1:
    the frames half-way between those of phase 0), preprocessed by the core exactly as the
    engine does for this card."""
    counts = (count, 0) if phase == 0 else (0, count)
    return _both_phases(card, video, counts, every_s=every_s)[phase]


def _both_phases(
    card: ModelCard, video: str | Path, counts: tuple[int, int], *, every_s: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """model_inputs of phase 0 and phase 1 (counts[0] and counts[1] of them) in one pass over
    the video."""
    from smartcity.engine.detectors.base import prepare_input

    path = Path(video)
    if not path.is_file():
        raise QuantizeError(f"no such video {path}")
    pipeline = _core.Pipeline(**card.pipeline_options(), max_batch=1)
    out: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    seen = 0
    try:
        pipeline.add_stream(
            _core.StreamConfig(
                camera_id="calibration",
                url=str(path),
                analyze_fps=2.0 / every_s,
                block_when_busy=True,
                pre_event_s=0,
            )
        )
        idle = 0
        while any(len(o) < c for o, c in zip(out, counts, strict=True)) and idle < 50:
            batch = pipeline.next_batch(1, 100)
            if batch is None:
                idle += 1
                state = pipeline.stream_stats("calibration")["state"]
                if state in ("stopped", "failed"):
                    break
                continue
            idle = 0
            if batch.valid[0]:
                bucket = out[seen % 2]
                if len(bucket) < counts[seen % 2]:
                    bucket.append(prepare_input(card, np.array(batch.tensor[:1])))
                seen += 1
            batch.release()
        err = pipeline.stream_stats("calibration")["last_error"]
    finally:
        pipeline.close()
    if any(c > 0 and not o for o, c in zip(out, counts, strict=True)):
        raise QuantizeError(f"no frames could be read from {path}: {err or 'the video is empty'}")
    return out


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over prepared inputs."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter({name: x} for x in inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax
        pass


def _session(path: Path) -> Any:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def compare(original: ModelCard, quantized: ModelCard, inputs: list[np.ndarray]) -> Agreement:
    """The quantized model's detections against the original's on the same inputs (the card's
    post-processing, boxes in model pixels), and the time per frame of each."""
    sessions = {"f": _session(original.onnx_path), "q": _session(quantized.onnx_path)}
    dets: dict[str, list[Any]] = {"f": [], "q": []}
    times = {"f": 0.0, "q": 0.0}
    one = np.ones((1, 2), np.float32)
    size = np.array([[original.input_width, original.input_height]], np.int32)
    for x in inputs:
        for k, s in sessions.items():
            t0 = time.perf_counter()
            outputs = s.run(list(original.output_tensors), {original.input_name: x})
            times[k] += time.perf_counter() - t0
            (d,) = _core.postprocess(
                outputs,
                scale=one,
                pad=np.zeros((1, 2), np.float32),
                frame_size=size,
                **original.postprocess_options(),
            )
            dets[k].append(d)
    n_f, n_q, matched, q_matched = agreement_counts(dets["f"], dets["q"])
    n = len(inputs)
    return Agreement(
        n, n_f, n_q, matched, 1e3 * times["f"] / n, 1e3 * times["q"] / n, int8_matched=q_matched
    )


def agreement_counts(original: list[Any], quantized: list[Any]) -> tuple[int, int, int, int]:
    """Per frame detections (``xyxy``, ``class_id``) of the two models -> (original's count,
    quantized's count, original's detections the quantized model also made, quantized
    detections the original also made); made = same class, IoU >= 0.5."""
    from smartcity.incidents.rules.oracle import iou_matrix

    matched = q_matched = n_f = n_q = 0
    for f, q in zip(original, quantized, strict=True):
        n_f, n_q = n_f + len(f.class_id), n_q + len(q.class_id)
        if len(f.class_id) and len(q.class_id):
            same = np.asarray(f.class_id)[:, None] == np.asarray(q.class_id)[None, :]
            hit = (iou_matrix(np.asarray(f.xyxy), np.asarray(q.xyxy)) >= 0.5) & same
            matched += int(hit.any(axis=1).sum())
            q_matched += int(hit.any(axis=0).sum())
    return n_f, n_q, matched, q_matched


def quantize(
    card: ModelCard,
    calibration: str | Path,
    out_dir: str | Path,
    *,
    frames: int = 60,
    every_s: float = 1.0,
    check: str | Path | None = None,
    check_frames: int = 60,
    min_agreement: float = 0.9,
    calibrate: str = "minmax",
) -> tuple[ModelCard, Agreement]:
    """Writes the int8 model folder `out_dir` and checks it (see the module's doc)."""
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise QuantizeError(
            f"quantizing needs the onnx package ({e}): pip install onnx (only where models are "
            "quantized; the result runs with plain ONNX Runtime)"
        ) from None
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if calibrate not in methods:
        raise QuantizeError(f"calibrate: {calibrate!r} is not one of {', '.join(methods)}")
    out = Path(out_dir)
    if out.exists():
        raise QuantizeError(f"{out} exists already: remove it or name another --out")
    # Checked on frames the calibration did not see: the check video, or the calibration
    # video's frames half a step later (taken in the same pass).
    if check is not None:
        inputs = model_inputs(card, calibration, frames, every_s=every_s)
        held_out = model_inputs(card, check, check_frames, every_s=every_s)
    else:
        inputs, held_out = _both_phases(card, calibration, (frames, check_frames), every_s=every_s)
    name = out.name
    onnx_name = f"{name}.onnx"
    with tempfile.TemporaryDirectory(prefix="smartcity-quantize-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(card.onnx_path), str(pre), skip_symbolic_shape=True)
        tried: list[str] = []
        for ops, what in _STRATEGIES:
            staged = Path(tmp) / what / name
            staged.mkdir(parents=True)
            quantize_static(
                str(pre),
                str(staged / onnx_name),
                _Reader(card.input_name, inputs),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[calibrate],
                op_types_to_quantize=ops,
                extra_options={"CalibPercentile": PERCENTILE} if calibrate == "percentile" else {},
            )
            _write_card(
                card, staged, onnx_name, len(inputs), Path(calibration).name, what, calibrate
            )
            agreement = compare(card, load_card(staged), held_out)
            if agreement.recall >= min_agreement:
                break
            tried.append(
                f"{what}: {agreement.matched} of {agreement.float_detections} "
                f"({agreement.recall:.1%})"
            )
        else:
            raise QuantizeError(
                f"the int8 model does not find enough of the original's detections (below "
                f"{min_agreement:.0%}; {'; '.join(tried)}): not written. This model does not "
                "quantize well here; keep the original"
            )
        shutil.copytree(staged, out)
    return load_card(out), agreement


#: --calibrate percentile: the share of each activation's |values| kept inside its int8 range
PERCENTILE = 99.999

#: What is quantized, tried in order until the copy agrees with the original: every operator
#: ONNX Runtime can (fastest where it works), then the compute-heavy ones only, so that heads
#: that concatenate boxes (hundreds of pixels) with scores (0..1) into one tensor stay in float
#: (one int8 scale for both rounds the scores to nothing: YOLO-style outputs).
_STRATEGIES: tuple[tuple[list[str] | None, str], ...] = (
    (None, "every operator"),
    (["Conv", "MatMul", "Gemm"], "Conv, MatMul and Gemm only"),
)


def _write_card(
    card: ModelCard,
    folder: Path,
    onnx_name: str,
    frames: int,
    video: str,
    what: str,
    calibrate: str = "minmax",
) -> None:
    data = yaml.safe_load((card.directory / CARD_FILE).read_text())
    data["name"] = folder.name
    data["file"] = onnx_name
    data["sha256"] = sha256_of(folder / onnx_name)
    scope = "" if what == "every operator" else f" ({what})"
    data["description"] = (
        f"{card.name} quantized to int8{scope} (ONNX Runtime static quantization, QDQ, int8 "
        f"weights per channel, uint8 activations, "
        f"{'min/max' if calibrate == 'minmax' else f'{PERCENTILE:g}th percentile'} "
        f"calibration on {frames} "
        f"frames of {video}) by `smartcity models quantize`. "
        + str(data.get("description", "")).strip()
    )
    data["source"] = (
        f"{str(data.get('source', '')).strip()} Quantized from {card.name} (onnx sha256 "
        f"{card.sha256[:16]}...) by smartcity {_version()}."
    ).strip()
    (folder / CARD_FILE).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    for f in card.directory.iterdir():
        if f.is_file() and f.name.upper().startswith(("LICENSE", "LICENCE", "NOTICE")):
            shutil.copy2(f, folder / f.name)


def cmd_quantize(args: Any) -> int:
    from smartcity.engine.models import CardError, default_models_root

    root = Path(args.root) if args.root else default_models_root()
    src = root / args.name
    try:
        card = load_card(src)
    except CardError as e:
        print(f"smartcity models quantize: {e}", file=sys.stderr)
        return 2 if not (src / CARD_FILE).is_file() else 1
    out = Path(args.out) if args.out else root / f"{args.name}-int8"
    try:
        new, a = quantize(
            card,
            args.calibration,
            out,
            frames=args.frames,
            every_s=args.every_s,
            check=args.check,
            check_frames=args.check_frames,
            min_agreement=args.min_agreement,
            calibrate=args.calibrate,
        )
    except QuantizeError as e:
        print(f"smartcity models quantize: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (sha256 {new.sha256[:12]}..., {new.onnx_path.stat().st_size / 1e6:.1f} MB)")
    print(
        f"checked on {a.frames} frames: the int8 model found {a.matched} of the original's "
        f"{a.float_detections} detections ({a.recall:.1%}), {a.int8_detections} in all "
        f"(precision against the original {a.precision:.1%}); "
        f"{a.float_ms:.2f} -> {a.int8_ms:.2f} ms a frame on one thread "
        f"({a.float_ms / a.int8_ms:.2f}x)"
    )
    return 0
