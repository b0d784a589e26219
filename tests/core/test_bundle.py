"""Tests for the serving bundle: round trip, atomic replace, and refusal of damaged bundles."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.core.bundle import (
    CLASSIFIER_FILE,
    FILES_MANIFEST,
    INDEX_FILE,
    BundleContents,
    BundleError,
    read_bundle,
    verify_bundle,
    write_bundle,
)
from jewelry_pipeline.core.images import Preprocessing
from jewelry_pipeline.core.models.autoencoder import build_autoencoder
from jewelry_pipeline.core.models.classifier import build_classifier
from jewelry_pipeline.core.search import EmbeddingIndex
from jewelry_pipeline.core.thumbnails import Thumbnails
from tests.conftest import kill_when_it_says

PHOTOS = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)


def small_bundle_contents() -> BundleContents:
    """A complete two-class bundle's contents, small enough to write in a second."""
    classifier = build_classifier(16, 2, filters=(4,), embedding_dim=4)
    _, encoder, _ = build_autoencoder(16, (4,), 3)
    rng = np.random.default_rng(0)
    index = EmbeddingIndex(["i0", "i1", "i2"], rng.normal(size=(3, 4))).to_arrays()
    catalog = pd.DataFrame(
        {
            "item_id": ["i0", "i1", "i2"],
            "path": ["a/0.png", "a/1.png", "b/2.png"],
            "category": ["a", "a", "b"],
            "cluster": [0, 1, 0],
            "thumbnail_row": [0, 1, 2],
        }
    )
    return BundleContents(
        classifier=classifier,
        encoders={"a": encoder, "b": encoder},
        index=index,
        catalog=catalog,
        thumbnails=Thumbnails.from_images(PHOTOS, 32),
        class_names=["a", "b"],
        preprocessing=Preprocessing(image_size=16),
        version={"run_id": "abc"},
    )


@pytest.fixture
def bundle_parts(tmp_path):
    contents = small_bundle_contents()
    return contents, contents.classifier


def test_round_trip(tmp_path, bundle_parts):
    parts, classifier = bundle_parts
    path = write_bundle(tmp_path / "bundle", parts)
    bundle = read_bundle(path)
    assert bundle.class_names == ["a", "b"] and set(bundle.encoders) == {"a", "b"}
    assert bundle.config["version"] == {"run_id": "abc"}
    assert list(bundle.catalog["item_id"]) == ["i0", "i1", "i2"]
    batch = PHOTOS.astype(np.float32)
    np.testing.assert_allclose(
        bundle.classifier(batch).numpy(), classifier(batch).numpy(), atol=1e-6
    )
    assert path.is_symlink() and list(tmp_path.glob(".bundle.*")) == [
        path.resolve()
    ]  # the version, no staging left


def test_encoders_that_do_not_match_the_classes_are_refused(tmp_path, bundle_parts):
    parts, _ = bundle_parts
    with pytest.raises(BundleError, match=r"encoders for \['a', 'c'\] but classes \['a', 'b'\]"):
        write_bundle(
            tmp_path / "bundle",
            replace(parts, encoders={"a": parts.encoders["a"], "c": parts.encoders["b"]}),
        )
    assert not (tmp_path / "bundle").exists()
    path = write_bundle(tmp_path / "bundle", parts)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "class_names": ["footwear", "tops"]}))
    files = json.loads((path / FILES_MANIFEST).read_text())
    files["config.json"] = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()
    (path / FILES_MANIFEST).write_text(json.dumps(files))
    with pytest.raises(BundleError, match="each class needs its own encoder"):
        verify_bundle(path)


def test_missing_bundle_and_missing_file(tmp_path, bundle_parts):
    with pytest.raises(BundleError, match="does not exist"):
        verify_bundle(tmp_path / "nowhere")
    path = write_bundle(tmp_path / "bundle", bundle_parts[0])
    (path / INDEX_FILE).unlink()
    with pytest.raises(BundleError, match="index.npz is missing"):
        read_bundle(path)


