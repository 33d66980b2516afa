"""`smartcity models list | show NAME | verify [NAME] | quantize NAME --calibration VIDEO`.

Each command prints to stdout (errors to stderr) and returns the exit code: 0 fine, 1 a card is
refused, 2 no such model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smartcity.engine.models import (
    APPLIANCE_CLASSES,
    CardError,
    ModelCard,
    default_models_root,
    list_models,
    load_card,
)


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else default_models_root()


def _summary(card: ModelCard) -> str:
    mapped = sorted(set(card.class_mapping.values()), key=APPLIANCE_CLASSES.index)
    return (
        f"{card.output_format:12} {card.input_width}x{card.input_height} {card.resize:9} "
        f"batch {card.max_batch:<3} {','.join(mapped)}"
    )


def cmd_list(root: str | Path | None = None) -> int:
    """One line per model folder; refused cards say why. 0 even when some are refused."""
    models = list_models(_root(root))
    if not models:
        print(f"no models in {_root(root)}")
        return 0
    for name, card in models.items():
        if isinstance(card, CardError):
            print(f"{name:24} REFUSED  {card.field}: {card.reason}")
        else:
            print(f"{name:24} ok       {_summary(card)}")
    return 0


def cmd_show(name: str, root: str | Path | None = None) -> int:
    """Every field of one card."""
    d = _root(root) / name
    if not (d / "model.yaml").is_file():
        print(f"smartcity models: no model {name!r} in {_root(root)}", file=sys.stderr)
        return 2
    try:
        card = load_card(d)
    except CardError as e:
        print(f"smartcity models: {e}", file=sys.stderr)
        return 1
    classes = ", ".join(
        f"{n}->{card.class_mapping.get(n, 'dropped')}" for n in card.class_names[:20]
    )
    if len(card.class_names) > 20:
        classes += f", ... ({len(card.class_names)} classes)"
    lo, hi = card.value_range
    rows = [
        ("name", card.name),
        ("description", card.description),
        ("file", f"{card.onnx_path} ({card.onnx_path.stat().st_size / 1e6:.1f} MB)"),
        ("sha256", card.sha256),
        ("licence", card.licence),
        ("source", card.source),
        ("input", f"{card.input_name} {card.dtype} [B,3,{card.input_height},{card.input_width}]"),
        ("colour, range", f"{card.colour_order}, [{lo:g}, {hi:g}]"),
        ("resize", card.resize),
        ("max batch", str(card.max_batch)),
        ("output", f"{card.output_format} ({', '.join(card.output_tensors)})"),
        ("classes", classes),
        (
            "postprocess",
            f"score >= {card.score_threshold:g}, NMS IoU {card.iou_threshold:g}, "
            f"at most {card.max_detections}",
        ),
    ]
    for k, v in rows:
        print(f"{k:14} {v}")
    return 0


def cmd_verify(name: str | None = None, root: str | Path | None = None) -> int:
    """Check one card or all: fields, file, sha256, ONNX input and outputs. 1 if any fails."""
    if name is not None:
        d = _root(root) / name
        if not (d / "model.yaml").is_file():
            print(f"smartcity models: no model {name!r} in {_root(root)}", file=sys.stderr)
            return 2
        results: dict[str, ModelCard | CardError] = {}
        try:
            results[name] = load_card(d)
        except CardError as e:
            results[name] = e
    else:
        results = list_models(_root(root))
        if not results:
            print(f"smartcity models: no models in {_root(root)}", file=sys.stderr)
            return 2
    failed = 0
    for n, r in results.items():
        if isinstance(r, CardError):
            failed += 1
            print(f"FAIL {n}: {r.field}: {r.reason}")
        else:
            print(f"ok   {n} (sha256 {r.sha256[:12]}..., {r.output_format})")
    return 1 if failed else 0


def add_models_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `models list | show NAME | verify [NAME]` to the CLI; each sets args.func."""
    models = subparsers.add_parser("models", help="model cards in models/: list, show, verify")
    models.add_argument(
        "--root", default=None, help="models folder (default $SMARTCITY_MODELS or ./models)"
    )
    sub = models.add_subparsers(dest="models_command", required=True)
    p = sub.add_parser("list", help="the models and whether their cards are accepted")
    p.set_defaults(func=lambda a: cmd_list(a.root))
    p = sub.add_parser("show", help="every field of one card")
    p.add_argument("name")
    p.set_defaults(func=lambda a: cmd_show(a.name, a.root))
    p = sub.add_parser("verify", help="check cards, files, sha256 and ONNX shapes")
    p.add_argument("name", nargs="?", default=None)
    p.set_defaults(func=lambda a: cmd_verify(a.name, a.root))
    p = sub.add_parser(
        "box-bias",
        help="measure where the model puts a box's bottom against the truth of rendered scenes "
        "(the tracker takes it off before a vehicle's ground position and speed)",
    )
    p.add_argument("name")
    p.add_argument(
        "--scenes", default="", help="comma-separated library scenes (default: the vehicle ones)"
    )
    p.add_argument("--cache", default=None, help="keep the rendered scenes in this folder")
    p.add_argument("--seeds", default="2", help="comma-separated render seeds (default 2)")
    p.add_argument("--resolution", default="640x360")
    p.add_argument("--write", action="store_true", help="put the table into the card")

    def _box_bias(a: argparse.Namespace) -> int:
        from smartcity.engine.box_bias import DEFAULT_SCENES, cmd_box_bias

        scenes = tuple(s for s in a.scenes.split(",") if s) or DEFAULT_SCENES
        try:
            seeds = tuple(int(s) for s in a.seeds.split(",") if s)
        except ValueError:
            print(f"smartcity models: --seeds: integers, got {a.seeds!r}", file=sys.stderr)
            return 1
        return cmd_box_bias(
            a.name, _root(a.root), scenes, seeds, a.resolution, a.write, cache_dir=a.cache
        )

    p.set_defaults(func=_box_bias)
    p = sub.add_parser(
        "quantize",
        help="an int8 copy of a model for the CPU, calibrated on a video of the site and "
        "checked against the original (needs the onnx package)",
    )
    p.add_argument("name")
    p.add_argument("--calibration", required=True, help="a video of the site (file path)")
    p.add_argument("--out", default=None, help="the new model folder (default <root>/<name>-int8)")
    p.add_argument("--frames", type=int, default=60, help="calibration frames (default 60)")
    p.add_argument("--every-s", type=float, default=1.0, help="seconds between frames")
    p.add_argument("--check", default=None, help="check video (default: the calibration video)")
    p.add_argument(
        "--calibrate",
        choices=("minmax", "percentile"),
        default="minmax",
        help="activation ranges: min/max seen (default), or the 99.999th percentile of |x| "
        "(a few outliers no longer widen the int8 steps)",
    )
    p.add_argument("--check-frames", type=int, default=60)
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.9,
        help="share of the original's detections the copy must find (default 0.9)",
    )

    def _quantize(a: argparse.Namespace) -> int:
        from smartcity.engine.quantize import cmd_quantize

        return cmd_quantize(a)

    p.set_defaults(func=_quantize)
    return models
