"""Bulk embedding in chunks: equal to one pass, resumed after a failure from its last finished
chunk, and never reusing chunks made for other models or rows."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.bulk import embed_in_chunks
from jewelry_pipeline.core.bundle import read_bundle
from jewelry_pipeline.core.query import QueryEncoder
from tests.conftest import kill_when_it_says
from tests.serving.conftest import CLASSES, PER_CLASS, catalog_photos, make_bundle


def _job_of(bundle_path):
    """The encoder of the bundle, the catalog photos, their rows in reverse and their categories."""
    encoder = QueryEncoder.of_bundle(read_bundle(bundle_path))
    images = catalog_photos(0)
    rows = np.arange(len(images))[::-1]  # any order of store rows
    categories = np.repeat(CLASSES, PER_CLASS)[rows]
    return encoder, images, rows, categories


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bulk") / "bundle", source="combined")


@pytest.fixture(scope="module")
def job(bundle_path):
    return _job_of(bundle_path)


class Killed(Exception):
    pass


def _resume(job, folder) -> tuple[np.ndarray, list[int]]:
    """`embed_in_chunks` again in `folder` (chunks of 7): the vectors and the rows reused so far
    after each chunk."""
    encoder, images, rows, categories = job
    reused_after = []
    vectors = embed_in_chunks(
        encoder,
        images,
        rows,
        categories,
        folder,
        "m1",
        chunk_rows=7,
        progress=lambda done, total, started, reused: reused_after.append(reused),
    )
    return vectors, reused_after


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
    resumed, seen = _resume(job, tmp_path / "resumed")
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


def test_a_run_killed_while_writing_a_chunk_resumes_to_the_same_vectors(tmp_path, job, bundle_path):
    """A real process killed (SIGKILL) in the middle of writing its third chunk: the resumed run
    equals one uninterrupted pass. Broken on purpose (chunks written in place, no staging file and
    rename): the half-written chunk was taken as finished."""

    encoder, images, rows, categories = job
    folder = tmp_path / "killed"
    script = f"""
import time
import numpy as np
import jewelry_pipeline.core.bulk as bulk
from jewelry_pipeline.core.bulk import embed_in_chunks
from tests.core.test_bulk import _job_of

real_save = np.save
calls = []
def save_then_die_midway(file, array, **kwargs):
    calls.append(file)
    if len(calls) < 3:
        return real_save(file, array, **kwargs)
    with open(file, "wb") as out:  # half the chunk's bytes, then the process is killed
        out.write(np.ascontiguousarray(array).tobytes()[: array.nbytes // 2])
        out.flush()
    print("writing", flush=True)
    time.sleep(120)
bulk.np.save = save_then_die_midway
embed_in_chunks(*_job_of({str(bundle_path)!r}), {str(folder)!r}, "m1", chunk_rows=7)
"""
    kill_when_it_says(script)
    assert len(list(folder.glob("chunk-*[0-9].npy"))) == 2  # two chunks finished before the kill
    resumed, seen = _resume(job, folder)
    whole = encoder.catalog_vectors(images, rows, categories)
    np.testing.assert_allclose(resumed, whole, atol=1e-6)
    assert seen[-1] == 14  # the two finished chunks were reused, the half-written one was not
