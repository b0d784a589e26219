"""Tests for the uint8 image store."""

import numpy as np
import pytest

from jewelry_pipeline.core.store import open_store, write_store


def test_round_trip_is_memory_mapped_and_exact(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2500, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "store.npy"
    write_store(path, images, chunk_rows=1000)
    loaded = open_store(path)
    assert isinstance(loaded, np.memmap)
    assert np.array_equal(loaded, images)
    assert [p.name for p in tmp_path.iterdir()] == ["store.npy"]  # no temporary left behind


def test_rejects_non_uint8_and_keeps_previous_file(tmp_path):
    path = tmp_path / "store.npy"
    write_store(path, np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_store(path, np.zeros((2, 4, 4, 3), np.float32))
    assert open_store(path).shape == (2, 4, 4, 3)


def test_open_refuses_a_non_store_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(5))
    with pytest.raises(ValueError, match="not an image store"):
        open_store(path)
