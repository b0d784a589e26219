"""Bulk embedding in chunks: equal to one pass, resumed after a failure from its last finished
chunk, and never reusing chunks made for other models or rows."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.bulk import embed_in_chunks
from jewelry_pipeline.core.bundle import read_bundle
from jewelry_pipeline.core.query import QueryEncoder
from tests.serving.conftest import CLASSES, PER_CLASS, catalog_photos, make_bundle


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    bundle = read_bundle(make_bundle(tmp_path_factory.mktemp("bulk") / "bundle", source="combined"))
    encoder = QueryEncoder.of_bundle(bundle)
    images = catalog_photos(0)
    rows = np.arange(len(images))[::-1]  # any order of store rows
    categories = np.repeat(CLASSES, PER_CLASS)[rows]
    return encoder, images, rows, categories


class Killed(Exception):
    pass


def test_chunks_equal_one_pass_and_resume_after_a_failure(tmp_path, job):
    encoder, images, rows, categories = job
    whole = encoder.catalog_vectors(images, rows, categories)
    once = embed_in_chunks(encoder, images, rows, categories, tmp_path / "once", "m1", chunk_rows=7)
    np.testing.assert_allclose(once, whole, atol=1e-6)

    def die_after_two_chunks(done, total, started, reused):
        if done >= 14:
            raise Killed()

    with pytest.raises(Killed):
        embed_in_chunks(
            encoder,
            images,
            rows,
            categories,
            tmp_path / "resumed",
            "m1",
            chunk_rows=7,
            progress=die_after_two_chunks,
        )
    seen = []
    resumed = embed_in_chunks(
        encoder,
        images,
        rows,
        categories,
        tmp_path / "resumed",
        "m1",
        chunk_rows=7,
        progress=lambda done, total, started, reused: seen.append(reused),
    )
    assert seen[0] == 7 and seen[-1] == 14  # the two finished chunks were not embedded again
    np.testing.assert_array_equal(resumed, once)


def test_chunks_of_other_models_or_rows_are_not_reused(tmp_path, job):
    encoder, images, rows, categories = job
    folder = tmp_path / "chunks"
    first = embed_in_chunks(encoder, images, rows, categories, folder, "m1", chunk_rows=10)
    np.save(folder / "chunk-000000.npy", np.zeros_like(first[:10]))  # what other models made
    reused = []
    again = embed_in_chunks(
        encoder,
        images,
        rows,
        categories,
        folder,
        "m2",
        chunk_rows=10,
        progress=lambda done, total, started, n: reused.append(n),
    )
    assert reused[-1] == 0
    np.testing.assert_array_equal(again, first)
    reused.clear()
    other_rows = embed_in_chunks(
        encoder,
        images,
        rows[::-1],
        categories[::-1],
        folder,
        "m2",
        chunk_rows=10,
        progress=lambda done, total, started, n: reused.append(n),
    )
    assert reused[-1] == 0  # same models, other rows: nothing reused
    np.testing.assert_allclose(other_rows, first[::-1], atol=1e-6)
    with pytest.raises(ValueError, match="same length"):
        embed_in_chunks(encoder, images, rows[:3], categories, folder, "m2")
