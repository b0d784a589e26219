"""Incremental ingestion: a second run decodes only new or changed files and matches a fresh run
byte for byte."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd

from jewelry_pipeline.core import ingest
from jewelry_pipeline.core.folders import list_image_folder
from jewelry_pipeline.pipelines.ingestion.nodes import decode_images

from ...conftest import image_bytes, random_photo
from .test_nodes import INGESTION, PREPROCESSING


def _counting_decoder(monkeypatch) -> list[str]:
    decoded: list[str] = []
    real = ingest.decode_file

    def counting(raw, file, *args):
        decoded.append(file.relpath)
        return real(raw, file, *args)

    monkeypatch.setattr(ingest, "decode_file", counting)
    return decoded


def test_second_run_decodes_only_new_or_changed_files_and_equals_a_fresh_run(
    tiny_dataset, tmp_path, monkeypatch
):
    """Broken on purpose once: ignoring mtime in the cache key made the changed file come from the
    cache (outputs differ)."""
    photos = tmp_path / "photos"
    shutil.copytree(tiny_dataset, photos)
    (photos / "ring" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    changed = (
        photos / "ring" / "changed.bmp"
    )  # a BMP of one size is always the same length: only the mtime tells
    changed.write_bytes(image_bytes(random_photo(900, (48, 48)), "BMP"))
    _, _, _, cache = decode_images(list_image_folder(photos), {}, PREPROCESSING, INGESTION)

    stat = changed.stat()
    changed.write_bytes(image_bytes(random_photo(901, (48, 48)), "BMP"))
    assert changed.stat().st_size == stat.st_size
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    (photos / "earring" / "new.png").write_bytes(image_bytes(random_photo(902, (48, 48)), "PNG"))
    sorted((photos / "bracelet").iterdir())[0].unlink()

    decoded = _counting_decoder(monkeypatch)
    incremental = decode_images(list_image_folder(photos), cache, PREPROCESSING, INGESTION)
    assert sorted(decoded) == sorted([changed.relative_to(photos).as_posix(), "earring/new.png"])
    decoded.clear()
    fresh = decode_images(list_image_folder(photos), {}, PREPROCESSING, INGESTION)
    assert len(decoded) == len(list_image_folder(photos).files)
    assert incremental[0].tobytes() == fresh[0].tobytes()
    pd.testing.assert_frame_equal(incremental[1], fresh[1])
    pd.testing.assert_frame_equal(incremental[2], fresh[2])
    assert incremental[1].to_csv(index=False) == fresh[1].to_csv(index=False)
    assert set(incremental[3]) == set(fresh[3]) and all(
        np.array_equal(incremental[3][k], fresh[3][k]) for k in fresh[3]
    )


def test_a_cache_made_with_other_settings_is_not_reused(tiny_dataset, monkeypatch):
    _, _, _, cache = decode_images(list_image_folder(tiny_dataset), {}, PREPROCESSING, INGESTION)
    decoded = _counting_decoder(monkeypatch)
    store, *_ = decode_images(
        list_image_folder(tiny_dataset), cache, {**PREPROCESSING, "image_size": 24}, INGESTION
    )
    assert len(decoded) == len(list_image_folder(tiny_dataset).files)
    assert store.shape[1:] == (24, 24, 3)
