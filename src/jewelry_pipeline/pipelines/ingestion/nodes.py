"""Ingestion nodes: safe decode of every file, duplicate collapse, rejects report, category checks."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.datasets.image_folder import RawFile, RawImageFolder
from jewelry_pipeline.images import (
    DecodeLimits,
    ImageRejected,
    hamming_pairs,
    perceptual_hash,
    preprocess,
    sniff_format,
)

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["item_id", "path", "category", "width", "height", "format", "sha256", "phash", "store_index"]
REJECT_COLUMNS = ["path", "category", "reason", "detail"]
REJECTS_REPORT = "data/08_reporting/ingestion_rejects.csv"  # where the catalog writes `ingestion_rejects`


@dataclass
class _Decoded:
    file: RawFile
    image: np.ndarray | None = None
    width: int = 0
    height: int = 0
    fmt: str = ""
    sha256: str = ""
    phash: int = 0
    reason: str = ""
    detail: str = ""


def _decode_one(raw: RawImageFolder, file: RawFile, size: int, limits: DecodeLimits, pad: int) -> _Decoded:
    """Read, hash, decode and letterbox one file; never raises for a bad file."""
    if file.size > limits.max_bytes:
        return _Decoded(file, reason="too_large", detail=f"{file.size} bytes > cap {limits.max_bytes} (setting preprocessing.max_bytes)")
    try:
        data = raw.read(file.relpath)
        image, (width, height) = preprocess(data, size, limits, pad)
    except ImageRejected as exc:
        return _Decoded(file, reason=exc.reason, detail=exc.detail)
    except OSError as exc:
        return _Decoded(file, reason="unreadable", detail=str(exc))
    return _Decoded(
        file,
        image=image,
        width=width,
        height=height,
        fmt=sniff_format(data) or "",
        sha256=hashlib.sha256(data).hexdigest(),
        phash=perceptual_hash(image),
    )


def _near_duplicates(
    phashes: np.ndarray, images: np.ndarray, max_hamming: int, max_pixel_diff: float
) -> dict[int, int]:
    """Map each near-duplicate index to the earlier kept index it duplicates.

    Candidates come from pHash distance; each is confirmed on the preprocessed pixels, so two
    different items on the same plain backdrop are not merged.
    """
    if max_hamming < 0 or len(phashes) < 2:
        return {}
    dropped: dict[int, int] = {}
    for i, j in hamming_pairs(phashes, max_hamming):
        if i in dropped or j in dropped:
            continue
        diff = np.abs(images[i].astype(np.int16) - images[j].astype(np.int16)).mean()
        if diff <= max_pixel_diff:
            dropped[int(j)] = int(i)
    return dropped


def decode_images(
    raw_images: RawImageFolder, preprocessing: dict[str, Any], ingestion: dict[str, Any]
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Decode every listed file into the uint8 store; collapse duplicates; report every refused file."""
    size, pad = int(preprocessing["image_size"]), int(preprocessing.get("pad_value", 255))
    limits = DecodeLimits.from_config(preprocessing)
    files = raw_images.files
    logger.info("Ingesting %d files in %d categories from %s", len(files), len(raw_images.categories), raw_images.root)
    images = np.empty((len(files), size, size, 3), np.uint8)
    kept: list[_Decoded] = []
    rejects: list[dict[str, str]] = [
        {"path": entry.relpath, "category": entry.category, "reason": entry.reason, "detail": entry.detail} for entry in raw_images.skipped
    ]
    seen_sha: dict[str, _Decoded] = {}
    conflicted: dict[str, RawFile] = {}  # sha256 of a photo filed under two categories -> the other copy
    started, last_log = time.perf_counter(), time.perf_counter()
    chunk = int(ingestion.get("chunk_size", 256))
    with ThreadPoolExecutor(max_workers=int(ingestion.get("workers", 4))) as pool:
        for start in range(0, len(files), chunk):
            batch = files[start : start + chunk]
            for result in pool.map(lambda f: _decode_one(raw_images, f, size, limits, pad), batch):
                if result.reason:
                    rejects.append(_reject_row(result.file, result.reason, result.detail))
                elif result.sha256 in seen_sha:
                    first = seen_sha[result.sha256].file
                    if first.category != result.file.category:
                        conflicted.setdefault(result.sha256, result.file)
                        rejects.append(_reject_row(result.file, "label_conflict", _conflict_detail(first)))
                    else:
                        rejects.append(_reject_row(result.file, "duplicate", f"same bytes as {first.relpath}"))
                else:
                    seen_sha[result.sha256] = result
                    images[len(kept)] = result.image
                    result.image = None
                    kept.append(result)
            now = time.perf_counter()
            if now - last_log > 5 or start + chunk >= len(files):
                last_log = now
                done = min(start + chunk, len(files))
                logger.info(
                    "ingestion: %d/%d files (%.0f files/s), %d kept, %d refused",
                    done, len(files), done / (now - started), len(kept), len(rejects),
                )

    phashes = np.array([d.phash for d in kept], dtype=np.uint64)
    near = _near_duplicates(
        phashes,
        images,
        int(ingestion.get("near_duplicate_max_hamming", 2)),
        float(ingestion.get("near_duplicate_max_pixel_diff", 6.0)),
    )
    for j, i in near.items():
        if kept[i].file.category != kept[j].file.category:
            conflicted.setdefault(kept[i].sha256, kept[j].file)
            rejects.append(_reject_row(kept[j].file, "label_conflict", _conflict_detail(kept[i].file)))
        else:
            rejects.append(_reject_row(kept[j].file, "near_duplicate", f"looks like {kept[i].file.relpath}"))
    for decoded in kept:  # a photo filed under two categories: neither label can be trusted, so no copy is kept
        if decoded.sha256 in conflicted:
            rejects.append(_reject_row(decoded.file, "label_conflict", _conflict_detail(conflicted[decoded.sha256])))
    keep_index = [k for k in range(len(kept)) if k not in near and kept[k].sha256 not in conflicted]
    store = images[keep_index] if len(keep_index) < len(files) else images
    manifest = pd.DataFrame(
        [
            {
                "item_id": kept[k].sha256[:16],
                "path": kept[k].file.relpath,
                "category": kept[k].file.category,
                "width": kept[k].width,
                "height": kept[k].height,
                "format": kept[k].fmt,
                "sha256": kept[k].sha256,
                "phash": f"{kept[k].phash:016x}",
                "store_index": row,
            }
            for row, k in enumerate(keep_index)
        ],
        columns=MANIFEST_COLUMNS,
    )
    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values("path", kind="stable")
    return store, manifest, rejects_df.reset_index(drop=True)


