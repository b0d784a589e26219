"""Thumbnails: JPEGs at the shown size, never enlarged, packed into plain arrays and read back."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.core.folders import list_image_folder
from jewelry_pipeline.core.images import DecodeLimits
from jewelry_pipeline.core.thumbnails import Thumbnails, catalog_thumbnails, thumbnail_jpeg
from tests.conftest import image_bytes, random_photo


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def test_a_large_photo_shrinks_to_the_side_keeping_its_shape():
    photo = random_photo(1, (1200, 800))  # width 1200, height 800
    decoded = _decode(thumbnail_jpeg(photo, 256))
    assert decoded.shape == (171, 256, 3)
    small = cv2.resize(photo, (256, 171), interpolation=cv2.INTER_AREA)
    assert np.abs(decoded.astype(int) - small).mean() < 4


def test_a_small_photo_is_never_enlarged_and_grayscale_is_kept():
    assert _decode(thumbnail_jpeg(random_photo(2, (40, 30)), 256)).shape == (30, 40, 3)
    gray = random_photo(3, (64, 64))[:, :, 0]
    assert cv2.imdecode(np.frombuffer(thumbnail_jpeg(gray, 32), np.uint8), 0).shape == (32, 32)
    with pytest.raises(ValueError, match="at least 16"):
        thumbnail_jpeg(gray, 8)


def test_packed_thumbnails_round_trip_and_select():
    thumbnails = Thumbnails.from_jpegs([b"first", b"", b"third one"])
    again = Thumbnails.from_arrays(thumbnails.to_arrays())
    assert len(again) == 3 and [again.jpeg(i) for i in range(3)] == [b"first", b"", b"third one"]
    assert [again.select([2, 0]).jpeg(i) for i in range(2)] == [b"third one", b"first"]
    with pytest.raises(IndexError):
        again.jpeg(3)


@pytest.mark.parametrize(
    "offsets", [[1, 5], [0, 9], [0, 4, 2], [[0, 5]]], ids=["start", "end", "order", "shape"]
)
def test_offsets_that_do_not_describe_the_data_are_refused(offsets):
    with pytest.raises(ValueError, match="offsets"):
        Thumbnails(np.zeros(5, np.uint8), np.array(offsets, np.int64))


def test_thumbnails_come_from_the_original_photos_else_the_store(tmp_path):
    (tmp_path / "rings").mkdir()
    photos = {name: random_photo(seed, (600, 400)) for seed, name in enumerate("abc")}
    rows = []
    for store_index, (name, photo) in enumerate(photos.items()):
        data = image_bytes(photo, "PNG")
        (tmp_path / "rings" / f"{name}.png").write_bytes(data)
        item_id = hashlib.sha256(data).hexdigest()[:16]
        rows.append({"item_id": item_id, "path": f"rings/{name}.png", "store_index": store_index})
    folder = list_image_folder(tmp_path)
    (tmp_path / "rings" / "b.png").write_bytes(image_bytes(random_photo(9, (600, 400)), "PNG"))
    (tmp_path / "rings" / "c.png").unlink()  # b changed and c gone since ingestion
    store = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (10, 120, 230)])
    thumbnails = catalog_thumbnails(
        pd.DataFrame(rows), folder, store, side=128, limits=DecodeLimits(), workers=2
    )
    decoded = [cv2.imdecode(np.frombuffer(thumbnails.jpeg(i), np.uint8), 1) for i in range(3)]
    assert decoded[0].shape == (85, 128, 3)  # the original at 128 px on its longer side
    expected = cv2.resize(photos["a"], (128, 85), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    assert np.abs(decoded[0].astype(int) - expected).mean() < 4
    assert decoded[1].shape == decoded[2].shape == (32, 32, 3)  # the store rows instead
    assert abs(decoded[1].mean() - 120) < 3 and abs(decoded[2].mean() - 230) < 3
