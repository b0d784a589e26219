"""Split nodes: group look-alike images, then assign whole groups to train/val/test per category."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.images import hamming_pairs
from jewelry_pipeline.core.lineage import split_identity

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def duplicate_groups(phash_hex: pd.Series, max_hamming: int) -> np.ndarray:
    """Group ids linking images whose perceptual hashes are within `max_hamming` bits
    (union-find)."""
    hashes = np.array([int(h, 16) for h in phash_hex], dtype=np.uint64)
    parent = np.arange(len(hashes))
    if max_hamming >= 0 and len(hashes) > 1:
        for i, j in hamming_pairs(hashes, max_hamming):
            root_i, root_j = _find(parent, int(i)), _find(parent, int(j))
            if root_i != root_j:
                parent[max(root_i, root_j)] = min(root_i, root_j)
    return np.array([_find(parent, i) for i in range(len(hashes))])


def split_manifest(manifest: pd.DataFrame, split: dict[str, Any]) -> pd.DataFrame:
    """Stratified train/val/test split, deterministic for a seed; look-alike groups never straddle
    splits."""
    fractions = np.array([float(split[name]) for name in SPLITS])
    if np.any(fractions <= 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"split fractions train/val/test must be positive and sum to 1, got {fractions}"
        )
    frame = manifest.sort_values("item_id", kind="stable").reset_index(drop=True)
    frame["group"] = duplicate_groups(frame["phash"], int(split.get("group_max_hamming", 6)))
    rng = np.random.default_rng(int(split["seed"]))
    assignment: dict[int, str] = {}
    group_category = frame.groupby("group")["category"].first()
    group_size = frame.groupby("group").size()
    for category in sorted(group_category.unique()):
        groups = np.array(sorted(group_category.index[group_category == category]))
        groups = groups[rng.permutation(len(groups))]
        total = int(group_size[groups].sum())
        targets = {"test": fractions[2] * total, "val": fractions[1] * total}
        filled = {"test": 0, "val": 0}
        for group in groups:
            name = "train"
            for candidate in ("test", "val"):
                if filled[candidate] + group_size[group] / 2 <= targets[candidate]:
                    name = candidate
                    break
            if name != "train":
                filled[name] += int(group_size[group])
            assignment[int(group)] = name
    frame["split"] = frame["group"].map(assignment)
    counts = (
        frame.groupby(["category", "split"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(SPLITS), fill_value=0)
    )
    logger.info("Split sizes per category:\n%s", counts.to_string())
    empty = counts[(counts["val"] == 0) | (counts["test"] == 0)]
    if len(empty):
        logger.warning(
            "Categories with no validation or test photo (train/val/test): %s. Their figures are "
            "missing or unreliable; add photos or raise split.val / split.test.",
            ", ".join(f"{c} {r['train']}/{r['val']}/{r['test']}" for c, r in empty.iterrows()),
        )
    return frame.sort_values("store_index", kind="stable").reset_index(drop=True)


def split_and_record(
    manifest: pd.DataFrame, ingestion_identity: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The split, and which ingestion it was made from: one node, so whatever reads the split
    (in any process, as an Airflow task) comes after the record later pipelines check it by."""
    split_rows = split_manifest(manifest, split)
    return split_rows, split_identity(ingestion_identity, split_rows)
