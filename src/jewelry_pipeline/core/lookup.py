"""Align per-item arrays and optional sub-style labels to a manifest's item order; read the
project's CSV tables with their text columns kept as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# Columns of the project's tables that hold names, paths and hex digests. Read as text: pandas
# would turn a folder named "7" into a number and an id like "73e2004501635313" into a float (and
# pandas 2.3's parser crashes on such an exponent).
TEXT_COLUMNS = (
    "item_id",
    "path",
    "category",
    "substyle",
    "title",
    "format",
    "sha256",
    "phash",
    "split",
    "method",
    "thumbnail",
    "true",
    "predicted",
    "reason",
    "detail",
    "source",
)
TEXT_DTYPES = dict.fromkeys(TEXT_COLUMNS, str)


def read_table(path: str | Path) -> pd.DataFrame:
    """A project CSV table with its text columns (`TEXT_COLUMNS`) read as text."""
    return pd.read_csv(path, dtype=TEXT_DTYPES)


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
