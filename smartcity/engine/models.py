"""Model cards: models/<name>/model.yaml plus the ONNX file it names (docs/detection.md).

A card that is wrong is refused at load with a CardError naming the field, e.g.
``models/foo/model.yaml: output.format: unknown format 'yolox' (known: yolo, ...)``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from smartcity.classes import APPLIANCE_CLASSES

OUTPUT_FORMATS = ("yolo", "yolov5", "boxes_scores", "end2end")
# The appliance's classes; a class id is the index in this tuple.
CARD_FILE = "model.yaml"
# Output tensors each format takes, in order.
_TENSOR_COUNT = {"yolo": 1, "yolov5": 1, "boxes_scores": 2, "end2end": 1}
_ORT_DTYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


def default_models_root() -> Path:
    """$SMARTCITY_MODELS, else the models/ folder of the source tree."""
    env = os.environ.get("SMARTCITY_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


class CardError(ValueError):
    """A model card that cannot be used; `field` names what is wrong (dotted path)."""

    def __init__(self, card: Path, field: str, reason: str) -> None:
        super().__init__(f"{card}: {field}: {reason}")
        self.card = card
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ModelCard:
    """What the appliance needs to know to feed a model and decode its outputs."""

    name: str
    directory: Path
    file: str  # the ONNX file, relative to directory
    sha256: str
    licence: str
    source: str
    description: str
    input_name: str
    input_width: int
    input_height: int
    colour_order: str  # "rgb" | "bgr"
    value_range: tuple[float, float]  # (0, 1) | (0, 255)
    resize: str  # "letterbox" | "stretch"
    resize_filter: str  # "auto" | "bilinear" | "fast_bilinear" | "area" (smartcity.ResizeFilter)
    dtype: str  # "float32" | "uint8"
    max_batch: int
    output_format: str
    output_tensors: tuple[str, ...]
    class_names: tuple[str, ...]  # model class ids in order
    class_mapping: dict[str, str]  # model class name -> appliance class name
    score_threshold: float
    iou_threshold: float
    max_detections: int
    # appliance class name -> the score its detections need (classes not named: score_threshold)
    class_score_thresholds: dict[str, float] = field(default_factory=dict)
    # (box height, box bottom below the ground contact), input pixels (docs/detection.md)
    box_bias: tuple[tuple[float, float], ...] = ()
    box_bias_classes: tuple[str, ...] = ()  # appliance classes the bias is taken off

    @property
    def onnx_path(self) -> Path:
        return self.directory / self.file

    @property
    def class_map(self) -> np.ndarray:
        """int32 array: model class id -> appliance class id, -1 where the class is dropped."""
        return np.array(
            [
                APPLIANCE_CLASSES.index(self.class_mapping[n]) if n in self.class_mapping else -1
                for n in self.class_names
            ],
            dtype=np.int32,
        )

    def class_thresholds(self) -> np.ndarray | None:
        """float32 per appliance class id: the score its detections need (score_threshold where
        the card names no threshold of its own); None when it names none."""
        if not self.class_score_thresholds:
            return None
        return np.array(
            [self.class_score_thresholds.get(c, self.score_threshold) for c in APPLIANCE_CLASSES],
            dtype=np.float32,
        )

    def postprocess_options(self) -> dict[str, Any]:
        """Keyword arguments for smartcity.postprocess and Pipeline.submit (all but the
        outputs and the geometry)."""
        return {
            "format": self.output_format,
            "input_w": self.input_width,
            "input_h": self.input_height,
            "class_map": self.class_map,
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_detections": self.max_detections,
            "class_score_thresholds": self.class_thresholds(),
        }

    def tracking_options(self) -> dict[str, Any]:
        """Keyword arguments for Pipeline.configure_tracking that come from the model: its
        box-bottom bias (none when the card has no box_bias)."""
        if not self.box_bias:
            return {}
        return {
            "bottom_bias": [tuple(p) for p in self.box_bias],
            "bottom_bias_classes": [APPLIANCE_CLASSES.index(c) for c in self.box_bias_classes],
        }

    def pipeline_options(self) -> dict[str, Any]:
        """Keyword arguments for smartcity.Pipeline that give this model its input tensor."""
        from smartcity import _core

        return {
            "width": self.input_width,
            "height": self.input_height,
            "resize": _core.ResizeMode.stretch
            if self.resize == "stretch"
            else _core.ResizeMode.letterbox,
            # The core writes uint8 0..255 or float32 0..1; other combinations are converted
            # by the detector.
            "dtype": _core.DType.uint8 if self.dtype == "uint8" else _core.DType.float32,
            "resize_filter": _core.ResizeFilter.__members__[self.resize_filter],
        }


class _Reader:
    """Typed access to the YAML mapping; every failure names the dotted field."""

    def __init__(self, path: Path, data: Any) -> None:
        self.path = path
        if not isinstance(data, dict):
            raise CardError(path, "(card)", "must be a YAML mapping")
        self.data = data

    def fail(self, field: str, reason: str) -> CardError:
        return CardError(self.path, field, reason)

    def get(self, field: str) -> Any:
        node: Any = self.data
        done: list[str] = []
        for part in field.split("."):
            if not isinstance(node, dict):
                raise self.fail(".".join(done), "must be a mapping")
            if part not in node or node[part] is None:
                raise self.fail(field, "missing")
            node = node[part]
            done.append(part)
        return node

    def opt(self, field: str, default: Any) -> Any:
        try:
            return self.get(field)
        except CardError as e:
            if e.reason == "missing":
                return default
            raise

    def str_(
        self, field: str, choices: tuple[str, ...] | None = None, default: str | None = None
    ) -> str:
        v = self.get(field) if default is None else self.opt(field, default)
        if not isinstance(v, str) or not v.strip():
            raise self.fail(field, f"must be a non-empty string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(field, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def int_(self, field: str, lo: int, hi: int, default: int | None = None) -> int:
        v = self.get(field) if default is None else self.opt(field, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(field, f"must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def float_(self, field: str, lo: float, hi: float, default: float | None = None) -> float:
        v = self.get(field) if default is None else self.opt(field, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise self.fail(field, f"must be a number in [{lo}, {hi}], got {v!r}")
        return float(v)

    def str_list(self, field: str) -> tuple[str, ...]:
        v = self.get(field)
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
            raise self.fail(field, f"must be a non-empty list of names, got {v!r}")
        if len(set(v)) != len(v):
            raise self.fail(field, "names must be unique")
        return tuple(v)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_card(directory: str | Path, *, check_file: bool = True) -> ModelCard:
    """Read and validate models/<name>/model.yaml; CardError naming the field when it is wrong.

    With check_file (the default) the ONNX file is also checked: it exists, its sha256 is the
    card's, ONNX Runtime can open it, and its input and outputs agree with the card.
    """
    directory = Path(directory)
    path = directory / CARD_FILE
    if not path.is_file():
        raise CardError(path, "(card)", "no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CardError(path, "(card)", f"not valid YAML: {e}") from None
    r = _Reader(path, data)

    name = r.str_("name")
    if name != directory.name:
        raise r.fail("name", f"must match the folder name {directory.name!r}, got {name!r}")
    file = r.str_("file")
    if Path(file).name != file:
        raise r.fail("file", f"must be a file name inside the model folder, got {file!r}")
    sha = r.str_("sha256").lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise r.fail("sha256", "must be 64 hexadecimal digits")
    rng = r.get("input.value_range")
    if rng not in ([0, 1], [0, 255]):
        raise r.fail("input.value_range", f"must be [0, 1] or [0, 255], got {rng!r}")
    fmt = r.get("output.format")
    if fmt not in OUTPUT_FORMATS:
        known = ", ".join(OUTPUT_FORMATS)
        raise r.fail("output.format", f"unknown format {fmt!r} (known: {known})")
    tensors = r.str_list("output.tensors")
    if len(tensors) != _TENSOR_COUNT[fmt]:
        raise r.fail(
            "output.tensors", f"{fmt} takes {_TENSOR_COUNT[fmt]} tensor(s), got {len(tensors)}"
        )
    names = r.str_list("classes.names")
    mapping = r.get("classes.map")
    if not isinstance(mapping, dict) or not mapping:
        raise r.fail("classes.map", "must map model class names to appliance classes")
    for k, v in mapping.items():
        if k not in names:
            raise r.fail(f"classes.map.{k}", "is not one of classes.names")
        if v not in APPLIANCE_CLASSES:
            raise r.fail(
                f"classes.map.{k}", f"must be one of {', '.join(APPLIANCE_CLASSES)}, got {v!r}"
            )
    per_class = r.opt("postprocess.class_score_thresholds", {})
    if not isinstance(per_class, dict):
        raise r.fail(
            "postprocess.class_score_thresholds", "must map appliance classes to scores in [0, 1]"
        )
    for k in per_class:
        if k not in APPLIANCE_CLASSES:
            raise r.fail(
                f"postprocess.class_score_thresholds.{k}",
                f"is not an appliance class ({', '.join(APPLIANCE_CLASSES)})",
            )
        r.float_(f"postprocess.class_score_thresholds.{k}", 0.0, 1.0)
    box_bias, box_bias_classes = _box_bias(r)
    dtype = r.str_("input.dtype", ("float32", "uint8"))
    if dtype == "uint8" and rng != [0, 255]:
        raise r.fail("input.value_range", "a uint8 input takes values in [0, 255]")

    card = ModelCard(
        name=name,
        directory=directory,
        file=file,
        sha256=sha,
        licence=r.str_("licence"),
        source=r.str_("source"),
        description=str(r.opt("description", "")).strip(),
        input_name=r.str_("input.name"),
        input_width=r.int_("input.width", 16, 8192),
        input_height=r.int_("input.height", 16, 8192),
        colour_order=r.str_("input.colour_order", ("rgb", "bgr")),
        value_range=(float(rng[0]), float(rng[1])),
        resize=r.str_("input.resize", ("letterbox", "stretch")),
        resize_filter=r.str_(
            "input.resize_filter", ("auto", "bilinear", "fast_bilinear", "area"), default="auto"
        ),
        dtype=dtype,
        max_batch=r.int_("input.max_batch", 1, 1024),
        output_format=fmt,
        output_tensors=tensors,
        class_names=names,
        class_mapping={str(k): str(v) for k, v in mapping.items()},
        score_threshold=r.float_("postprocess.score_threshold", 0.0, 1.0),
        iou_threshold=r.float_("postprocess.iou_threshold", 0.0, 1.0),
        max_detections=r.int_("postprocess.max_detections", 1, 100000, default=300),
        class_score_thresholds={str(k): float(v) for k, v in per_class.items()},
        box_bias=box_bias,
        box_bias_classes=box_bias_classes,
    )
    if check_file:
        check_onnx(card)
    return card


#: The classes a box_bias applies to when the card names none: the vehicles.
BOX_BIAS_DEFAULT_CLASSES = ("bicycle", "car", "motorcycle", "bus", "truck")


def _box_bias(r: _Reader) -> tuple[tuple[tuple[float, float], ...], tuple[str, ...]]:
    """The optional box_bias section: bottom_px, a list of [box height, offset] pairs in input
    pixels (heights strictly increasing, each offset at most half its height), and classes."""
    section = r.opt("box_bias", None)
    if section is None:
        return (), ()
    if not isinstance(section, dict):
        raise r.fail("box_bias", "must be a mapping with bottom_px (and classes)")
    for k in section:
        if k not in ("bottom_px", "classes", "measured"):
            raise r.fail(f"box_bias.{k}", "unknown field (known: bottom_px, classes, measured)")
    pts = r.get("box_bias.bottom_px")
    if not isinstance(pts, list) or not 1 <= len(pts) <= 64:
        raise r.fail("box_bias.bottom_px", "must be a list of 1 to 64 [height, offset] pairs")
    out: list[tuple[float, float]] = []
    for i, p in enumerate(pts):
        ok = isinstance(p, list) and len(p) == 2
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        if not ok or not all(np.isfinite(p)):
            raise r.fail(f"box_bias.bottom_px[{i}]", f"must be [height, offset] numbers, got {p!r}")
        h, off = float(p[0]), float(p[1])
        if h <= 0 or (out and h <= out[-1][0]):
            raise r.fail(f"box_bias.bottom_px[{i}]", "heights must be > 0 and increase strictly")
        if abs(off) > h / 2:
            raise r.fail(f"box_bias.bottom_px[{i}]", "the offset must be at most half the height")
        out.append((h, off))
    classes = r.opt("box_bias.classes", list(BOX_BIAS_DEFAULT_CLASSES))
    if (
        not isinstance(classes, list)
        or not classes
        or not all(c in APPLIANCE_CLASSES for c in classes)
    ):
        raise r.fail(
            "box_bias.classes",
            f"must be a list of appliance classes ({', '.join(APPLIANCE_CLASSES)})",
        )
    return tuple(out), tuple(classes)


def parse_box_bias(
    path: Path, data: Any
) -> tuple[tuple[tuple[float, float], ...], tuple[str, ...]]:
    """The box_bias section of a card's parsed YAML (CardError naming the field)."""
    return _box_bias(_Reader(path, data))


