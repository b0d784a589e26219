"""Tests for the folder listing dataset and the image store dataset."""

import os

import numpy as np
import pytest
from kedro.io import DatasetError

from jewelry_pipeline.datasets import ImageFolderDataset, ImageStoreDataset


def test_lists_categories_nested_files_and_skips_hidden(tmp_path):
    (tmp_path / "rings" / "gold" / "deep").mkdir(parents=True)
    (tmp_path / "bangles").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "rings" / "a.JPG").write_bytes(b"x")
    (tmp_path / "rings" / "gold" / "deep" / "b.png").write_bytes(b"yy")
    (tmp_path / "rings" / ".DS_Store").write_bytes(b"z")
    (tmp_path / "bangles" / ".hidden").mkdir()
    (tmp_path / "bangles" / ".hidden" / "c.png").write_bytes(b"z")
    (tmp_path / "notes.txt").write_bytes(b"root files are not a category")
    listing = ImageFolderDataset(str(tmp_path)).load()
    assert listing.categories == ("bangles", "rings")
    assert [(f.relpath, f.category, f.size) for f in listing.files] == [
        ("rings/a.JPG", "rings", 1),
        ("rings/gold/deep/b.png", "rings", 2),
    ]
    assert listing.read("rings/a.JPG") == b"x"
    assert {(e.relpath, e.reason) for e in listing.skipped} == {
        (".cache/", "hidden"),
        ("rings/.DS_Store", "hidden"),
        ("bangles/.hidden/", "hidden"),
        ("notes.txt", "loose_file"),
    }


def test_every_entry_is_listed_or_skipped_with_a_reason(tmp_path, monkeypatch):
    """Symlinks (files and folders), dot-named category folders, loose files and unreadable folders
    each get a row."""
    outside = tmp_path / "outside"
    (outside / "more").mkdir(parents=True)
    (outside / "x.png").write_bytes(b"x")
    root = tmp_path / "photos"
    (root / "rings" / "locked").mkdir(parents=True)
    (root / "rings" / "locked" / "secret.png").write_bytes(b"s")
    (root / "rings" / "a.png").write_bytes(b"a")
    (root / "..evil").mkdir()
    (root / "..evil" / "e.png").write_bytes(b"e")
    (root / "loose.jpg").write_bytes(b"l")
    (root / "catalog.csv").write_text(
        "path,title\nrings/a.png,Gold band\n"
    )  # item titles: read, not skipped
    (root / "rings" / "link.png").symlink_to(outside / "x.png")
    (root / "rings" / "linked_folder").symlink_to(outside / "more")
    (root / "linked_category").symlink_to(outside)
    real_scandir = os.scandir

    def scandir(path="."):  # root reads every folder here, so a permission error is simulated
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listing = ImageFolderDataset(str(root)).load()
    assert listing.categories == ("rings",)
    assert [f.relpath for f in listing.files] == ["rings/a.png"]
    assert {(e.relpath, e.reason) for e in listing.skipped} == {
        ("..evil/", "hidden"),
        ("loose.jpg", "loose_file"),
        ("rings/link.png", "symlink"),
        ("rings/linked_folder", "symlink"),
        ("linked_category", "symlink"),
        ("rings/locked/", "unreadable_folder"),
    }
    assert all(e.detail for e in listing.skipped)
    assert "Permission denied" in next(
        e.detail for e in listing.skipped if e.reason == "unreadable_folder"
    )


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(str(tmp_path / "nope")).load()


def test_store_dataset_round_trip(tmp_path):
    dataset = ImageStoreDataset(str(tmp_path / "s.npy"))
    assert not dataset.exists()
    dataset.save(np.ones((3, 4, 4, 3), np.uint8))
    assert dataset.exists() and dataset.load().sum() == 3 * 4 * 4 * 3
