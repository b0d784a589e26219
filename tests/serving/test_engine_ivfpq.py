"""The recommendation engine over an IVF-PQ index: category partitions, memory-mapped vectors, and
the same answers as exact search where every category is small enough to search exactly."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.bundle import BundleError, read_bundle
from jewelry_pipeline.core.search import EmbeddingIndex
from jewelry_pipeline.serving.engine import RecommendationEngine
from tests.serving.conftest import catalog_photos

PHOTOS = catalog_photos()


def _ivfpq_bundle(path, tmp_path, partitions=None):
    """The bundle at `path` with its index rebuilt as IVF-PQ (partitioned by the catalog's
    categories unless told otherwise), its vectors memory-mapped as a bundle reads them."""
    bundle = read_bundle(path)
    arrays = bundle.index
    labels = bundle.catalog["category"].to_numpy() if partitions is None else partitions
    index = EmbeddingIndex(arrays["item_ids"], arrays["vectors"], "ivfpq", partitions=labels)
    np.save(tmp_path / "index_vectors.npy", index.vectors)
    ivfpq = {**arrays, **index.to_arrays()}
    ivfpq["vectors"] = np.load(tmp_path / "index_vectors.npy", mmap_mode="r")
    bundle.index = ivfpq
    return bundle


@pytest.fixture(scope="module")
def engines(tiny_combined_bundle, tmp_path_factory):
    exact = RecommendationEngine(read_bundle(tiny_combined_bundle), "exact")
    bundle = _ivfpq_bundle(tiny_combined_bundle, tmp_path_factory.mktemp("ivfpq"))
    return exact, RecommendationEngine(bundle, "ivfpq")


def test_an_ivfpq_engine_answers_as_exact_search_does(engines):
    exact, ivfpq = engines
    assert ivfpq.index.backend == "ivfpq" and isinstance(ivfpq.index.vectors, np.memmap)
    features = exact.features(PHOTOS[12:13])
    for category in (None, "necklace", "ring"):
        want = exact.recommend(features, k=5, category=category)
        got = ivfpq.recommend(features, k=5, category=category)
        assert got["items"] == want["items"] and got["cluster"] == want["cluster"]
    assert {item["category"] for item in got["items"]} == {"ring"}
    assert ivfpq.recommend_by_id("item025", k=4) == {
        **exact.recommend_by_id("item025", k=4),
        "model_version": ivfpq.version,
    }


def test_an_index_partitioned_otherwise_than_the_catalog_is_refused(tiny_combined_bundle, tmp_path):
    categories = read_bundle(tiny_combined_bundle).catalog["category"].to_numpy()
    bundle = _ivfpq_bundle(tiny_combined_bundle, tmp_path, partitions=categories[::-1])
    with pytest.raises(BundleError, match="partitions that are not its categories"):
        RecommendationEngine(bundle, "broken")
