"""The detector training set: YOLO labels equal the truth's visible boxes, split by seed."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartcity import scenarios as S
from smartcity.cli import main as cli_main
from smartcity.scenarios import dataset as D

NAMES = ["crowd_square", "speeding_arterial"]
SEEDS = [0, 1, 2]
APPLIANCE = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _hashes(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def png_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "png"
    D.write_dataset(out, [S.load(n) for n in NAMES], SEEDS, frames_per_scene=3, image_format="png")
    return out


def test_labels_and_images_match_an_independent_render(png_set):
    rules = D.LabelRules()
    entries = _manifest(png_set)
    assert len(entries) == len(NAMES) * len(SEEDS) * 3
    by_instance = collections.defaultdict(list)
    for e in entries:
        by_instance[(e["scenario"], e["seed"])].append(e)
    labelled = 0
    for (name, seed), group in by_instance.items():
        prep = S.prepare(S.load(name), seed=seed, resolution="640x360")
        r = S.Renderer(prep)
        for e in sorted(group, key=lambda e: e["frame"]):
            img, rec = r.render(e["frame"])
            on_disk = cv2.imread(str(png_set / e["image"]), cv2.IMREAD_COLOR)
            assert np.array_equal(on_disk, img), e["image"]
            rows = D.read_labels(png_set / e["label"])
            want = []
            for o in rec["objects"]:
                x0, y0, x1, y1 = o["box"]
                big = min(x1 - x0, y1 - y0) >= rules.min_box_px
                big = big and o["visible_px"] >= rules.min_visible_px
                seen = o["occlusion"] <= rules.max_occlusion
                seen = seen and o["truncation"] <= rules.max_truncation
                if big and seen:
                    want.append([APPLIANCE.index(o["class"]), x0, y0, x1, y1])
            got = np.column_stack(
                [
                    rows[:, 0],
                    (rows[:, 1] - rows[:, 3] / 2) * 640,
                    (rows[:, 2] - rows[:, 4] / 2) * 360,
                    (rows[:, 1] + rows[:, 3] / 2) * 640,
                    (rows[:, 2] + rows[:, 4] / 2) * 360,
                ]
            )
            assert got.shape == (len(want), 5), e["label"]
            if want:
                assert np.abs(got - np.array(want, float)).max() < 0.01, e["label"]
            assert np.all((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1))
            labelled += len(want)
            left = set(e["left_out_ids"])
            assert left == {o["id"] for o in rec["objects"]} - set(e["labelled_ids"])
    assert labelled >= 10, "the chosen scenes should hold labelled objects"


def test_a_seed_never_spans_two_splits(png_set):
    entries = _manifest(png_set)
    splits_of_seed = collections.defaultdict(set)
    for e in entries:
        splits_of_seed[e["seed"]].add(e["split"])
        assert (png_set / e["image"]).parent.name == e["split"]
        assert (png_set / e["label"]).parent.name == e["split"]
    assert all(len(s) == 1 for s in splits_of_seed.values()), splits_of_seed
    assert {next(iter(s)) for s in splits_of_seed.values()} == {"train", "val", "test"}
    # every file on disk is in the manifest, in the split the manifest says
    images = {str(p.relative_to(png_set)) for p in (png_set / "images").rglob("*.png")}
    assert images == {e["image"] for e in entries}


def test_split_of_seeds():
    s = D.split_seeds(range(10))
    assert collections.Counter(s.values()) == {"train": 8, "val": 1, "test": 1}
    assert s[9] == "test" and s[8] == "val"
    assert set(D.split_seeds([4, 5]).values()) == {"train"}
    assert D.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(S.ScenarioError):
        D.parse_seeds("3-1")


def test_rules_leave_out_small_and_hidden_objects():
    rules = D.LabelRules()
    ok = {"box": [10, 10, 30, 40], "visible_px": 500, "occlusion": 0.1, "truncation": 0.0}
    assert rules.keep(ok)
    assert not rules.keep({**ok, "box": [10, 10, 14, 40]})  # 4 px wide
    assert not rules.keep({**ok, "visible_px": 20})
    assert not rules.keep({**ok, "occlusion": 0.8})
    assert not rules.keep({**ok, "truncation": 0.9})


def test_data_yaml_names_the_appliance_classes(png_set):
    text = (png_set / "data.yaml").read_text()
    for i, name in enumerate(APPLIANCE):
        assert f"  {i}: {name}\n" in text
    for split in ("train", "val", "test"):
        assert f"{split}: images/{split}\n" in text
    summary = json.loads((png_set / "dataset.json").read_text())
    assert summary["images"] == {
        sp: sum(1 for e in _manifest(png_set) if e["split"] == sp)
        for sp in ("train", "val", "test")
    }


def test_same_seeds_same_dataset_other_seeds_differ(tmp_path, capsys):
    args = ["scenarios", "dataset", "--scenarios", "wrong_way_urban", "--frames-per-scene", "2"]
    args += ["--quiet", "--seeds"]
    assert cli_main([*args, "0-2", "--out", str(tmp_path / "a")]) == 0
    assert cli_main([*args, "0-2", "--out", str(tmp_path / "b")]) == 0
    assert cli_main([*args, "3-5", "--out", str(tmp_path / "c")]) == 0
    assert "data.yaml" in capsys.readouterr().out
    a, b, c = (_hashes(tmp_path / d) for d in "abc")
    assert len(a) == 3 * 2 * 2 + 3  # images + labels + manifest, data.yaml, dataset.json
    assert a == b
    images = {k: v for k, v in a.items() if k.startswith("images/")}
    assert not set(images.values()) & set(c.values())
