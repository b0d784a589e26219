"""Tests for the embedding index (exact and HNSW) and retrieval metrics."""

import numpy as np
import pytest

from jewelry_pipeline.core.metrics import precision_and_ap_at_k
from jewelry_pipeline.core.search import EmbeddingIndex


def test_exact_search_orders_by_cosine_and_respects_masks():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    index = EmbeddingIndex(["a", "b", "c", "d"], vectors)
    positions, scores = index.search(np.array([[1, 0]]), 3)
    assert positions.tolist() == [[0, 1, 2]]
    assert scores[0, 0] == pytest.approx(1.0) and scores[0, 0] >= scores[0, 1] >= scores[0, 2]
    positions, _ = index.search(np.array([[1, 0]]), 2, allowed=np.array([False, False, True, True]))
    assert positions.tolist() == [[2, 3]]


def test_hnsw_agrees_with_exact_and_round_trips():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    vectors = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32))).astype(
        np.float32
    )
    ids = [str(i) for i in range(3000)]
    exact = EmbeddingIndex(ids, vectors)
    approximate = EmbeddingIndex(ids, vectors, backend="hnsw").build()
    queries = vectors[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    truth, _ = exact.search(queries, 10)
    found, _ = approximate.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert recall >= 0.9
    restored = EmbeddingIndex.from_arrays(exact.to_arrays())
    assert np.array_equal(restored.search(queries, 5)[0], exact.search(queries, 5)[0])


def test_hnsw_search_within_a_mask_returns_only_allowed_items():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4000, 16)).astype(np.float32)
    group = np.arange(4000) % 4
    ids = [str(i) for i in range(4000)]
    approximate = EmbeddingIndex(ids, vectors, backend="hnsw", ef_search=128).build()
    queries = vectors[:40] + 0.05 * rng.normal(size=(40, 16)).astype(np.float32)
    allowed = group == 2
    found, scores = approximate.search(queries, 10, allowed=allowed)
    assert allowed[found].all() and (np.diff(scores, axis=1) <= 1e-6).all()
    truth, _ = EmbeddingIndex(ids, vectors).search(queries, 10, allowed=allowed)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)]) >= 0.9
    # Fewer allowed items than k: every one comes back (from the graph, or from exact search when
    # the walk misses some).
    few = np.zeros(4000, bool)
    few[[5, 9, 13]] = True
    found, _ = approximate.search(queries[:2], 10, allowed=few)
    assert found.shape == (2, 3) and set(found[0]) == {5, 9, 13}


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown index backend"):
        EmbeddingIndex(["a"], np.ones((1, 2)), backend="magic")


def test_precision_and_average_precision():
    relevant = np.array([[1, 1, 0, 0], [0, 1, 0, 1]])
    precision, average_precision = precision_and_ap_at_k(relevant, np.array([2, 4]), 4)
    assert precision == pytest.approx(0.5)
    # query 1: (1/1 + 2/2) / 2 = 1 ; query 2: (1/2 + 2/4) / 4 = 0.25
    assert average_precision == pytest.approx((1 + 0.25) / 2)


def test_cluster_centroids_pick_the_nearest_cluster_within_the_category():
    from jewelry_pipeline.core.search import ClusterCentroids

    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [1, 0], [0, 1]], np.float32)
    categories = np.array(["ring", "ring", "ring", "ring", "chain", "chain"])
    clusters = np.array([0, 0, 1, 1, 5, -1])  # -1: unclustered, left out
    centroids = ClusterCentroids.of(vectors, categories, clusters)
    assert centroids.nearest(np.array([0.2, 0.98]), "ring") == 1
    assert centroids.nearest(np.array([0.99, 0.1]), "ring") == 0
    assert centroids.nearest(np.array([0.0, 1.0]), "chain") == 5  # its only cluster
    assert centroids.nearest(np.array([1.0, 0.0]), "tiara") is None
