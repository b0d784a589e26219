"""Tests for the folder listing dataset and the image store dataset."""

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
    (tmp_path / "bangles" / ".hidden" ).mkdir()
    (tmp_path / "bangles" / ".hidden" / "c.png").write_bytes(b"z")
    (tmp_path / "notes.txt").write_bytes(b"root files are not a category")
    listing = ImageFolderDataset(str(tmp_path)).load()
    assert listing.categories == ("bangles", "rings")
    assert [(f.relpath, f.category, f.size) for f in listing.files] == [
        ("rings/a.JPG", "rings", 1),
        ("rings/gold/deep/b.png", "rings", 2),
    ]
    assert listing.read("rings/a.JPG") == b"x"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(str(tmp_path / "nope")).load()


def test_store_dataset_round_trip(tmp_path):
    dataset = ImageStoreDataset(str(tmp_path / "s.npy"))
    assert not dataset.exists()
    dataset.save(np.ones((3, 4, 4, 3), np.uint8))
    assert dataset.exists() and dataset.load().sum() == 3 * 4 * 4 * 3
