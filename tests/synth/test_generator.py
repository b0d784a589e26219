"""Tests for the built-in dataset generator."""

import hashlib

import pandas as pd
from click.testing import CliRunner
from PIL import Image

from jewelry_pipeline.cli import main
from jewelry_pipeline.synth import CATEGORIES, SUBSTYLES, generate_dataset
from jewelry_pipeline.synth.generator import contact_sheet_path


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_layout_labels_and_formats(tiny_dataset):
    labels = pd.read_csv(tiny_dataset / "substyles.csv")
    assert len(labels) == 12 * len(CATEGORIES)
    assert set(labels["category"]) == set(CATEGORIES)
    for category in CATEGORIES:
        styles = labels.loc[labels["category"] == category, "substyle"]
        assert set(styles) == set(SUBSTYLES[category]) and len(SUBSTYLES[category]) >= 3
    suffixes = {p.suffix for p in tiny_dataset.rglob("*") if p.parent != tiny_dataset}
    assert suffixes == {".jpg", ".png"}
    for relpath in labels["path"]:
        with Image.open(tiny_dataset / relpath) as img:
            assert img.size == (48, 48)
    assert sorted(p.name for p in tiny_dataset.iterdir() if p.is_file()) == ["substyles.csv"]
    sheet = Image.open(contact_sheet_path(tiny_dataset))
    assert sheet.height == 48 * sum(len(s) for s in SUBSTYLES.values())


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_dataset(a, per_category=3, seed=1, size=32, workers=2)
    generate_dataset(b, per_category=3, seed=1, size=32, workers=1)
    generate_dataset(c, per_category=3, seed=2, size=32, workers=1)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_cli_synth(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "synth",
            "--out",
            str(tmp_path / "d"),
            "--per-category",
            "2",
            "--size",
            "32",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 8 images" in result.output
    assert len(list((tmp_path / "d" / "ring").iterdir())) == 2
