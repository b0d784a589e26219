"""Catalog update on a tiny real bundle: new photos vetted, embedded by the bundle's own models and
added; `kedro run --pipelines catalog_update` then served, where a new photo finds itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jewelry_pipeline.core.bundle import read_bundle
from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.folders import list_image_folder
from jewelry_pipeline.pipelines.catalog_update.nodes import (
    decode_new_photos,
    embed_new_photos,
    grow_bundle,
)
from jewelry_pipeline.serving.engine import RecommendationEngine
from jewelry_testing.servers import start_bentoml
from tests.conftest import image_bytes, random_photo
from tests.serving.conftest import CLASSES, IMAGE_SIZE, catalog_photos, make_bundle

INGESTION = {"min_images_per_category": 1, "workers": 2, "near_duplicate_max_hamming": -1}
PACKAGE = {"thumbnail_size": 64}


def _new_photos(folder, with_catalog_copy: bool = True):
    """Two new photos per known category, one of an unknown category and (optionally) a copy of a
    catalog photo."""
    for c, category in enumerate(CLASSES):
        (folder / category).mkdir(parents=True)
        for i in range(2):
            photo = random_photo(7000 + 10 * c + i, (2 * IMAGE_SIZE, IMAGE_SIZE + 8))
            (folder / category / f"new_{i}.png").write_bytes(image_bytes(photo, "PNG"))
    (folder / "tiara").mkdir()
    (folder / "tiara" / "t.png").write_bytes(image_bytes(random_photo(7999, (40, 40)), "PNG"))
    if with_catalog_copy:
        catalog_photo = catalog_photos(0)[3]  # item003 of make_bundle(), a bracelet
        (folder / "bracelet" / "again.png").write_bytes(image_bytes(catalog_photo, "PNG"))
    return folder


@pytest.fixture
def bundle_path(tmp_path):
    return make_bundle(tmp_path / "bundle", source="combined")


def test_new_photos_are_vetted_embedded_and_added(tmp_path, bundle_path):
    bundle = read_bundle(bundle_path)
    # the catalog's item003 is stored with the sha256 of its JPEG, not of our PNG copy: give the
    # catalog that copy's id, so the copy is recognised as an item already in the catalog
    import hashlib

    new = list_image_folder(_new_photos(tmp_path / "new"))
    again = hashlib.sha256(new.read("bracelet/again.png")).hexdigest()[:16]
    bundle.catalog.loc[3, "item_id"] = again
    bundle.index["item_ids"] = bundle.index["item_ids"].astype(object)
    bundle.index["item_ids"][3] = again
    store, manifest, rejects = decode_new_photos(new, bundle, INGESTION)
    assert sorted(manifest["path"]) == sorted(f"{c}/new_{i}.png" for c in CLASSES for i in range(2))
    reasons = dict(zip(rejects["path"], rejects["reason"]))
    assert reasons == {"tiara/t.png": "unknown_category", "bracelet/again.png": "duplicate"}
    assert store.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)  # the bundle's own input size

    embedded = embed_new_photos(
        store, manifest, bundle, {"batch_size": 2, "chunk_rows": 3, "work_dir": tmp_path / "chunks"}
    )
    engine = RecommendationEngine(bundle, "tiny")
    rows = store[manifest["store_index"].to_numpy()]
    for i, category in enumerate(manifest["category"]):  # what the service would query with
        query = engine.features(rows[i : i + 1])
        expected = query.vector(0, CLASSES.index(category))
        np.testing.assert_allclose(embedded["vectors"][i], expected, atol=1e-5)
    assert set(embedded["clusters"]) <= {0, 1}

    names = {"names": {CLASSES[0]: {"0": "Named by the shop"}}}
    bundle.config["substyles"] = names  # as a merchandiser's edit leaves it
    contents, summary = grow_bundle(
        bundle, manifest, embedded, new, store, rejects, PACKAGE, INGESTION
    )
    assert contents.substyles == names  # the update keeps the shop's names
    assert summary["added"] == 6 and summary["refused"] == 2
    assert len(contents.catalog) == len(contents.thumbnails) == len(contents.index["item_ids"])
    assert len(contents.catalog) == len(bundle.catalog) + 6
    assert contents.classifier is bundle.classifier and contents.version["catalog_update"]
    # Every item keeps its own vector, found by its id: the new ones as embedded, the old ones as
    # they were; the catalog follows the index order.
    grown = dict(zip(contents.index["item_ids"], contents.index["vectors"]))
    assert list(contents.catalog["item_id"]) == list(contents.index["item_ids"])
    for i, item_id in enumerate(manifest["item_id"]):
        np.testing.assert_allclose(grown[item_id], embedded["vectors"][i], atol=1e-6)
    for item_id, vector in zip(bundle.index["item_ids"], bundle.index["vectors"]):
        np.testing.assert_allclose(grown[item_id], vector, atol=1e-6)
    categories = contents.catalog.set_index("item_id")["category"]
    assert list(categories[manifest["item_id"]]) == list(manifest["category"])


def test_nothing_to_add_changes_nothing(tmp_path, bundle_path):
    folder = tmp_path / "only-unknown"
    (folder / "tiara").mkdir(parents=True)
    (folder / "tiara" / "t.png").write_bytes(image_bytes(random_photo(1, (40, 40)), "PNG"))
    with pytest.raises(UserInputError, match="No new photo can be added"):
        decode_new_photos(list_image_folder(folder), read_bundle(bundle_path), INGESTION)


@pytest.mark.slow
def test_catalog_update_through_kedro_then_served_without_restart(tmp_path, kedro_project):
    """A service runs on the project's bundle; `kedro run --pipelines catalog_update` grows the
    bundle; the same service, not restarted, serves the new version, where a new photo's upload
    finds its new item first and the item's thumbnail is there."""
    import time

    import httpx

    bundle = make_bundle(tmp_path / "made" / "bundle", source="combined")
    target = kedro_project / "data" / "07_model_output" / "bundle"
    shutil.copytree(bundle.resolve(), target)
    new = _new_photos(tmp_path / "new", with_catalog_copy=False)
    server = start_bentoml(
        target, tmp_path / "serve.log", {"JEWELRY_WORKERS": "1", "JEWELRY_RELOAD_SECONDS": "1"}
    )
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            before = client.get("/status").json()["model_version"]["bundle_digest"]
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kedro",
                    "run",
                    "--pipelines",
                    "catalog_update",
                    "--params",
                    f"new_dir={new},ingestion.min_images_per_category=1",
                ],
                cwd=kedro_project,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, result.stderr[-4000:]
            output = result.stdout + result.stderr  # nothing that is not the user's business
            for noise in ("absl::InitializeLog", "oneDNN", "autologging", "WARNING", "Warning:"):
                assert noise not in output, output[-6000:]
            grown = read_bundle(target)
            assert len(grown.catalog) == 30 + 6
            # the drift check ran against the bundle's reference, which the grown bundle keeps
            reporting = kedro_project / "data" / "08_reporting"
            drift = json.loads((reporting / "catalog_update_drift.json").read_text())
            assert drift["new_photos"] == 6 and drift["too_few_new_photos"] is True
            assert "<html" in (reporting / "catalog_update_drift.html").read_text().lower()
            assert grown.drift_reference is not None
            from mlflow.tracking import MlflowClient

            client_db = MlflowClient(f"sqlite:///{kedro_project}/mlruns/mlflow.db")
            (run,) = client_db.search_runs(
                [e.experiment_id for e in client_db.search_experiments()],
                "tags.`catalog_update.reason` = 'catalog update'",
            )
            assert run.data.metrics["drift.new_photos"] == 6
            assert 0 <= run.data.metrics["drift.confidence_p_value"] <= 1
            assert "drift.embedding_roc_auc" not in run.data.metrics  # 6 photos: too few
            assert "catalog_update_drift.html" in {
                a.path for a in client_db.list_artifacts(run.info.run_id)
            }
            added = grown.catalog.iloc[-6:]
            deadline = time.monotonic() + 60
            while client.get("/status").json()["model_version"]["bundle_digest"] == before:
                assert time.monotonic() < deadline, "the grown bundle was never served"
                time.sleep(0.5)
            photo = (new / str(added.iloc[0]["path"])).read_bytes()
            answer = client.post(
                "/recommend",
                files={"image": ("new.png", photo, "image/png")},
                data={"k": "3", "category": str(added.iloc[0]["category"])},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["items"][0]["item_id"] == added.iloc[0]["item_id"]
            thumbnail = client.get(f"/items/{added.iloc[0]['item_id']}/thumbnail")
            assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"
    finally:
        server.stop()


def test_an_ivfpq_bundle_grows_with_its_partitions(tmp_path, bundle_path):
    """A bundle whose index is IVF-PQ, partitioned by category and memory-mapped, grows: the new
    rows join their category's partition and the written bundle serves them."""
    from jewelry_pipeline.core.bundle import write_bundle
    from jewelry_pipeline.core.search import EmbeddingIndex

    bundle = read_bundle(bundle_path)
    arrays = bundle.index
    index = EmbeddingIndex(
        arrays["item_ids"], arrays["vectors"], "ivfpq", partitions=bundle.catalog["category"]
    )
    bundle.index = {**arrays, **index.to_arrays()}
    new = list_image_folder(_new_photos(tmp_path / "new", with_catalog_copy=False))
    store, manifest, rejects = decode_new_photos(new, bundle, INGESTION)
    embedded = embed_new_photos(
        store, manifest, bundle, {"batch_size": 8, "chunk_rows": 8, "work_dir": tmp_path / "c"}
    )
    contents, _ = grow_bundle(bundle, manifest, embedded, new, store, rejects, PACKAGE, INGESTION)
    grown = read_bundle(write_bundle(tmp_path / "grown", contents))
    assert isinstance(grown.index["vectors"], np.memmap)  # index_vectors.npy, memory-mapped
    assert list(grown.index["partition_names"][grown.index["partition_codes"]]) == list(
        grown.catalog["category"]
    )
    engine = RecommendationEngine(grown, "grown")
    added = grown.catalog.iloc[-1]
    found = engine.recommend_by_id(str(added["item_id"]), k=3)
    assert {item["category"] for item in found["items"]} == {added["category"]}
