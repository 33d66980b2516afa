"""Model cards: the embedded card loads, broken cards are refused naming the field, the CLI."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from smartcity.engine import models_cli
from smartcity.engine.models import CardError, list_models, load_card

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
SSD = MODELS / "person-ssdlite"
SSD_SHA = "b13c05ec38ac1fe2412616c430169c458d0f1b009889c18124a519c900af7eef"  # shared/models/README


def _card_dict() -> dict[str, Any]:
    return yaml.safe_load((SSD / "model.yaml").read_text())


def _write(root: Path, name: str, card: dict[str, Any], onnx: Path | bytes | None = None) -> Path:
    """A model folder under root: the card, and the ONNX file linked (or written) beside it."""
    d = root / name
    d.mkdir(parents=True)
    card = dict(card, name=name)
    (d / "model.yaml").write_text(yaml.safe_dump(card))
    target = d / card.get("file", "model.onnx")
    if isinstance(onnx, bytes):
        target.write_bytes(onnx)
    else:
        target.symlink_to(onnx or SSD / "person-ssdlite-300.onnx")
    return d


def _set(card: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = card
    *path, last = dotted.split(".")
    for p in path:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return card


_DELETE = object()


def test_embedded_card_loads():
    card = load_card(SSD)
    assert card.name == "person-ssdlite"
    assert card.sha256 == SSD_SHA
    assert (card.input_width, card.input_height) == (300, 300)
    assert card.resize == "stretch" and card.colour_order == "rgb"
    assert card.value_range == (0.0, 1.0)
    assert card.output_format == "boxes_scores"
    assert card.output_tensors == ("boxes", "scores")
    assert card.max_batch == 1
    assert card.class_map.tolist() == [0]
    assert card.class_map.dtype == np.int32
    assert "MIT" in card.licence
    assert (SSD / "LICENSE").is_file()


def test_class_map_drops_unmapped_classes(tmp_path: Path):
    card = _card_dict()
    card["classes"] = {"names": ["bg", "car", "person", "lorry"], "map": {"person": "person"}}
    card["classes"]["map"]["car"] = "car"
    card["classes"]["map"]["lorry"] = "truck"
    # the shape check would refuse 4 classes for a 1-class model only at run time: card only
    loaded = load_card(_write(tmp_path, "m", card), check_file=False)
    assert loaded.class_map.tolist() == [-1, 2, 0, 5]


def test_class_score_thresholds(tmp_path: Path):
    card = _card_dict()
    assert load_card(_write(tmp_path, "m", card), check_file=False).class_thresholds() is None
    card["postprocess"]["class_score_thresholds"] = {"person": 0.6}
    loaded = load_card(_write(tmp_path, "m2", card), check_file=False)
    t = loaded.class_thresholds()
    assert t is not None and t.dtype == np.float32
    default = loaded.score_threshold
    assert t.tolist() == pytest.approx([0.6] + [default] * 5)


BROKEN = [
    ("input.width", _DELETE, "input.width", "missing"),
    ("output.format", _DELETE, "output.format", "missing"),
    ("licence", _DELETE, "licence", "missing"),
    ("sha256", _DELETE, "sha256", "missing"),
    ("classes.map", _DELETE, "classes.map", "missing"),
    ("output.format", "yolox", "output.format", "unknown format 'yolox'"),
    ("output.tensors", ["boxes"], "output.tensors", "takes 2 tensor(s)"),
    ("input.resize", "crop", "input.resize", "letterbox, stretch"),
    ("input.value_range", [0, 2], "input.value_range", "[0, 1] or [0, 255]"),
    ("input.width", 320, "input.width", "width 300"),
    ("input.height", 299, "input.height", "height 300"),
    ("input.name", "input", "input.name", "'images'"),
    ("input.dtype", "uint8", "input.value_range", "uint8"),
    ("input.max_batch", 4, "input.max_batch", "fixed at 1"),
    ("output.tensors", ["boxes", "logits"], "output.tensors", "no output 'logits'"),
    ("classes.map", {"person": "pedestrian"}, "classes.map.person", "must be one of"),
    ("classes.map", {"cyclist": "bicycle"}, "classes.map.cyclist", "not one of classes.names"),
    ("postprocess.score_threshold", 1.5, "postprocess.score_threshold", "[0.0, 1.0]"),
    (
        "postprocess.class_score_thresholds",
        {"lorry": 0.5},
        "postprocess.class_score_thresholds.lorry",
        "not an appliance class",
    ),
    (
        "postprocess.class_score_thresholds",
        {"person": 2},
        "postprocess.class_score_thresholds.person",
        "[0.0, 1.0]",
    ),
    (
        "postprocess.class_score_thresholds",
        [0.5],
        "postprocess.class_score_thresholds",
        "must map appliance classes",
    ),
    ("sha256", "0" * 64, "sha256", "the card says"),
    ("sha256", "abc", "sha256", "64 hexadecimal"),
]


@pytest.mark.parametrize(("field", "value", "named", "reason"), BROKEN)
def test_broken_card_names_the_field(tmp_path: Path, field, value, named, reason):
    d = _write(tmp_path, "broken", _set(_card_dict(), field, value))
    with pytest.raises(CardError) as e:
        load_card(d)
    assert e.value.field == named
    assert reason in e.value.reason
    assert f"{named}: " in str(e.value)  # the message names the field too


def test_name_must_match_folder(tmp_path: Path):
    d = _write(tmp_path, "a", _card_dict())
    card = yaml.safe_load((d / "model.yaml").read_text())
    (d / "model.yaml").write_text(yaml.safe_dump(dict(card, name="b")))
    with pytest.raises(CardError, match="name: must match"):
        load_card(d)


def test_missing_onnx_file(tmp_path: Path):
    d = _write(tmp_path, "m", _card_dict())
    (d / "person-ssdlite-300.onnx").unlink()
    with pytest.raises(CardError) as e:
        load_card(d)
    assert e.value.field == "file" and "does not exist" in e.value.reason


@pytest.mark.parametrize("content", [b"not an onnx file at all", None])
def test_corrupt_or_truncated_onnx_is_refused_at_load(tmp_path: Path, content: bytes | None):
    if content is None:  # truncated: the first half of the real file
        data = (SSD / "person-ssdlite-300.onnx").read_bytes()
        content = data[: len(data) // 2]
    card = dict(_card_dict(), sha256=hashlib.sha256(content).hexdigest())
    d = _write(tmp_path, "m", card, onnx=content)
    with pytest.raises(CardError) as e:
        load_card(d)
    assert e.value.field == "file"
    assert "cannot load" in e.value.reason


def test_sha256_verify_detects_a_changed_file(tmp_path: Path):
    data = bytearray((SSD / "person-ssdlite-300.onnx").read_bytes())
    data[-1] ^= 0xFF
    d = _write(tmp_path, "m", _card_dict(), onnx=bytes(data))
    with pytest.raises(CardError) as e:
        load_card(d)
    assert e.value.field == "sha256"
    assert hashlib.sha256(bytes(data)).hexdigest() in e.value.reason


def test_list_models_reports_each_folder(tmp_path: Path):
    _write(tmp_path, "good", _card_dict())
    _write(tmp_path, "bad", _set(_card_dict(), "output.format", "ssd"))
    (tmp_path / "not-a-model").mkdir()
    found = list_models(tmp_path)
    assert list(found) == ["bad", "good"]
    assert isinstance(found["bad"], CardError) and found["bad"].field == "output.format"
    assert not isinstance(found["good"], CardError)


def test_cli_functions(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _write(tmp_path, "good", _card_dict())
    _write(tmp_path, "bad", _set(_card_dict(), "input.width", 640))

    assert models_cli.cmd_list(tmp_path) == 0
    out = capsys.readouterr().out
    assert "good" in out and "boxes_scores" in out
    assert "REFUSED  input.width" in out

    assert models_cli.cmd_show("good", tmp_path) == 0
    out = capsys.readouterr().out
    assert SSD_SHA in out and "stretch" in out and "person->person" in out
    assert models_cli.cmd_show("bad", tmp_path) == 1
    assert "input.width" in capsys.readouterr().err
    assert models_cli.cmd_show("nope", tmp_path) == 2

    assert models_cli.cmd_verify("good", tmp_path) == 0
    assert models_cli.cmd_verify(None, tmp_path) == 1
    out = capsys.readouterr().out
    assert "ok   good" in out and "FAIL bad: input.width" in out
    assert models_cli.cmd_verify("nope", tmp_path) == 2
    assert models_cli.cmd_verify(None, tmp_path / "empty") == 2


def test_cli_parser_dispatches(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _write(tmp_path, "good", _card_dict())
    parser = argparse.ArgumentParser(prog="smartcity")
    models_cli.add_models_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", "--root", str(tmp_path), "verify", "good"])
    assert args.func(args) == 0
    assert "ok   good" in capsys.readouterr().out
    args = parser.parse_args(["models", "--root", str(tmp_path), "show", "missing"])
    assert args.func(args) == 2


def test_repository_models_verify(capsys: pytest.CaptureFixture[str]):
    assert models_cli.cmd_verify(None, MODELS) == 0
    assert "ok   person-ssdlite" in capsys.readouterr().out
