"""How a photo query is answered: the category searched (or an honest "not sure" that searches every
category), the nearest items, and "not in our catalog" when the photo looks like none of the
catalog's photos (`core.familiarity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jewelry_pipeline.core.query import IndexSpec, QueryBatch
from jewelry_pipeline.core.search import EmbeddingIndex


@dataclass(frozen=True)
class AnswerPolicy:
    """The two thresholds of an answer, chosen on the validation split and stored in the bundle.

    The defaults never doubt: a bundle without a policy answers as before.
    """

    min_confidence: float = 0.0  # predicted-class probability below which the category is uncertain
    min_familiarity: float = -1.0  # familiarity below which a photo is "not in our catalog"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"answers.min_confidence must be in [0, 1]; got {self.min_confidence}")
        if not -1.0 <= self.min_familiarity <= 1.0:
            raise ValueError(
                f"answers.min_familiarity must be in [-1, 1]; got {self.min_familiarity}"
            )

    def to_config(self) -> dict[str, float]:
        """The policy as plain JSON values."""
        return {"min_confidence": self.min_confidence, "min_familiarity": self.min_familiarity}

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> AnswerPolicy:
        """`to_config` reversed; missing values take the defaults."""
        config = config or {}
        return cls(
            min_confidence=float(config.get("min_confidence", cls.min_confidence)),
            min_familiarity=float(config.get("min_familiarity", cls.min_familiarity)),
        )


@dataclass(frozen=True)
class Answer:
    """One query's answer: the predicted class, whether it is trusted, whether the photo is like the
    catalog's (`close_match`; false: "not in our catalog") and the items found."""

    predicted: int
    confidence: float
    uncertain: bool
    close_match: bool
    positions: np.ndarray
    scores: np.ndarray


def answer_query(
    query: QueryBatch,
    row: int,
    index: EmbeddingIndex,
    item_categories: np.ndarray,
    class_names: list[str],
    spec: IndexSpec,
    policy: AnswerPolicy,
    k: int,
    category: str | None = None,
    within: np.ndarray | None = None,
) -> Answer:
    """Answer row `row` of `query`.

    Searches the given category, else the predicted one, else (when the classifier is unsure) every
    category; `within` optionally limits the items searched.
    """
    probabilities = query.probabilities[row]
    predicted = int(np.argmax(probabilities))
    confidence = float(probabilities[predicted])
    uncertain = category is None and confidence < policy.min_confidence
    if category is not None:
        scopes: list[str | None] = [category]
    elif not spec.category_scoped:
        scopes = [None]
    elif uncertain:
        scopes = list(class_names)
    else:
        scopes = [class_names[predicted]]
    found_positions, found_scores = [], []
    for scope in scopes:
        space = predicted if scope is None else class_names.index(scope)
        # A category is the index's partition when it has them (precomputed, and IVF-PQ searches
        # only that category's lists); else a mask.
        partition = scope if index.partitions is not None else None
        allowed = None if scope is None or partition is not None else item_categories == scope
        if within is not None:
            allowed = within if allowed is None else allowed & within
        positions, scores = index.search(
            query.vector(row, space)[None], k, allowed=allowed, partition=partition
        )
        found_positions.append(positions[0])
        found_scores.append(scores[0])
    positions, scores = np.concatenate(found_positions), np.concatenate(found_scores)
    order = np.argsort(-scores, kind="stable")[:k]
    positions, scores = positions[order], scores[order]
    familiar = query.familiarity is None or float(query.familiarity[row]) >= policy.min_familiarity
    close_match = bool(len(scores)) and familiar
    return Answer(predicted, confidence, uncertain, close_match, positions, scores)