def test_truncated_model_is_refused(tmp_path, bundle_parts):
    path = write_bundle(tmp_path / "bundle", bundle_parts[0])
    data = (path / CLASSIFIER_FILE).read_bytes()
    (path / CLASSIFIER_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="classifier.keras does not match its checksum"):
        read_bundle(path)


def test_corrupt_manifest_is_refused(tmp_path, bundle_parts):
    path = write_bundle(tmp_path / "bundle", bundle_parts[0])
    (path / FILES_MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="corrupt manifest"):
        verify_bundle(path)


def test_inconsistent_parts_are_refused(tmp_path, bundle_parts):
    parts = replace(bundle_parts[0], thumbnails=bundle_parts[0].thumbnails.select([0, 1]))
    with pytest.raises(BundleError, match="same items"):
        write_bundle(tmp_path / "bundle", parts)
    assert not (tmp_path / "bundle").exists()


def test_rewrite_replaces_the_whole_bundle(tmp_path, bundle_parts):
    parts = bundle_parts[0]
    write_bundle(tmp_path / "bundle", parts)
    write_bundle(tmp_path / "bundle", replace(parts, version={"run_id": "new"}))
    assert json.loads((tmp_path / "bundle" / "config.json").read_text())["version"] == {
        "run_id": "new"
    }


def test_readers_see_the_old_bundle_or_the_new_one_never_none(tmp_path, bundle_parts):
    """A reader loops over verify_bundle while the bundle is rewritten five times: it never finds no
    bundle or a mixed one. Broken on purpose once: removing the old bundle before the new one took
    its place (the former "remove, then rename" order, with its gap widened to 50 ms) made the
    reader fail with "does not exist"."""
    import threading

    parts = bundle_parts[0]
    path = write_bundle(tmp_path / "bundle", parts)
    failures, versions_seen, done = [], set(), threading.Event()

    def read_loop() -> None:
        while not done.is_set():
            try:
                versions_seen.add(verify_bundle(path)["version"]["run_id"])
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for run in range(5):
            write_bundle(path, replace(parts, version={"run_id": f"run{run}"}))
    finally:
        done.set()
        reader.join(30)
    assert failures == []
    assert (
        versions_seen <= {"abc", "run0", "run1", "run2", "run3", "run4"} and len(versions_seen) >= 2
    )
    assert read_bundle(path).config["version"] == {"run_id": "run4"}
    assert len(list(tmp_path.glob(".bundle.*"))) == 2  # the current version and the one before it


def test_a_reader_between_the_two_steps_of_the_swap_sees_the_old_bundle(
    tmp_path, bundle_parts, monkeypatch
):
    """The race forced: a reader runs just before and just after the rename that swaps versions.
    Broken on purpose (the link removed before the rename): the reader before it found no bundle."""
    import jewelry_pipeline.core.bundle as bundle_module

    parts = bundle_parts[0]
    path = write_bundle(tmp_path / "bundle", parts)
    seen = []
    real_replace = os.replace

    def replace_with_readers(source, destination):
        if Path(destination) == path:
            seen.append(verify_bundle(path)["version"]["run_id"])
        real_replace(source, destination)
        if Path(destination) == path:
            seen.append(verify_bundle(path)["version"]["run_id"])

    monkeypatch.setattr(bundle_module.os, "replace", replace_with_readers)
    write_bundle(path, replace(parts, version={"run_id": "new"}))
    assert seen == ["abc", "new"]


