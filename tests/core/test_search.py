"""Tests for the embedding index (exact, HNSW and IVF-PQ) and retrieval metrics."""

from dataclasses import replace

import faiss
import numpy as np
import pytest

from jewelry_pipeline.core.ivfpq import IvfPqLists, IvfPqSettings
from jewelry_pipeline.core.metrics import precision_and_ap_at_k
from jewelry_pipeline.core.search import EmbeddingIndex, l2_normalise, top_k_of_rows


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


def _clustered(n: int, d: int, seed: int, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """`n` vectors around 40 random centres, labelled by their centre's partition (4 of them)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    drawn = rng.integers(0, 40, n)
    vectors = (centres[drawn] + noise * rng.normal(size=(n, d))).astype(np.float32)
    return vectors, np.array(["a", "b", "c", "d"])[drawn % 4]


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(truth, found)]))


@pytest.fixture(scope="module")
def ivfpq_case():
    """12,000 clustered 32-d vectors in 4 partitions, one trained IVF-PQ index per partition
    (`exact_below` lowered so each is trained), and exact search over the same rows."""
    vectors, labels = _clustered(12_000, 32, seed=2)
    ids = [f"i{i}" for i in range(len(vectors))]
    settings = IvfPqSettings(pq_bytes=16, nprobe=16, rerank=200, exact_below=1000)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # k-means threads only contend on a small, shared machine
    try:
        index = EmbeddingIndex(ids, vectors, "ivfpq", ivfpq=settings, partitions=labels).build()
    finally:
        faiss.omp_set_num_threads(threads)
    noise = np.random.default_rng(3).normal(size=(60, 32)).astype(np.float32)
    return index, EmbeddingIndex(ids, vectors, partitions=labels), vectors[:60] + 0.05 * noise


def test_ivfpq_finds_what_exact_search_finds(ivfpq_case):
    index, exact, queries = ivfpq_case
    assert sorted(index._ivf.indexes) == [0, 1, 2, 3]  # one trained index per partition
    assert sum(part.ntotal for part in index._ivf.indexes.values()) == 12_000
    found, scores = index.search(queries, 10)
    truth, _ = exact.search(queries, 10)
    assert _recall(truth, found) >= 0.9
    # The scores are the exact cosines of the rows returned, best first (re-ranked from vectors).
    expected = np.einsum("qd,qkd->qk", l2_normalise(queries), exact.vectors[found])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_ivfpq_partition_keeps_one_category(ivfpq_case):
    index, exact, queries = ivfpq_case
    labels = index.partitions.labels()
    found, _ = index.search(queries, 10, partition="c")
    assert (labels[found] == "c").all()
    truth, _ = exact.search(queries, 10, allowed=labels == "c")
    assert _recall(truth, found) >= 0.9
    # An easy case: the query is a catalog row of that category, so it is its own best match.
    own = np.flatnonzero(labels == "c")[:5]
    found, scores = index.search(exact.vectors[own], 1, partition="c")
    assert found[:, 0].tolist() == own.tolist() and np.allclose(scores, 1.0, atol=1e-5)
    # A partition combined with a mask: rows pass both.
    allowed = np.arange(len(labels)) % 2 == 0
    found, _ = index.search(queries[:10], 10, allowed=allowed, partition="c")
    assert (labels[found] == "c").all() and allowed[found].all()
    # No row has an unknown partition.
    assert index.search(queries[:2], 10, partition="tiara")[0].shape == (2, 0)


def test_ivfpq_without_a_filter_scans_the_nearest_lists_of_every_partition(ivfpq_case):
    index, _, queries = ivfpq_case
    labels = index.partitions.labels()
    queries = l2_normalise(queries[:20])
    one = IvfPqLists(replace(index.ivfpq, nprobe=1), index._ivf.indexes, True)
    found = one.short_list([0, 1, 2, 3], queries, 50)
    nearest = np.argmax(
        [index._ivf.indexes[key].quantizer.search(queries, 1)[0][:, 0] for key in range(4)], axis=0
    )
    for row, best in zip(found, nearest):  # one list, in the partition of the nearest centroid
        assert set(labels[row[row >= 0]]) == {index.partitions.names[best]}
    # Two lists in all: never more than two partitions, and the short list stays full.
    two = IvfPqLists(replace(index.ivfpq, nprobe=2), index._ivf.indexes, True)
    found = two.short_list([0, 1, 2, 3], queries, 50)
    assert all(len(set(labels[row[row >= 0]])) <= 2 for row in found) and (found >= 0).all()


def test_partition_filter_equals_the_mask_for_exact_and_hnsw():
    vectors, labels = _clustered(2000, 16, seed=4)
    ids = [str(i) for i in range(2000)]
    queries = vectors[:20]
    for backend in ("exact", "hnsw"):
        index = EmbeddingIndex(ids, vectors, backend).build().with_partitions(labels)
        by_partition = index.search(queries, 7, partition="b")
        by_mask = index.search(queries, 7, allowed=labels == "b")
        assert np.array_equal(by_partition[0], by_mask[0])
        np.testing.assert_array_equal(by_partition[1], by_mask[1])
    with pytest.raises(ValueError, match="no partitions"):
        EmbeddingIndex(ids, vectors).search(queries, 3, partition="b")


def test_ivfpq_falls_back_to_exact_search_when_the_lists_hold_too_few(ivfpq_case, monkeypatch):
    import jewelry_pipeline.core.search as search

    index, exact, queries = ivfpq_case
    exact_searches = []
    monkeypatch.setattr(
        search,
        "top_k_of_rows",
        lambda *args: exact_searches.append(args) or top_k_of_rows(*args),
    )
    # Five allowed rows far apart: the one list probed per partition holds fewer than 4 of them.
    few = np.zeros(12_000, bool)
    few[[3, 2000, 5000, 8000, 11_999]] = True
    narrow = EmbeddingIndex(index.item_ids, index.vectors, "ivfpq", partitions=index.partitions)
    narrow._ivf = IvfPqLists(replace(index.ivfpq, nprobe=1), index._ivf.indexes, True)
    found, scores = narrow.search(queries[:3], 4, allowed=few)
    assert len(exact_searches) == 3  # every query fell back
    truth, truth_scores = exact.search(queries[:3], 4, allowed=few)
    assert np.array_equal(found, truth) and np.allclose(scores, truth_scores, atol=1e-6)
    found, _ = narrow.search(queries[:3], 10, allowed=few)  # more than exist: all five
    assert found.shape == (3, 5) and set(found[0]) == set(np.flatnonzero(few))
    # With every list probed, the short lists hold all five: no exact search.
    exact_searches.clear()
    narrow._ivf = IvfPqLists(replace(index.ivfpq, nprobe=1000), index._ivf.indexes, True)
    assert np.array_equal(narrow.search(queries[:3], 4, allowed=few)[0], truth)
    assert exact_searches == []


def test_ivfpq_small_partitions_and_small_indexes_are_searched_exactly():
    vectors, labels = _clustered(3000, 16, seed=5)
    ids = [str(i) for i in range(3000)]
    exact = EmbeddingIndex(ids, vectors, partitions=labels)
    for partitions in (labels, None):  # every partition below exact_below; one index, too small
        index = EmbeddingIndex(ids, vectors, "ivfpq", partitions=partitions).build()
        assert index._ivf.indexes == {}
        assert np.array_equal(index.search(vectors[:9], 5)[0], exact.search(vectors[:9], 5)[0])
    index.with_partitions(labels)  # labelled afterwards: the partition is a selector
    found, _ = index.search(vectors[:9], 5, partition="a")
    assert np.array_equal(found, exact.search(vectors[:9], 5, partition="a")[0])


def test_ivfpq_save_and_load_memory_maps_the_vectors(tmp_path, ivfpq_case):
    index, _, queries = ivfpq_case
    path = index.save(tmp_path / "index.npz")
    assert (tmp_path / "index_vectors.npy").is_file()
    with np.load(path) as data:
        assert "vectors" not in data.files and data["ivfpq_bytes"].dtype == np.uint8
    loaded = EmbeddingIndex.load(path)
    assert isinstance(loaded.vectors, np.memmap) and loaded.vectors.mode == "r"
    assert loaded.ivfpq == index.ivfpq and list(loaded.partitions.names) == ["a", "b", "c", "d"]
    for partition in (None, "b"):
        again = loaded.search(queries, 10, partition=partition)
        before = index.search(queries, 10, partition=partition)
        assert np.array_equal(again[0], before[0]) and np.array_equal(again[1], before[1])
    # Saving a loaded index beside its own vectors leaves the mapped file as it is.
    stamp = (tmp_path / "index_vectors.npy").stat().st_mtime_ns
    loaded.save(path)
    assert (tmp_path / "index_vectors.npy").stat().st_mtime_ns == stamp
    assert np.array_equal(
        EmbeddingIndex.load(path).search(queries, 3)[0], index.search(queries, 3)[0]
    )


def test_ivfpq_settings():
    settings = IvfPqSettings.from_config({"lists": "auto", "pq_bytes": 48, "rerank": 50}, seed=7)
    assert (settings.lists, settings.rerank, settings.seed) == (0, 50, 7)
    assert settings.lists_for(2_500_000) == 6325  # about 4 * sqrt(rows)
    assert settings.lists_for(20_000) == 512  # never more than rows / 39
    assert settings.lists_for(10) == 1
    assert IvfPqSettings(lists=100).lists_for(1_000_000) == 100
    assert settings.sub_quantizers(192) == 96 and settings.sub_quantizers(100) == 50
    assert settings.sub_quantizers(97) == 1  # a prime dimension leaves one sub-quantizer
    assert IvfPqSettings.from_array(settings.to_array()) == settings
    with pytest.raises(ValueError, match="unknown ivfpq parameters"):
        IvfPqSettings.from_config({"nlist": 5})
    with pytest.raises(ValueError, match="rerank must be >= 1"):
        IvfPqSettings(rerank=0)


def test_top_k_of_rows_reads_in_chunks(monkeypatch):
    import jewelry_pipeline.core.search as search

    monkeypatch.setattr(search, "EXACT_CHUNK", 7)
    vectors = l2_normalise(np.random.default_rng(6).normal(size=(50, 8)))
    queries = vectors[[4, 30]]
    index = EmbeddingIndex([str(i) for i in range(50)], vectors)
    found, scores = top_k_of_rows(vectors, queries, 5)
    truth, truth_scores = index.search(queries, 5)
    assert np.array_equal(found, truth) and np.allclose(scores, truth_scores)
    rows = np.arange(1, 50, 3)
    found, _ = top_k_of_rows(vectors, queries, 4, rows)
    allowed = np.isin(np.arange(50), rows)
    assert np.array_equal(found, index.search(queries, 4, allowed=allowed)[0])


def test_cluster_centroids_read_in_chunks_equal_plain_means(monkeypatch, tmp_path):
    import jewelry_pipeline.core.search as search
    from jewelry_pipeline.core.search import ClusterCentroids

    monkeypatch.setattr(search, "EXACT_CHUNK", 5)
    rng = np.random.default_rng(8)
    vectors = l2_normalise(rng.normal(size=(37, 6)))
    np.save(tmp_path / "v.npy", vectors)
    categories = rng.choice(["ring", "chain"], 37)
    clusters = rng.integers(-1, 3, 37)
    centroids = ClusterCentroids.of(
        np.load(tmp_path / "v.npy", mmap_mode="r"), categories, clusters
    )
    for category in ("ring", "chain"):
        ids, means = centroids.by_category[category]
        for cluster, mean in zip(ids, means):
            rows = (categories == category) & (clusters == cluster)
            np.testing.assert_allclose(
                mean, l2_normalise(vectors[rows].mean(0)[None])[0], atol=1e-6
            )
        assert sorted(ids) == sorted(set(clusters[(categories == category) & (clusters >= 0)]))


def test_rows_of_a_memory_mapped_file_are_read_as_indexing_would_even_once_deleted(tmp_path):
    vectors = l2_normalise(np.random.default_rng(0).normal(size=(500, 12)))
    np.save(tmp_path / "v.npy", vectors)
    ids = np.arange(500).astype(str)
    mapped = EmbeddingIndex(ids, np.load(tmp_path / "v.npy", mmap_mode="r"), "ivfpq")
    (tmp_path / "v.npy").unlink()  # as a bundle's older version is removed under a running worker
    rows = np.array([499, 3, 3, 0, 250])
    np.testing.assert_array_equal(mapped.rows(rows), vectors[rows])  # pread, no mapping
    in_memory = EmbeddingIndex(ids, vectors)
    np.testing.assert_array_equal(in_memory.rows(rows), in_memory.vectors[rows])
