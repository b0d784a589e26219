"""Ingestion nodes: the photo tree ingested (`core.ingest`), rejects summarised, category checks.
Unchanged files reuse the last run's decodes; primary outputs are written only when checks pass."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.folders import RawImageFolder
from jewelry_pipeline.core.images import Preprocessing
from jewelry_pipeline.core.ingest import IngestSettings, ingest_folder
from jewelry_pipeline.core.lineage import ingestion_identity

logger = logging.getLogger(__name__)

REJECTS_REPORT = (
    "data/08_reporting/ingestion_rejects.csv"  # where the catalog writes `ingestion_rejects`
)


def decode_images(
    raw_images: RawImageFolder,
    decode_cache: dict[str, np.ndarray],
    preprocessing: dict[str, Any],
    ingestion: dict[str, Any],
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Decode every listed file (unchanged files come from the previous run's cache); collapse
    duplicates; report refusals."""
    return ingest_folder(
        raw_images,
        decode_cache,
        IngestSettings.from_config(Preprocessing.from_config(preprocessing), ingestion),
    )


def ingestion_summary(manifest: pd.DataFrame, rejects: pd.DataFrame) -> str:
    """One line: how many photos were kept, how many entries were refused by reason, and where the
    report is."""
    reasons = ", ".join(
        f"{reason} {count}"
        for reason, count in rejects["reason"].value_counts().sort_index().items()
    )
    refused = f"refused {len(rejects)} ({reasons})" if len(rejects) else "refused 0"
    return f"Ingestion: kept {len(manifest)} photos, {refused}; report: {REJECTS_REPORT}"


def check_categories(
    manifest: pd.DataFrame,
    rejects: pd.DataFrame,
    store: np.ndarray,
    raw_images: RawImageFolder,
    ingestion: dict[str, Any],
    expected: list[str] | None = None,
) -> tuple[np.ndarray, pd.DataFrame, list[str], dict[str, Any]]:
    """Fail with a clear message when a category has too few valid images, or the folders are not
    the explicit `categories` parameter (`expected`, None: whatever the folder holds); else hand
    over the primary outputs.

    Nothing primary is written before these checks pass, so a failed ingestion leaves the previous
    outputs whole. The identity (folder, manifest digest, counts) lets later pipelines refuse
    outputs of another folder.
    """
    categories = list(raw_images.categories)
    if expected and sorted(map(str, expected)) != sorted(categories):
        raise UserInputError(
            f"The `categories` parameter lists {sorted(map(str, expected))}, but {raw_images.root} "
            f"has the category folders {sorted(categories)}. Leave `categories` unset (null) to "
            "use the folders, or make it match them."
        )
    if len(categories) < 2:
        raise UserInputError(
            f"Need at least 2 category folders in {raw_images.root}, "
            f"found {len(categories)}: {categories}. "
            "Put the photos of each category in its own sub-folder."
        )
    minimum = int(ingestion["min_images_per_category"])
    counts = manifest["category"].value_counts().reindex(categories, fill_value=0)
    short = {cat: int(n) for cat, n in counts.items() if n < minimum}
    if short:
        details = ", ".join(
            f"'{cat}' has {n}{_short_reason(rejects, cat)}" for cat, n in short.items()
        )
        raise UserInputError(
            f"Categories with fewer than min_images_per_category={minimum} valid images: "
            f"{details}. "
            "Add photos, remove the folder, or lower ingestion.min_images_per_category. "
            f"Refused files are listed in {REJECTS_REPORT}."
        )
    logger.info("Categories: %s", ", ".join(f"{c} ({n})" for c, n in counts.items()))
    logger.info(ingestion_summary(manifest, rejects))
    return store, manifest, categories, ingestion_identity(raw_images.root, manifest)


def _short_reason(rejects: pd.DataFrame, category: str) -> str:
    """What was refused in a short category, so the message says why it is short."""
    mine = rejects[rejects["category"] == category]["reason"].value_counts()
    return (
        f" (refused: {', '.join(f'{reason} {n}' for reason, n in mine.items())})"
        if len(mine)
        else ""
    )
