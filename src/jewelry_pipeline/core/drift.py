"""Drift of new photos against the training run's held-out photos (Evidently): category shares,
classifier confidence and the classifier's embeddings; an HTML report and the key figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REFERENCE_KEYS = ("category", "confidence", "embeddings")


@dataclass(frozen=True)
class DriftThresholds:
    """When new photos count as unlike the training photos (from `catalog_update.drift`)."""

    category_p_value: float = 0.01  # chi-square test of the category shares
    confidence_p_value: float = 0.01  # Kolmogorov-Smirnov test of the classifier's confidence
    embedding_auc: float = 0.65  # ROC AUC of a model telling new from reference embeddings
    min_new_photos: int = 30  # fewer: figures are reported, but too few to warn on
    max_new_photos: int = 2000  # more: a seeded sample of this many is compared

    @classmethod
    def from_config(cls, drift: dict[str, Any]) -> DriftThresholds:
        """Thresholds from the `catalog_update.drift` parameters (unknown keys are ignored)."""
        known = {name: drift[name] for name in cls.__dataclass_fields__ if name in drift}
        return cls(**known)


def reference_sample(
    categories: np.ndarray,
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    size: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """A seeded sample of at most `size` photos as plain arrays for the bundle: category, classifier
    confidence (top probability) and embeddings."""
    categories = np.asarray(categories).astype(str)
    if len(categories) == 0:
        raise ValueError("a drift reference needs at least one photo")
    rows = np.arange(len(categories))
    if len(rows) > size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))
    return {
        "category": categories[rows],
        "confidence": np.asarray(probabilities, np.float32)[rows].max(axis=1),
        "embeddings": np.asarray(embeddings, np.float32)[rows],
    }


def _frame(sample: dict[str, np.ndarray], centre: np.ndarray, spread: np.ndarray) -> pd.DataFrame:
    """One row per photo: category, confidence and one column per embedding dimension, each
    dimension standardised by the reference's mean and spread (the drift model is not
    scale-invariant, and embeddings of an untrained or regularised network can be tiny)."""
    embeddings = (np.asarray(sample["embeddings"], np.float64) - centre) / spread
    frame = pd.DataFrame(embeddings, columns=[f"e{i}" for i in range(embeddings.shape[1])])
    frame.insert(0, "confidence", np.asarray(sample["confidence"], np.float64))
    frame.insert(0, "category", np.asarray(sample["category"]).astype(str))
    return frame


def drift_report(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    thresholds: DriftThresholds,
    seed: int = 0,
) -> tuple[str, dict[str, Any]]:
    """Evidently's report (HTML) comparing `current` photos with the `reference`, and its key
    figures with the warnings of every threshold crossed."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift
    from evidently.metrics.embeddings import ModelDriftMethod

    missing = [key for key in REFERENCE_KEYS if key not in reference or key not in current]
    if missing:
        raise ValueError(f"drift samples lack {missing}")
    new_photos = len(current["category"])
    if new_photos > thresholds.max_new_photos:
        rows = np.sort(
            np.random.default_rng(seed).choice(new_photos, thresholds.max_new_photos, replace=False)
        )
        current = {key: np.asarray(current[key])[rows] for key in REFERENCE_KEYS}
    reference_embeddings = np.asarray(reference["embeddings"], np.float64)
    centre = reference_embeddings.mean(axis=0)
    spread = np.maximum(reference_embeddings.std(axis=0), 1e-6 * (1 + np.abs(centre)))
    reference_frame = _frame(reference, centre, spread)
    current_frame = _frame(current, centre, spread)
    dimensions = [c for c in reference_frame.columns if c.startswith("e")]
    definition = DataDefinition(
        categorical_columns=["category"],
        numerical_columns=["confidence"],
        embeddings={"classifier": dimensions},
    )
    metrics = [
        ValueDrift(column="category", method="chisquare", threshold=thresholds.category_p_value),
        ValueDrift(column="confidence", method="ks", threshold=thresholds.confidence_p_value),
        EmbeddingsDrift(
            embeddings_name="classifier",
            drift_method=ModelDriftMethod(threshold=thresholds.embedding_auc),
        ),
    ]
    snapshot = Report(metrics).run(
        Dataset.from_pandas(current_frame, data_definition=definition),
        Dataset.from_pandas(reference_frame, data_definition=definition),
    )
    values = [float(result["value"]) for result in snapshot.dict()["metrics"]]
    category_p, confidence_p, embedding_auc = values
    figures: dict[str, Any] = {
        "new_photos": int(new_photos),
        "compared_new_photos": int(len(current_frame)),
        "reference_photos": int(len(reference_frame)),
        "category_shares": {
            "p_value": category_p,
            "new": _shares(current_frame["category"]),
            "reference": _shares(reference_frame["category"]),
        },
        "confidence": {
            "p_value": confidence_p,
            "new_median": float(current_frame["confidence"].median()),
            "reference_median": float(reference_frame["confidence"].median()),
        },
        "embeddings": {"roc_auc": embedding_auc},
    }
    crossed = []
    if category_p < thresholds.category_p_value:
        crossed.append(
            f"category shares differ from the training photos' (chi-square p={category_p:.2g} "
            f"< {thresholds.category_p_value})"
        )
    if confidence_p < thresholds.confidence_p_value:
        crossed.append(
            "the classifier's confidence differs (median "
            f"{figures['confidence']['new_median']:.3f} vs "
            f"{figures['confidence']['reference_median']:.3f}; Kolmogorov-Smirnov "
            f"p={confidence_p:.2g} < {thresholds.confidence_p_value})"
        )
    if embedding_auc > thresholds.embedding_auc:
        crossed.append(
            "the photos' embeddings are told apart from the training photos' (ROC AUC "
            f"{embedding_auc:.3f} > {thresholds.embedding_auc})"
        )
    figures["too_few_new_photos"] = new_photos < thresholds.min_new_photos
    figures["warnings"] = [] if figures["too_few_new_photos"] else crossed
    figures["crossed"] = crossed
    return snapshot.get_html_str(as_iframe=False), figures


def _shares(categories: pd.Series) -> dict[str, float]:
    """Each category's share of the photos."""
    return {str(k): round(float(v), 4) for k, v in categories.value_counts(normalize=True).items()}
