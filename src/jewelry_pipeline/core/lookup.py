"""Align per-item arrays and optional sub-style labels to a manifest's item order."""

from __future__ import annotations

import numpy as np
import pandas as pd


def aligned(item_ids: np.ndarray, arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Rows of `arrays[key]` reordered to follow `item_ids`; every item must have a row."""
    position = {item: i for i, item in enumerate(arrays["item_id"])}
    missing = [i for i in item_ids if i not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} items have no '{key}' vector (first: {missing[0]}); "
            "rerun the pipeline that makes it"
        )
    return arrays[key][[position[i] for i in item_ids]]


def substyles_of(manifest: pd.DataFrame, substyle_labels: pd.DataFrame) -> pd.Series | None:
    """Sub-style per manifest row, or None unless every row has a ground-truth label."""
    substyle = manifest[["path"]].merge(
        substyle_labels[["path", "substyle"]], on="path", how="left"
    )["substyle"]
    return substyle if len(substyle) > 0 and substyle.notna().all() else None
