"""Drift figures (Evidently) on vectors whose shift is known: a moved embedding cloud, other
category shares and lower confidence each cross their threshold; a sample of the same cloud does
not; too few photos never warn."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.drift import DriftThresholds, drift_report, reference_sample

CATEGORIES = np.array(["bracelet", "necklace", "ring"])


def _photos(n: int, seed: int, shift: float = 0.0, confidence: tuple = (8, 2), shares=None):
    rng = np.random.default_rng(seed)
    return {
        "category": rng.choice(CATEGORIES, n, p=shares),
        "confidence": rng.beta(*confidence, n).astype(np.float32),
        "embeddings": (rng.normal(size=(n, 16)) + shift).astype(np.float32),
    }


REFERENCE = _photos(600, seed=0)


def test_a_sample_of_the_same_photos_raises_no_warning():
    _, figures = drift_report(REFERENCE, _photos(200, seed=1), DriftThresholds())
    assert figures["warnings"] == [] and figures["crossed"] == []
    assert figures["category_shares"]["p_value"] > 0.01
    assert 0.35 < figures["embeddings"]["roc_auc"] < 0.65


@pytest.mark.parametrize(
    "change, words",
    [
        ({"shift": 0.6}, "embeddings are told apart"),
        ({"confidence": (3, 3)}, "confidence differs"),
        ({"shares": [0.8, 0.1, 0.1]}, "category shares differ"),
    ],
)
def test_each_kind_of_shift_crosses_its_own_threshold(change, words):
    html, figures = drift_report(REFERENCE, _photos(200, seed=1, **change), DriftThresholds())
    assert len(figures["warnings"]) == 1 and words in figures["warnings"][0]
    assert "<html" in html.lower() and len(html) > 10_000  # Evidently's own report


def test_too_few_new_photos_report_figures_but_never_warn():
    thresholds = DriftThresholds.from_config({"min_new_photos": 30, "unknown": 1})
    _, figures = drift_report(REFERENCE, _photos(20, seed=2, shift=3.0), thresholds)
    assert figures["too_few_new_photos"] and figures["warnings"] == []
    assert any("embeddings" in line for line in figures["crossed"])


def test_many_new_photos_are_sampled_reproducibly():
    thresholds = DriftThresholds(max_new_photos=100)
    current = _photos(500, seed=3, shift=0.4)
    first = drift_report(REFERENCE, current, thresholds, seed=5)[1]
    again = drift_report(REFERENCE, current, thresholds, seed=5)[1]
    assert first["compared_new_photos"] == 100 and first["new_photos"] == 500
    assert first == again


def test_reference_sample_is_seeded_and_bounded():
    probabilities = np.random.default_rng(0).dirichlet([1, 1, 1], 50).astype(np.float32)
    embeddings = np.arange(100, dtype=np.float32).reshape(50, 2)
    categories = np.repeat(CATEGORIES[:2], 25)
    one = reference_sample(categories, probabilities, embeddings, size=10, seed=4)
    two = reference_sample(categories, probabilities, embeddings, size=10, seed=4)
    assert len(one["category"]) == 10 and all(np.array_equal(one[k], two[k]) for k in one)
    rows = (one["embeddings"][:, 0] // 2).astype(int)
    np.testing.assert_allclose(one["confidence"], probabilities[rows].max(axis=1))
    whole = reference_sample(categories, probabilities, embeddings, size=1000, seed=4)
    assert len(whole["category"]) == 50