def check_onnx(card: ModelCard) -> None:
    """The ONNX file exists, has the card's sha256 and the card's input and outputs."""
    path = card.directory / CARD_FILE
    onnx = card.onnx_path
    if not onnx.is_file():
        raise CardError(path, "file", f"{onnx} does not exist")
    digest = sha256_of(onnx)
    if digest != card.sha256:
        raise CardError(path, "sha256", f"the card says {card.sha256}, {onnx.name} has {digest}")

    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for corrupt files
        raise CardError(path, "file", f"ONNX Runtime cannot load {onnx.name}: {e}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CardError(path, "input.name", f"the model has {len(inputs)} inputs, expected 1")
    inp = inputs[0]
    if inp.name != card.input_name:
        raise CardError(path, "input.name", f"the model's input is {inp.name!r}")
    if inp.type != _ORT_DTYPES[card.dtype]:
        raise CardError(path, "input.dtype", f"the model's input is {inp.type}")
    shape = list(inp.shape)
    if len(shape) != 4:
        raise CardError(path, "input", f"the model's input is {shape}, expected [B, 3, H, W]")

    def fixed(d: Any) -> int | None:
        return d if isinstance(d, int) and d > 0 else None  # str or None: dynamic

    batch, channels, height, width = (fixed(d) for d in shape)
    if channels not in (None, 3):
        raise CardError(path, "input", f"the model's input has {channels} channels, expected 3")
    if height not in (None, card.input_height):
        raise CardError(path, "input.height", f"the model's input is {shape} (height {height})")
    if width not in (None, card.input_width):
        raise CardError(path, "input.width", f"the model's input is {shape} (width {width})")
    if batch is not None and card.max_batch != batch:
        raise CardError(path, "input.max_batch", f"the model's batch is fixed at {batch}")
    outputs = [o.name for o in session.get_outputs()]
    for t in card.output_tensors:
        if t not in outputs:
            raise CardError(path, "output.tensors", f"the model has no output {t!r} ({outputs})")


def list_models(root: str | Path | None = None) -> dict[str, ModelCard | CardError]:
    """Every folder of root holding a model.yaml, by name: its card, or why it is refused."""
    root = Path(root) if root is not None else default_models_root()
    found: dict[str, ModelCard | CardError] = {}
    if not root.is_dir():
        return found
    for d in sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file()):
        try:
            found[d.name] = load_card(d)
        except CardError as e:
            found[d.name] = e
    return found
