"""The recommendation engine over an IVF-PQ index: category partitions, memory-mapped vectors, and
the same answers as exact search where every category is small enough to search exactly."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.answers import AnswerPolicy
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


def _grown_bundles(path, tmp_path, per_category: int):
    """The bundle with `per_category` made-up items added to each category (a real item's vector
    plus noise, its thumbnail and cluster), as two bundles: exact search, and IVF-PQ lists trained
    per category (`exact_below` 0, every category above MIN_TRAIN_ROWS)."""
    import pandas as pd

    from jewelry_pipeline.core.ivfpq import IvfPqSettings

    exact_bundle, ivf_bundle = read_bundle(path), read_bundle(path)
    catalog, vectors = exact_bundle.catalog, np.asarray(exact_bundle.index["vectors"], np.float32)
    rng = np.random.default_rng(0)
    rows, added = [], []
    for category in sorted(catalog["category"].unique()):
        members = np.flatnonzero(catalog["category"].to_numpy() == category)
        for i in range(per_category):
            source = catalog.iloc[members[i % len(members)]]
            rows.append({**source.to_dict(), "item_id": f"extra-{category}-{i:03d}"})
            noise = rng.normal(0, 0.05, vectors.shape[1]).astype(np.float32)
            added.append(vectors[members[i % len(members)]] + noise)
    grown = pd.concat([catalog, pd.DataFrame(rows)], ignore_index=True)
    item_ids = grown["item_id"].to_numpy().astype(str)
    all_vectors = np.concatenate([vectors, np.stack(added)])
    labels = grown["category"].to_numpy()
    settings = IvfPqSettings(exact_below=0, nprobe=1024, rerank=1000)
    for bundle, backend in ((exact_bundle, "exact"), (ivf_bundle, "ivfpq")):
        index = EmbeddingIndex(item_ids, all_vectors, backend, ivfpq=settings, partitions=labels)
        arrays = {**bundle.index, **index.to_arrays()}
        if backend == "ivfpq":
            np.save(tmp_path / "index_vectors.npy", index.vectors)
            arrays["vectors"] = np.load(tmp_path / "index_vectors.npy", mmap_mode="r")
        bundle.catalog, bundle.index = grown, arrays
    return exact_bundle, ivf_bundle


def test_trained_ivf_lists_are_searched_and_answer_as_exact_search(
    tiny_combined_bundle, tmp_path, monkeypatch
):
    """Every category above the smallest trainable size: the engine short-lists through the
    trained lists (counted), and with every list scanned and re-ranked its answers are exact
    search's, within a category and across all."""
    from jewelry_pipeline.core.ivfpq import MIN_TRAIN_ROWS, IvfPqLists

    exact_bundle, ivf_bundle = _grown_bundles(tiny_combined_bundle, tmp_path, MIN_TRAIN_ROWS)
    exact = RecommendationEngine(exact_bundle, "exact")
    ivfpq = RecommendationEngine(ivf_bundle, "ivfpq")
    assert len(ivfpq.index._ivf.indexes) == len(set(exact.catalog["category"]))  # all trained
    calls = []
    short_list = IvfPqLists.short_list

    def counted(self, keys, *args, **kwargs):
        calls.append(tuple(keys))
        return short_list(self, keys, *args, **kwargs)

    monkeypatch.setattr(IvfPqLists, "short_list", counted)
    features = exact.features(PHOTOS[12:13])
    for category in (None, "necklace", "ring"):
        want = exact.recommend(features, k=8, category=category)
        got = ivfpq.recommend(features, k=8, category=category)
        assert got["items"] == want["items"] and got["cluster"] == want["cluster"]
    assert len(calls) == 3
    for engine in (exact, ivfpq):  # never sure of the category: every category's lists
        engine.answers = AnswerPolicy(min_confidence=1.0)
    want, got = exact.recommend(features, k=8), ivfpq.recommend(features, k=8)
    assert got["items"] == want["items"]
    assert sorted(calls[3:]) == [(key,) for key in sorted(ivfpq.index._ivf.indexes)]
