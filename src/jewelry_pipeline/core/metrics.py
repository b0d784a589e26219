"""Evaluation helpers shared by pipelines: MLflow metric formats and retrieval metrics."""

from __future__ import annotations

import numpy as np


def history_metrics(history: dict[str, list[float]]) -> dict[str, list[dict[str, float]]]:
    """Per-epoch histories in the format of kedro-mlflow's metrics-history dataset."""
    return {
        name: [{"value": v, "step": step} for step, v in enumerate(values)]
        for name, values in history.items()
    }


def single_step(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """Scalar metrics in the format of kedro-mlflow's metrics-history dataset (step 0)."""
    return {name: {"value": float(value), "step": 0} for name, value in metrics.items()}


def precision_and_ap_at_k(
    relevant: np.ndarray, total_relevant: np.ndarray, k: int
) -> tuple[float, float]:
    """Mean precision@k and mAP@k from a queries x k relevance matrix of the ranked results.

    AP@k divides by min(k, number of relevant gallery items), so a perfect ranking scores 1.
    """
    relevant = np.asarray(relevant, dtype=np.float64)[:, :k]
    if len(relevant) == 0:
        return float("nan"), float("nan")
    precision = relevant.mean(axis=1)
    hits = np.cumsum(relevant, axis=1)
    ranks = np.arange(1, relevant.shape[1] + 1)
    denominators = np.maximum(np.minimum(total_relevant, k), 1)
    average_precision = (relevant * hits / ranks).sum(axis=1) / denominators
    return float(precision.mean()), float(average_precision.mean())
