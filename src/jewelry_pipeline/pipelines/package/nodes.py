"""Package nodes: the promotion decision and the contents of the serving bundle."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # heavy libraries load inside the nodes that use them, so commands that do not train start fast
    import keras

logger = logging.getLogger(__name__)


def decide_promotion(
    new_metrics: dict[str, float], champion: dict[str, Any], package: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Promote when there is no champion or the new run's metric is at least the champion's.

    The decision goes out twice: to the local report and to the registry dataset that acts on it.
    """
    metric = package["promotion_metric"]
    new_value = float(new_metrics[metric])
    if not champion["exists"] or champion["metric"] is None:
        promote, reason = True, f"no current champion; {metric}={new_value:.4f}"
    elif new_value >= float(champion["metric"]):
        promote, reason = True, f"{metric} {new_value:.4f} >= champion v{champion['version']} {champion['metric']:.4f}"
    else:
        promote, reason = False, f"{metric} {new_value:.4f} < champion v{champion['version']} {champion['metric']:.4f}"
    logger.info("Promotion decision: %s (%s)", "promote" if promote else "keep champion", reason)
    decision = {
        "promote": promote,
        "reason": reason,
        "metric": metric,
        "new_value": new_value,
        "champion_value": champion["metric"],
        "champion_version": champion["version"],
    }
    return decision, decision


def assemble_bundle(
    decision: dict[str, Any],
    classifier: keras.Model,
    index: dict[str, np.ndarray],
    catalog: pd.DataFrame,
    images: np.ndarray,
    categories: list[str],
    autoencoder_input: dict[str, Any],
    preprocessing: dict[str, Any],
    *encoders: keras.Model,
    built: list[str],
) -> dict[str, Any]:
    """Everything the service needs, in index order, for the serving-bundle dataset.

    `encoders` come from the namespaces `built` (sorted); they must be the categories ingestion found, so
    each encoder is named by the category it was trained on.
    """
    if sorted(built) != sorted(categories) or len(encoders) != len(built):
        raise ValueError(
            f"The bundle would pair {len(encoders)} encoders of {sorted(built)} with the categories {sorted(categories)} found by "
            "ingestion; run the whole pipeline on one folder (`kedro run --params raw_dir=...`)."
        )
    order = pd.Series(range(len(catalog)), index=catalog["item_id"].astype(str))
    rows = order.loc[index["item_ids"].astype(str)].to_numpy()
    served = catalog.iloc[rows].reset_index(drop=True)
    thumbnails = images[served["store_index"].to_numpy()]
    served = served.assign(thumbnail_row=np.arange(len(served)))
    return {
        "promote": bool(decision["promote"]),
        "classifier": classifier,
        "encoders": dict(zip(sorted(built), encoders)),
        "index": index,
        "catalog": served,
        "thumbnails": thumbnails,
        "class_names": list(categories),
        "preprocessing": {**preprocessing, "autoencoder_input": autoencoder_input["input"]},
        "version": {"promotion": decision},
    }
