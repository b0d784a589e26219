"""Familiarity: the reference sample of training photos, and each photo's score against it."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.familiarity import FamiliarityReference


def test_the_score_is_the_mean_cosine_to_the_nearest_reference_vectors():
    reference = FamiliarityReference.sample(
        np.array([[1, 0], [0, 1], [-1, 0]], np.float32), np.array(["a", "a", "b"]), 10, 2, 0
    )
    scores = reference.score(np.array([[2, 0], [1, 1], [0, -3]], np.float32))
    # [1, 0]: cosines 1, 0, -1 -> mean of the two best 0.5; [1, 1]: 0.707, 0.707, -0.707;
    # [0, -1]: 0, -1, 0 -> 0.
    np.testing.assert_allclose(scores, [0.5, np.sqrt(0.5), 0.0], atol=1e-3)
    chunked = reference.score(np.array([[2, 0], [1, 1], [0, -3]], np.float32), chunk=1)
    np.testing.assert_array_equal(chunked, scores)


def test_the_sample_keeps_each_categorys_share_is_seeded_and_round_trips_as_stored():
    rng = np.random.default_rng(3)
    pooled = rng.normal(size=(1000, 8)).astype(np.float32)
    categories = np.array(["a"] * 800 + ["b"] * 200)
    first = FamiliarityReference.sample(pooled, categories, 100, 10, seed=5)
    again = FamiliarityReference.sample(pooled, categories, 100, 10, seed=5)
    other = FamiliarityReference.sample(pooled, categories, 100, 10, seed=6)
    assert len(first.vectors) == 100
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert not np.array_equal(first.vectors, other.vectors)
    kept_b = [
        np.isclose(first.vectors @ (row / np.linalg.norm(row)), 1, atol=1e-3).any()
        for row in pooled[800:]
    ]
    assert sum(kept_b) == 20  # b is a fifth of the photos, so a fifth of the sample
    stored = first.to_arrays()
    assert stored["vectors"].dtype == np.float16
    loaded = FamiliarityReference.from_arrays(stored)
    queries = rng.normal(size=(5, 8))
    np.testing.assert_array_equal(loaded.score(queries), first.score(queries))


def test_neighbours_are_capped_by_the_reference_and_bad_references_are_refused():
    reference = FamiliarityReference.sample(np.eye(3), np.array(["a", "b", "c"]), 10, 50, 0)
    assert reference.neighbours == 3
    with pytest.raises(ValueError, match="at least one vector"):
        FamiliarityReference(np.zeros((0, 3), np.float32), 1)
    with pytest.raises(ValueError, match="neighbours must be at least 1"):
        FamiliarityReference(np.eye(3, dtype=np.float32), 0)


def test_scores_stay_within_minus_one_and_one_despite_half_precision_rounding():
    pooled = np.random.default_rng(0).normal(size=(500, 64)).astype(np.float32)
    reference = FamiliarityReference.sample(pooled, np.zeros(500, str), 1000, 1, 0)
    raw = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)) @ reference.vectors.T
    assert raw.max() > 1.0  # the rounding the clip is for
    scores = reference.score(pooled)
    assert scores.max() <= 1.0 and scores.min() >= -1.0
