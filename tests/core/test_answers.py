"""How a query is answered: its category scope, an honest "not sure", and "not in our catalog"."""

from __future__ import annotations

import numpy as np
import pytest

from jewelry_pipeline.core.answers import AnswerPolicy, answer_query
from jewelry_pipeline.core.query import IndexSpec, QueryBatch
from jewelry_pipeline.core.search import EmbeddingIndex

CLASSES = ["a", "b"]
# Items 0-1 are of category a, 2-3 of b; one 2-d space per category (an autoencoder index).
ITEMS = np.array(["a", "a", "b", "b"])
INDEX = EmbeddingIndex(
    ["i0", "i1", "i2", "i3"], np.array([[1, 0], [0, 1], [1, 0.1], [0, 1]], np.float32)
)
ENCODED = IndexSpec("autoencoder")


def query(
    probability_a: float, space_a=(1.0, 0.0), space_b=(1.0, 0.0), familiarity=None
) -> QueryBatch:
    """One photo: class probabilities, its unit vector in each category's space and optionally
    its familiarity."""
    vectors = np.array([[space_a, space_b]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    probabilities = np.array([[probability_a, 1 - probability_a]], np.float32)
    return QueryBatch(
        probabilities, vectors, None if familiarity is None else np.array([familiarity])
    )


def test_a_confident_answer_searches_only_the_predicted_category():
    answer = answer_query(query(0.9), 0, INDEX, ITEMS, CLASSES, ENCODED, AnswerPolicy(0.6), k=4)
    assert (answer.predicted, answer.uncertain, answer.close_match) == (0, False, True)
    assert set(ITEMS[answer.positions]) == {"a"} and answer.confidence == pytest.approx(0.9)


def test_an_unsure_answer_searches_every_category_in_its_own_space_best_first():
    answer = answer_query(query(0.55), 0, INDEX, ITEMS, CLASSES, ENCODED, AnswerPolicy(0.6), k=4)
    assert answer.uncertain and set(ITEMS[answer.positions]) == {"a", "b"}
    assert list(answer.scores) == sorted(answer.scores, reverse=True)
    confident = answer_query(query(0.55), 0, INDEX, ITEMS, CLASSES, ENCODED, AnswerPolicy(0.5), k=4)
    assert not confident.uncertain and set(ITEMS[confident.positions]) == {"a"}


def test_a_given_category_is_never_doubted():
    answer = answer_query(
        query(0.55), 0, INDEX, ITEMS, CLASSES, ENCODED, AnswerPolicy(0.99), 4, "b"
    )
    assert not answer.uncertain and set(ITEMS[answer.positions]) == {"b"}


def test_a_photo_less_familiar_than_the_threshold_is_not_in_the_catalog():
    policy = AnswerPolicy(0.0, 0.5)
    strange = query(0.9, familiarity=0.49)
    answer = answer_query(strange, 0, INDEX, ITEMS, CLASSES, ENCODED, policy, 2)
    assert not answer.close_match and len(answer.scores) == 2  # items found, then withheld
    usual = query(0.9, familiarity=0.5)
    assert answer_query(usual, 0, INDEX, ITEMS, CLASSES, ENCODED, policy, 2).close_match
    # The best match's own similarity does not decide: a far match of a familiar photo is kept.
    far = query(0.9, space_a=(-1.0, -1.0), familiarity=0.9)
    assert answer_query(far, 0, INDEX, ITEMS, CLASSES, ENCODED, policy, 2).close_match
    # No familiarity (a bundle made without a reference): never refused.
    assert answer_query(query(0.9), 0, INDEX, ITEMS, CLASSES, ENCODED, policy, 2).close_match


def test_an_unscoped_source_searches_everything_and_within_limits_the_items():
    spec = IndexSpec("classifier")
    one_space = QueryBatch(np.array([[0.9, 0.1]], np.float32), np.array([[[1.0, 0.0]]], np.float32))
    answer = answer_query(one_space, 0, INDEX, ITEMS, CLASSES, spec, AnswerPolicy(), k=2)
    assert list(answer.positions) == [0, 2]
    within = np.array([False, True, True, True])
    limited = answer_query(
        one_space, 0, INDEX, ITEMS, CLASSES, spec, AnswerPolicy(), 2, within=within
    )
    assert 0 not in limited.positions


def test_the_policy_round_trips_and_defaults_never_doubt():
    policy = AnswerPolicy(0.4, 0.2)
    assert AnswerPolicy.from_config(policy.to_config()) == policy
    assert AnswerPolicy.from_config(None) == AnswerPolicy(0.0, -1.0)


@pytest.mark.parametrize("values", [(1.5, 0.0), (-0.1, 0.0), (0.5, 1.2), (0.5, -2.0)])
def test_thresholds_out_of_range_are_refused(values):
    with pytest.raises(ValueError, match="answers.min_"):
        AnswerPolicy(*values)
