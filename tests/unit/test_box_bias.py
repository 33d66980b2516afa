"""A model's box-bottom bias: the card's box_bias section, the fit, the card text, the tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from smartcity import _core
from smartcity.engine.box_bias import BiasSamples, card_text, fit_bottom_bias, match_frame
from smartcity.engine.models import CardError, load_card

ROOT = Path(__file__).resolve().parents[2]
SSD = ROOT / "models" / "person-ssdlite"
TRAFFIC = ROOT / "models" / "synthetic-traffic"


def _card(tmp_path: Path, box_bias: Any) -> Path:
    card = yaml.safe_load((SSD / "model.yaml").read_text())
    card["name"] = "m"
    if box_bias is not None:
        card["box_bias"] = box_bias
    d = tmp_path / "m"
    d.mkdir(parents=True)
    (d / "model.yaml").write_text(yaml.safe_dump(card))
    return d


def test_card_without_box_bias_gives_no_tracking_options(tmp_path: Path):
    card = load_card(_card(tmp_path, None), check_file=False)
    assert card.box_bias == () and card.tracking_options() == {}


def test_card_box_bias_becomes_tracking_options(tmp_path: Path):
    bias = {"bottom_px": [[8, 0.2], [30.5, 1.5]], "classes": ["car", "truck"], "measured": "x"}
    card = load_card(_card(tmp_path, bias), check_file=False)
    assert card.box_bias == ((8.0, 0.2), (30.5, 1.5))
    assert card.tracking_options() == {
        "bottom_bias": [(8.0, 0.2), (30.5, 1.5)],
        "bottom_bias_classes": [2, 5],
    }
    default = load_card(_card(tmp_path / "d", {"bottom_px": [[8, 0.2]]}), check_file=False)
    assert default.box_bias_classes == ("bicycle", "car", "motorcycle", "bus", "truck")


@pytest.mark.parametrize(
    ("bias", "field"),
    [
        ([[8, 0.2]], "box_bias"),
        ({"bottom_px": []}, "box_bias.bottom_px"),
        ({"bottom_px": [[8, 0.2], [8, 0.3]]}, "box_bias.bottom_px[1]"),
        ({"bottom_px": [[8, 0.2], [6, 0.3]]}, "box_bias.bottom_px[1]"),
        ({"bottom_px": [[8, 5.0]]}, "box_bias.bottom_px[0]"),
        ({"bottom_px": [[8]]}, "box_bias.bottom_px[0]"),
        ({"bottom_px": [[8, ".nan"]]}, "box_bias.bottom_px[0]"),
        ({"bottom_px": [[-1, 0.0]]}, "box_bias.bottom_px[0]"),
        ({"bottom_px": [[8, 0.2]], "classes": ["lorry"]}, "box_bias.classes"),
        ({"bottom_px": [[8, 0.2]], "classes": []}, "box_bias.classes"),
        ({"bottom_px": [[8, 0.2]], "scale": 2}, "box_bias.scale"),
    ],
)
def test_bad_box_bias_is_refused_naming_the_field(tmp_path: Path, bias: Any, field: str):
    with pytest.raises(CardError) as e:
        load_card(_card(tmp_path, bias), check_file=False)
    assert e.value.field == field


def test_fit_takes_medians_per_band_and_drops_thin_bands():
    rng = np.random.default_rng(1)
    h = np.concatenate([rng.uniform(10.5, 11.5, 400), rng.uniform(35, 39, 500), [50.0] * 10])
    off = np.concatenate([rng.normal(-0.2, 0.5, 400), rng.normal(1.5, 0.8, 500), [9.0] * 10])
    table = fit_bottom_bias(h, off, min_samples=300)
    assert [n for *_, n in table] == [400, 500]  # the 10 boxes at 50 px make no point
    (h1, o1, _), (h2, o2, _) = table
    assert 10.5 < h1 < 11.5 and 35 < h2 < 39
    assert abs(o1 + 0.2) < 0.1 and abs(o2 - 1.5) < 0.15
    with pytest.raises(ValueError, match="300 matched boxes"):
        fit_bottom_bias(h[:100], off[:100], min_samples=300)


def test_match_frame_takes_clear_boxes_of_the_classes_in_input_pixels():
    truth = [
        {"class": "car", "box": [100, 100, 140, 130], "occlusion": 0.0, "truncation": 0.0},
        {"class": "car", "box": [300, 100, 340, 130], "occlusion": 0.6, "truncation": 0.0},
        {"class": "person", "box": [500, 100, 510, 130], "occlusion": 0.0, "truncation": 0.0},
    ]
    dets = np.array(
        [[100, 101, 140, 132], [300, 100, 340, 131], [500, 100, 510, 131], [0, 0, 5, 5]],
        np.float32,
    )
    s = BiasSamples()
    match_frame(dets, 0.5, truth, ("car",), s)
    assert s.heights == [pytest.approx(15.5)] and s.offsets == [pytest.approx(1.0)]


def test_card_text_replaces_the_block_and_keeps_the_rest():
    text = "name: m   # the name\nbox_bias:\n  bottom_px: [[1, 0]]\n  classes: [car]\nfile: x\n"
    out = card_text(text, [(7.5, 0.25, 400), (30.0, 1.5, 500)], ("car", "bus"), "seed 2")
    assert "name: m   # the name" in out and "file: x" in out
    assert out.count("box_bias:") == 1
    data = yaml.safe_load(out)
    assert data["box_bias"] == {
        "bottom_px": [[7.5, 0.25], [30, 1.5]],
        "classes": ["car", "bus"],
        "measured": "seed 2",
    }
    again = card_text(out, [(9.0, 0.5, 300)], ("car",), 'a "quoted" note')
    assert yaml.safe_load(again)["box_bias"]["bottom_px"] == [[9, 0.5]]
    assert yaml.safe_load(again)["box_bias"]["measured"] == 'a "quoted" note'


def _ground_y(cls: int, **kw: Any) -> float:
    t = _core.ByteTracker(frame_rate=10, **kw)
    t.set_calibration(np.eye(3))
    tr = t.update(np.array([[290, 190, 310, 210]], np.float32), [0.9], [cls], timestamp=0.0)
    return float(tr.ground_xy[0, 1])


def test_tracker_takes_the_bias_off_the_ground_point():
    assert _ground_y(2) == pytest.approx(210.0, abs=1e-3)
    bias = [(10.0, 1.0), (30.0, 3.0)]  # a 20 px box: 2 px
    assert _ground_y(2, bottom_bias=bias) == pytest.approx(208.0, abs=1e-3)
    assert _ground_y(0, bottom_bias=bias) == pytest.approx(210.0, abs=1e-3)  # not people
    assert _ground_y(0, bottom_bias=bias, bottom_bias_classes=[0]) == pytest.approx(208.0, abs=1e-3)
    # 2 frame pixels per input pixel: a 10 input px box, 1 input px = 2 frame px
    assert _ground_y(2, bottom_bias=bias, bottom_bias_scale=2.0) == pytest.approx(208.0, abs=1e-3)
    with pytest.raises(ValueError, match="bottom_bias_classes"):
        _core.ByteTracker(bottom_bias=bias, bottom_bias_classes=[40])
    with pytest.raises(ValueError, match="bottom_bias"):
        _core.ByteTracker(bottom_bias=[(10.0, 1.0), (5.0, 1.0)])


def test_pipeline_takes_the_bias_and_the_traffic_card_has_one():
    p = _core.Pipeline(width=64, height=64)
    try:
        p.configure_tracking(bottom_bias=[(10.0, 1.0)], bottom_bias_classes=[2])
        with pytest.raises(ValueError, match="bottom_bias"):
            p.configure_tracking(bottom_bias=[(10.0, 9.0)])
    finally:
        p.close()
    card = load_card(TRAFFIC, check_file=False)
    opts = card.tracking_options()
    assert len(opts["bottom_bias"]) >= 5 and 0 not in opts["bottom_bias_classes"]


def test_cli_measures_prints_and_writes_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from smartcity.engine import box_bias, models_cli
    from tests.unit.test_models import _card_dict, _write

    d = _write(tmp_path, "m", _card_dict())
    before = (d / "model.yaml").read_text()
    rng = np.random.default_rng(3)
    fake = BiasSamples()
    fake.add(rng.uniform(10.2, 11.8, 400), rng.normal(0.5, 0.3, 400))
    seen: dict[str, Any] = {}

    def measure(model: Any, scenes: Any, seeds: Any, *a: Any, **k: Any) -> BiasSamples:
        seen.update(model=model, scenes=scenes, seeds=seeds)
        return fake

    monkeypatch.setattr(box_bias, "measure", measure)
    parser = models_cli.argparse.ArgumentParser()
    models_cli.add_models_parser(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["models", "--root", str(tmp_path), "box-bias", "m", "--seeds", "4,5"])
    assert a.func(a) == 0
    assert seen["seeds"] == (4, 5) and seen["scenes"] == box_bias.DEFAULT_SCENES
    out = capsys.readouterr().out
    assert "not written" in out and (d / "model.yaml").read_text() == before
    a = parser.parse_args(["models", "--root", str(tmp_path), "box-bias", "m", "--write"])
    assert a.func(a) == 0
    card = load_card(d)
    assert len(card.box_bias) == 1 and abs(card.box_bias[0][1] - 0.5) < 0.1
    assert before.strip() in (d / "model.yaml").read_text()  # the rest of the card kept
    a = parser.parse_args(["models", "--root", str(tmp_path), "box-bias", "nope"])
    assert a.func(a) == 2
    a = parser.parse_args(["models", "--root", str(tmp_path), "box-bias", "m", "--seeds", "x"])
    assert a.func(a) == 1
    fake.heights, fake.offsets = [10.0], [0.5]  # too few boxes: refused, card untouched
    written = (d / "model.yaml").read_text()
    a = parser.parse_args(["models", "--root", str(tmp_path), "box-bias", "m", "--write"])
    assert a.func(a) == 1
    assert (d / "model.yaml").read_text() == written


def test_measure_refuses_an_unknown_scene_or_class_before_running_anything():
    from smartcity.engine.box_bias import measure

    with pytest.raises(ValueError, match="'nowhere' is not a library scene"):
        measure(TRAFFIC, scenes=("nowhere",))
    with pytest.raises(ValueError, match="'lorry' is not an appliance class"):
        measure(TRAFFIC, classes=("lorry",))
