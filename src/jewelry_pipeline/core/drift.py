"""Drift of new photos against the training run's held-out photos (Evidently): the predicted
categories, the classifier's confidence and its embeddings; an HTML report and the key figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

REFERENCE_KEYS = ("category", "predicted", "confidence", "embeddings")


@dataclass(frozen=True)
class DriftThresholds:
    """When new photos count as unlike the training photos (from `catalog_update.drift`)."""

    agreement_p_value: float = 0.01  # z-test: classifier and folders agree as on held-out photos
    confidence_p_value: float = 0.01  # Kolmogorov-Smirnov test of the classifier's confidence
    embedding_auc: float = 0.65  # ROC AUC of a model telling new from reference embeddings
    min_new_photos: int = 30  # fewer: figures are reported, but too few to warn on
    max_new_photos: int = 2000  # more: a seeded sample of this many is compared

    @classmethod
    def from_config(cls, drift: dict[str, Any]) -> DriftThresholds:
        """Thresholds from the `catalog_update.drift` parameters (unknown keys are ignored)."""
        known = {name: drift[name] for name in cls.__dataclass_fields__ if name in drift}
        return cls(**known)


def classifier_view(
    categories: np.ndarray,
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    class_names: list[str],
) -> dict[str, np.ndarray]:
    """What the drift check compares, per photo: its category (folder), the category the classifier
    predicts, its confidence (top probability) and its embedding."""
    probabilities = np.asarray(probabilities, np.float32)
    return {
        "category": np.asarray(categories).astype(str),
        "predicted": np.asarray(class_names).astype(str)[probabilities.argmax(axis=1)],
        "confidence": probabilities.max(axis=1),
        "embeddings": np.asarray(embeddings, np.float32),
    }


def reference_sample(
    categories: np.ndarray,
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    class_names: list[str],
    size: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """A seeded sample of at most `size` photos' `classifier_view`, as plain arrays for the
    bundle."""
    categories = np.asarray(categories).astype(str)
    if len(categories) == 0:
        raise ValueError("a drift reference needs at least one photo")
    rows = sample_rows(len(categories), size, seed)
    return classifier_view(
        categories[rows], np.asarray(probabilities)[rows], np.asarray(embeddings)[rows], class_names
    )


def _frame(sample: dict[str, np.ndarray], centre: np.ndarray, spread: np.ndarray) -> pd.DataFrame:
    """One row per photo: category, confidence and one column per embedding dimension, each
    dimension standardised by the reference's mean and spread (the drift model is not
    scale-invariant, and embeddings of an untrained or regularised network can be tiny)."""
    embeddings = (np.asarray(sample["embeddings"], np.float64) - centre) / spread
    frame = pd.DataFrame(embeddings, columns=[f"e{i}" for i in range(embeddings.shape[1])])
    frame.insert(0, "confidence", np.asarray(sample["confidence"], np.float64))
    frame.insert(0, "agrees", np.where(_agrees(sample), "yes", "no"))
    return frame


def sample_rows(count: int, size: int, seed: int) -> np.ndarray:
    """A seeded, sorted sample of at most `size` of `count` row numbers (all of them when fewer)."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def matched_reference(
    reference: dict[str, np.ndarray], categories: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """The largest sample of the reference in the new photos' category shares (only their
    categories), so confidence and embeddings are compared like with like: forty new rings against
    rings, not against every category. The whole reference when it holds none of them."""
    names, counts = np.unique(np.asarray(categories).astype(str), return_counts=True)
    held = np.asarray(reference["category"]).astype(str)
    available = np.array([np.count_nonzero(held == name) for name in names])
    known = available > 0
    if not known.any():
        return reference
    shares = counts[known] / counts[known].sum()
    scale = float(np.min(available[known] / shares))
    rng = np.random.default_rng(seed)
    rows = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(held == name), max(1, int(share * scale)), replace=False)
                for name, share in zip(names[known], shares)
            ]
        )
    )
    return {key: np.asarray(reference[key])[rows] for key in REFERENCE_KEYS}


def _value(result: dict[str, Any]) -> float | None:
    """A metric's value; None when undefined (NaN: e.g. chi-square over a single category)."""
    value = float(result["value"])
    return None if np.isnan(value) else value


