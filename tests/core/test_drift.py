"""Drift figures (Evidently) on vectors whose shift is known: a moved embedding cloud, more photos
sorted into the wrong category and lower confidence each cross their threshold; a sample of the same
photos does not, nor does an update of one category; too few photos never warn."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.drift import DriftThresholds, drift_report, reference_sample

CATEGORIES = np.array(["bracelet", "necklace", "ring"])


def _photos(
    n: int,
    seed: int,
    shift: float = 0.0,
    confidence: tuple = (8, 2),
    shares=None,
    mistaken: float = 0.05,
):
    """`n` photos; the classifier sorts a `mistaken` share of them into another category."""
    rng = np.random.default_rng(seed)
    category = rng.choice(CATEGORIES, n, p=shares)
    wrong = rng.random(n) < mistaken
    other = CATEGORIES[(np.searchsorted(CATEGORIES, category) + rng.integers(1, 3, n)) % 3]
    return {
        "category": category,
        "predicted": np.where(wrong, other, category),
        "confidence": rng.beta(*confidence, n).astype(np.float32),
        "embeddings": (rng.normal(size=(n, 16)) + shift).astype(np.float32),
    }


REFERENCE = _photos(600, seed=0)


def test_a_sample_of_the_same_photos_raises_no_warning():
    _, figures = drift_report(REFERENCE, _photos(200, seed=1), DriftThresholds())
    assert figures["warnings"] == [] and figures["crossed"] == []
    assert figures["agreement"]["p_value"] > 0.01
    assert 0.35 < figures["embeddings"]["roc_auc"] < 0.65


@pytest.mark.parametrize(
    "change, words",
    [
        ({"shift": 0.6}, "embeddings are told apart"),
        ({"confidence": (3, 3)}, "less sure"),
        ({"mistaken": 0.5}, "in their folder's category"),
    ],
)
def test_each_kind_of_shift_crosses_its_own_threshold(change, words):
    html, figures = drift_report(REFERENCE, _photos(200, seed=1, **change), DriftThresholds())
    assert len(figures["warnings"]) == 1 and words in figures["warnings"][0]
    assert "<html" in html.lower() and len(html) > 10_000  # Evidently's own reports


def test_too_few_new_photos_report_figures_but_never_warn():
    thresholds = DriftThresholds.from_config({"min_new_photos": 30, "unknown": 1})
    for count in (1, 2, 20):  # Evidently's embedding model would split too few photos badly
        _, figures = drift_report(REFERENCE, _photos(count, seed=2, confidence=(1, 8)), thresholds)
        assert figures["too_few_new_photos"] and figures["warnings"] == []
        assert figures["embeddings"]["roc_auc"] is None
    assert any("confidence" in line for line in figures["crossed"])  # 20 photos: still a figure


def test_an_update_of_one_category_is_compared_with_that_category():
    """Forty new rings look like the held-out rings: no warning, although rings alone differ from
    the whole reference (other category mix, embeddings that differ by category)."""
    offsets = {name: 1.5 * i for i, name in enumerate(CATEGORIES)}

    def by_category(n: int, seed: int, only: str | None = None):
        photos = _photos(n, seed, shares=None if only is None else [0, 0, 1])
        photos["embeddings"] += np.array([offsets[c] for c in photos["category"]])[:, None]
        return photos

    reference = by_category(900, seed=0)
    _, figures = drift_report(reference, by_category(40, seed=1, only="ring"), DriftThresholds())
    assert figures["warnings"] == [], figures
    assert figures["category_shares"]["new"] == {"ring": 1.0}  # reported, not tested
    assert figures["matched_reference_photos"] == np.count_nonzero(reference["category"] == "ring")
    assert figures["embeddings"]["roc_auc"] < 0.65
    shifted = by_category(40, seed=1, only="ring")
    shifted["embeddings"] += 1.0
    assert drift_report(reference, shifted, DriftThresholds())[1]["warnings"]


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
    names = list(CATEGORIES)
    one = reference_sample(categories, probabilities, embeddings, names, size=10, seed=4)
    two = reference_sample(categories, probabilities, embeddings, names, size=10, seed=4)
    assert len(one["category"]) == 10 and all(np.array_equal(one[k], two[k]) for k in one)
    rows = (one["embeddings"][:, 0] // 2).astype(int)
    np.testing.assert_allclose(one["confidence"], probabilities[rows].max(axis=1))
    assert list(one["predicted"]) == list(CATEGORIES[probabilities[rows].argmax(axis=1)])
    whole = reference_sample(categories, probabilities, embeddings, names, size=1000, seed=4)
    assert len(whole["category"]) == 50


def test_photos_the_classifier_is_surer_of_raise_no_confidence_warning():
    _, figures = drift_report(
        REFERENCE, _photos(200, seed=1, confidence=(30, 1)), DriftThresholds()
    )
    assert figures["confidence"]["p_value"] < 0.01  # different, but surer: no risk
    assert figures["warnings"] == []