def _reject_row(file: RawFile, reason: str, detail: str) -> dict[str, str]:
    return {"path": file.relpath, "category": file.category, "reason": reason, "detail": detail}


def _conflict_detail(other: RawFile) -> str:
    return f"the same photo is also {other.relpath} (category '{other.category}'); keep it in one category only"


def ingestion_summary(manifest: pd.DataFrame, rejects: pd.DataFrame) -> str:
    """One line: how many photos were kept, how many entries were refused by reason, and where the report is."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in rejects["reason"].value_counts().sort_index().items())
    refused = f"refused {len(rejects)} ({reasons})" if len(rejects) else "refused 0"
    return f"Ingestion: kept {len(manifest)} photos, {refused}; report: {REJECTS_REPORT}"


def check_categories(
    manifest: pd.DataFrame, rejects: pd.DataFrame, raw_images: RawImageFolder, ingestion: dict[str, Any]
) -> tuple[pd.DataFrame, list[str]]:
    """Fail with a clear message when a category has too few valid images; return the category list."""
    categories = list(raw_images.categories)
    if len(categories) < 2:
        raise ValueError(
            f"Need at least 2 category folders in {raw_images.root}, found {len(categories)}: {categories}. "
            "Put the photos of each category in its own sub-folder."
        )
    minimum = int(ingestion["min_images_per_category"])
    counts = manifest["category"].value_counts().reindex(categories, fill_value=0)
    short = {cat: int(n) for cat, n in counts.items() if n < minimum}
    if short:
        details = ", ".join(f"'{cat}' has {n}{_short_reason(rejects, cat)}" for cat, n in short.items())
        raise ValueError(
            f"Categories with fewer than min_images_per_category={minimum} valid images: {details}. "
            "Add photos, remove the folder, or lower ingestion.min_images_per_category. "
            f"Refused files are listed in {REJECTS_REPORT}."
        )
    logger.info("Categories: %s", ", ".join(f"{c} ({n})" for c, n in counts.items()))
    logger.info(ingestion_summary(manifest, rejects))
    return manifest, categories


def _short_reason(rejects: pd.DataFrame, category: str) -> str:
    """What was refused in a short category, so the message says why it is short."""
    mine = rejects[rejects["category"] == category]["reason"].value_counts()
    return f" (refused: {', '.join(f'{reason} {n}' for reason, n in mine.items())})" if len(mine) else ""