def _run_report(
    current_frame: pd.DataFrame,
    matched_frame: pd.DataFrame,
    thresholds: DriftThresholds,
    with_embeddings: bool,
) -> tuple[Any, tuple[float | None, float | None, float | None]]:
    """Evidently's snapshot, and its p-values of agreement and confidence and the embeddings'
    ROC AUC (None without embeddings)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift
    from evidently.metrics.embeddings import ModelDriftMethod

    definition = DataDefinition(
        categorical_columns=["agrees"],
        numerical_columns=["confidence"],
        embeddings={"classifier": [c for c in matched_frame.columns if c.startswith("e")]},
    )
    metrics = [
        ValueDrift(column="agrees", method="z", threshold=thresholds.agreement_p_value),
        ValueDrift(column="confidence", method="ks", threshold=thresholds.confidence_p_value),
    ]
    if with_embeddings:
        metrics.append(
            EmbeddingsDrift(
                embeddings_name="classifier",
                drift_method=ModelDriftMethod(threshold=thresholds.embedding_auc),
            )
        )
    snapshot = Report(metrics).run(
        Dataset.from_pandas(current_frame, data_definition=definition),
        Dataset.from_pandas(matched_frame, data_definition=definition),
    )
    agreement_p, confidence_p, *rest = [_value(result) for result in snapshot.dict()["metrics"]]
    return snapshot, (agreement_p, confidence_p, rest[0] if rest else None)


def _crossed(figures: dict[str, Any], thresholds: DriftThresholds) -> list[str]:
    """A sentence for each threshold the figures cross."""
    crossed = []
    agreement_p = figures["agreement"]["p_value"]
    if agreement_p is not None and agreement_p < thresholds.agreement_p_value:
        crossed.append(
            "the classifier puts the new photos in their folder's category "
            f"{figures['agreement']['new']:.1%} of the time, held-out photos of the same "
            f"categories {figures['agreement']['reference']:.1%} (z-test p={agreement_p:.2g} < "
            f"{thresholds.agreement_p_value})"
        )
    confidence = figures["confidence"]
    confidence_p = confidence["p_value"]
    lower = confidence["new_median"] < confidence["reference_median"]
    if confidence_p is not None and confidence_p < thresholds.confidence_p_value and lower:
        crossed.append(
            "the classifier is less sure of the new photos (median confidence "
            f"{confidence['new_median']:.3f} vs "
            f"{confidence['reference_median']:.3f}; Kolmogorov-Smirnov "
            f"p={confidence_p:.2g} < {thresholds.confidence_p_value})"
        )
    embedding_auc = figures["embeddings"]["roc_auc"]
    if embedding_auc is not None and embedding_auc > thresholds.embedding_auc:
        crossed.append(
            "the photos' embeddings are told apart from the training photos' (ROC AUC "
            f"{embedding_auc:.3f} > {thresholds.embedding_auc})"
        )
    return crossed


def drift_report(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    thresholds: DriftThresholds,
    seed: int = 0,
    new_photos: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Evidently's report (HTML) comparing `current` photos with the `reference` photos of the same
    categories (`matched_reference`), and its key figures with the warnings of every threshold
    crossed.

    Tested: how often the classifier's category is the folder's (z-test of the two proportions),
    the confidence (Kolmogorov-Smirnov; a warning only when it is lower: unseen real photos of one
    category came out a hair surer than held-out ones, p < 0.001 on medians of 0.99998 against
    0.99993, which is no risk) and the embeddings (ROC AUC of a model telling them apart;
    only from `min_new_photos` photos on, as the model halves the rows). The category shares (the
    folders' and the classifier's) are reported, not tested: a shop adding forty rings changes them
    on purpose. `new_photos` is the update's size when `current`
    is a sample.
    """
    missing = [key for key in REFERENCE_KEYS if key not in reference or key not in current]
    if missing:
        raise ValueError(f"drift samples lack {missing}")
    total = len(current["category"]) if new_photos is None else int(new_photos)
    chosen = sample_rows(len(current["category"]), thresholds.max_new_photos, seed)
    current = {key: np.asarray(current[key])[chosen] for key in REFERENCE_KEYS}
    matched = matched_reference(reference, current["category"], seed)
    reference_embeddings = np.asarray(matched["embeddings"], np.float64)
    centre = reference_embeddings.mean(axis=0)
    spread = np.maximum(reference_embeddings.std(axis=0), 1e-6 * (1 + np.abs(centre)))
    matched_frame = _frame(matched, centre, spread)
    current_frame = _frame(current, centre, spread)
    enough = len(current_frame) >= thresholds.min_new_photos
    snapshot, (agreement_p, confidence_p, embedding_auc) = _run_report(
        current_frame, matched_frame, thresholds, with_embeddings=enough
    )
    figures: dict[str, Any] = {
        "new_photos": total,
        "compared_new_photos": int(len(current_frame)),
        "reference_photos": int(len(reference["category"])),
        "matched_reference_photos": int(len(matched_frame)),
        "category_shares": {
            "new": _shares(current["category"]),
            "reference": _shares(reference["category"]),
        },
        "predicted_categories": {
            "new": _shares(current["predicted"]),
            "reference": _shares(matched["predicted"]),
        },
        "agreement": {
            "p_value": agreement_p,
            "new": _agreement(current),
            "reference": _agreement(matched),
        },
        "confidence": {
            "p_value": confidence_p,
            "new_median": float(np.median(current["confidence"])),
            "reference_median": float(np.median(matched["confidence"])),
        },
        "embeddings": {"roc_auc": embedding_auc},
    }
    crossed = _crossed(figures, thresholds)
    figures["too_few_new_photos"] = not enough
    figures["warnings"] = crossed if enough else []
    figures["crossed"] = crossed
    return snapshot.get_html_str(as_iframe=False), figures


def _agrees(sample: dict[str, np.ndarray]) -> np.ndarray:
    """Per photo: whether the classifier puts it in its folder's category."""
    return np.asarray(sample["predicted"]).astype(str) == np.asarray(sample["category"]).astype(str)


def _agreement(sample: dict[str, np.ndarray]) -> float:
    """The share of photos the classifier puts in their folder's category."""
    return round(float(np.mean(_agrees(sample))), 4)


def _shares(categories: np.ndarray) -> dict[str, float]:
    """Each category's share of the photos."""
    names, counts = np.unique(np.asarray(categories).astype(str), return_counts=True)
    return {
        str(name): round(float(count) / len(categories), 4) for name, count in zip(names, counts)
    }