def test_a_write_killed_midway_leaves_the_served_bundle_whole(tmp_path, bundle_parts):
    """A real `write_bundle` in another process, killed (SIGKILL) while it writes the index: the
    bundle still verifies as the old version, and the next write clears the half-written folder."""

    parts = bundle_parts[0]
    path = write_bundle(tmp_path / "bundle", parts)
    script = f"""
import sys, time
import numpy as np
import jewelry_pipeline.core.bundle as bundle
from dataclasses import replace
from tests.core.test_bundle import small_bundle_contents

real_savez = np.savez
def slow_savez(*args, **kwargs):
    real_savez(*args, **kwargs)
    print("writing", flush=True)
    time.sleep(120)
bundle.np.savez = slow_savez
bundle.write_bundle({str(path)!r}, replace(small_bundle_contents(), version={{"run_id": "killed"}}))
"""
    kill_when_it_says(script)  # mid-write: the index is saved
    assert verify_bundle(path)["version"] == {"run_id": "abc"}
    assert len(list(tmp_path.glob(".bundle.*"))) == 2  # the served version and the half-written one
    write_bundle(path, replace(parts, version={"run_id": "next"}))
    assert read_bundle(path).config["version"] == {"run_id": "next"}
    assert len(list(tmp_path.glob(".bundle.*"))) == 2  # the new version and the one before it


def test_a_bundle_folder_from_before_versions_is_replaced_in_place(tmp_path, bundle_parts):
    parts = bundle_parts[0]
    legacy = tmp_path / "bundle"
    legacy.mkdir()
    (legacy / FILES_MANIFEST).write_text("{}")
    write_bundle(legacy, parts)
    assert legacy.is_symlink() and read_bundle(legacy).class_names == ["a", "b"]


def test_an_ivfpq_index_keeps_its_vectors_beside_the_npz_memory_mapped(tmp_path, bundle_parts):
    parts, _ = bundle_parts
    vectors = np.random.default_rng(2).normal(size=(3, 4))
    index = EmbeddingIndex(
        ["i0", "i1", "i2"], vectors, "ivfpq", partitions=parts.catalog["category"]
    )
    path = write_bundle(tmp_path / "bundle", replace(parts, index=index.to_arrays()))
    assert "index_vectors.npy" in json.loads((path / FILES_MANIFEST).read_text())
    with np.load(path / INDEX_FILE) as data:
        assert "vectors" not in data.files
    bundle = read_bundle(path)
    assert isinstance(bundle.index["vectors"], np.memmap)
    loaded = EmbeddingIndex.from_arrays(bundle.index)
    assert loaded.backend == "ivfpq" and list(loaded.partitions.labels()) == ["a", "a", "b"]
    found, scores = loaded.search(vectors[1], 3, partition="a")
    assert found.tolist() == [[1, 0]] and scores[0, 0] == pytest.approx(1.0)
    # An exact index is stored as before: its vectors inside index.npz.
    plain = write_bundle(tmp_path / "plain", parts)
    assert not (plain / "index_vectors.npy").exists()
    assert not isinstance(read_bundle(plain).index["vectors"], np.memmap)
    # The vectors are covered by the manifest.
    stored = np.load(path / "index_vectors.npy")
    np.save(path / "index_vectors.npy", stored[::-1].copy())
    with pytest.raises(BundleError, match="index_vectors.npy does not match its checksum"):
        read_bundle(path)


def test_a_bundle_of_the_format_before_familiarity_is_refused_not_served_without_refusals(
    tmp_path, bundle_parts
):
    """A format-2 bundle's best-match threshold means nothing to the familiarity rule; loading it
    would answer every photo as in the catalog, so it is refused with what to do (checksums kept
    valid, so the format is what refuses it)."""
    path = write_bundle(tmp_path / "bundle", bundle_parts[0]).resolve()
    config = json.loads((path / "config.json").read_text())
    config["bundle_format"] = 2
    (path / "config.json").write_text(json.dumps(config))
    files = json.loads((path / "files.json").read_text())
    files["config.json"] = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()
    (path / "files.json").write_text(json.dumps(files))
    with pytest.raises(BundleError, match="has format 2, expected 3; package it again"):
        read_bundle(path)
