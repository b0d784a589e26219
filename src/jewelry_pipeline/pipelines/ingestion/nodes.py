"""Ingestion nodes: safe decode of every file, duplicate collapse, rejects report, category checks.
Unchanged files reuse the last run's decodes; primary outputs are written only when checks pass."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.images import (
    DecodeLimits,
    ImageRejected,
    hamming_pairs,
    perceptual_hash,
    preprocess,
    sniff_format,
)
from jewelry_pipeline.core.lineage import ingestion_identity
from jewelry_pipeline.datasets.image_folder import RawFile, RawImageFolder, SkippedEntry

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "item_id",
    "path",
    "category",
    "width",
    "height",
    "format",
    "sha256",
    "phash",
    "store_index",
]
REJECT_COLUMNS = ["path", "category", "reason", "detail"]
REJECTS_REPORT = (
    "data/08_reporting/ingestion_rejects.csv"  # where the catalog writes `ingestion_rejects`
)
DECODE_CACHE_VERSION = 1  # bump when decoding or hashing changes, so older caches are ignored


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


def _decode_one(
    raw: RawImageFolder, file: RawFile, size: int, limits: DecodeLimits, pad: int
) -> _Decoded:
    """Read, hash, decode and letterbox one file; never raises for a bad file."""
    if file.size > limits.max_bytes:
        return _Decoded(
            file,
            reason="too_large",
            detail=f"{file.size} bytes > cap {limits.max_bytes} (setting preprocessing.max_bytes)",
        )
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


def _decode_settings(size: int, pad: int, limits: DecodeLimits) -> str:
    """Everything a decode depends on besides the file: a cache made with other settings is not
    reused."""
    return json.dumps(
        {"version": DECODE_CACHE_VERSION, "size": size, "pad": pad, "limits": limits.__dict__},
        sort_keys=True,
    )


def _reusable_decodes(
    cache: dict[str, np.ndarray], settings: str
) -> dict[tuple[str, int, int], tuple[int, _Decoded]]:
    """The previous run's decodes by (path, size, mtime), when they were made with the same
    settings."""
    if not cache or str(cache.get("settings", "")) != settings:
        return {}
    reusable = {}
    for i, path in enumerate(cache["path"]):
        decoded = _Decoded(
            RawFile(str(path), "", int(cache["size"][i]), int(cache["mtime_ns"][i])),
            width=int(cache["width"][i]),
            height=int(cache["height"][i]),
            fmt=str(cache["format"][i]),
            sha256=str(cache["sha256"][i]),
            phash=int(cache["phash"][i]),
            reason=str(cache["reason"][i]),
            detail=str(cache["detail"][i]),
        )
        reusable[(decoded.file.relpath, decoded.file.size, decoded.file.mtime_ns)] = (
            int(cache["image_row"][i]),
            decoded,
        )
    return reusable


def _decode_cache(
    settings: str, results: list[tuple[_Decoded, int]], images: np.ndarray
) -> dict[str, np.ndarray]:
    """This run's decodes, for the next run: one row per file, decoded pixels once per distinct
    photo."""
    rows = [decoded for decoded, _ in results]
    return {
        "settings": np.array(settings),
        "images": images,
        "path": np.array([d.file.relpath for d in rows], dtype=str),
        "size": np.array([d.file.size for d in rows], np.int64),
        "mtime_ns": np.array([d.file.mtime_ns for d in rows], np.int64),
        "sha256": np.array([d.sha256 for d in rows], dtype=str),
        "format": np.array([d.fmt for d in rows], dtype=str),
        "width": np.array([d.width for d in rows], np.int64),
        "height": np.array([d.height for d in rows], np.int64),
        "phash": np.array([d.phash for d in rows], np.uint64),
        "reason": np.array([d.reason for d in rows], dtype=str),
        "detail": np.array([d.detail for d in rows], dtype=str),
        "image_row": np.array([row for _, row in results], np.int64),
    }


def decode_images(
    raw_images: RawImageFolder,
    decode_cache: dict[str, np.ndarray],
    preprocessing: dict[str, Any],
    ingestion: dict[str, Any],
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Decode every listed file (unchanged files come from the previous run's cache); collapse
    duplicates; report refusals."""
    size, pad = int(preprocessing["image_size"]), int(preprocessing.get("pad_value", 255))
    limits = DecodeLimits.from_config(preprocessing)
    settings = _decode_settings(size, pad, limits)
    reusable = _reusable_decodes(decode_cache, settings)
    previous_images = decode_cache.get("images") if reusable else None
    files = raw_images.files
    logger.info(
        "Ingesting %d files in %d categories from %s",
        len(files),
        len(raw_images.categories),
        raw_images.root,
    )
    images = np.empty((len(files), size, size, 3), np.uint8)
    kept: list[_Decoded] = []
    rejects = [_reject_row(entry, entry.reason, entry.detail) for entry in raw_images.skipped]
    seen_sha: dict[str, _Decoded] = {}
    kept_row: dict[str, int] = {}  # sha256 -> row in `images` (the cache's pixels)
    conflicted: dict[
        str, RawFile
    ] = {}  # sha256 of a photo filed under two categories -> the other copy
    results: list[tuple[_Decoded, int]] = []
    reused = 0

    def decode(file: RawFile) -> _Decoded:
        hit = reusable.get((file.relpath, file.size, file.mtime_ns))
        if hit is None:
            return _decode_one(raw_images, file, size, limits, pad)
        row, cached = hit
        image = np.array(previous_images[row]) if row >= 0 else None
        return _Decoded(
            file,
            image,
            cached.width,
            cached.height,
            cached.fmt,
            cached.sha256,
            cached.phash,
            cached.reason,
            cached.detail,
        )

    started, last_log = time.perf_counter(), time.perf_counter()
    chunk = int(ingestion.get("chunk_size", 256))
    with ThreadPoolExecutor(max_workers=int(ingestion.get("workers", 4))) as pool:
        for start in range(0, len(files), chunk):
            batch = files[start : start + chunk]
            reused += sum((f.relpath, f.size, f.mtime_ns) in reusable for f in batch)
            for result in pool.map(decode, batch):
                if result.reason:
                    rejects.append(_reject_row(result.file, result.reason, result.detail))
                    results.append((result, -1))
                elif result.sha256 in seen_sha:
                    first = seen_sha[result.sha256].file
                    if first.category != result.file.category:
                        conflicted.setdefault(result.sha256, result.file)
                        rejects.append(
                            _reject_row(result.file, "label_conflict", _conflict_detail(first))
                        )
                    else:
                        rejects.append(
                            _reject_row(result.file, "duplicate", f"same bytes as {first.relpath}")
                        )
                    results.append((result, kept_row[result.sha256]))
                else:
                    seen_sha[result.sha256] = result
                    kept_row[result.sha256] = len(kept)
                    results.append((result, len(kept)))
                    images[len(kept)] = result.image
                    result.image = None
                    kept.append(result)
            now = time.perf_counter()
            if now - last_log > 5 or start + chunk >= len(files):
                last_log = now
                done = min(start + chunk, len(files))
                logger.info(
                    "ingestion: %d/%d files (%.0f files/s), %d kept, %d refused, "
                    "%d unchanged since the last run",
                    done,
                    len(files),
                    done / (now - started),
                    len(kept),
                    len(rejects),
                    reused,
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
            rejects.append(
                _reject_row(kept[j].file, "label_conflict", _conflict_detail(kept[i].file))
            )
        else:
            rejects.append(
                _reject_row(kept[j].file, "near_duplicate", f"looks like {kept[i].file.relpath}")
            )
    for decoded in (
        kept
    ):  # a photo filed under two categories: neither label can be trusted, so no copy is kept
        if decoded.sha256 in conflicted:
            rejects.append(
                _reject_row(
                    decoded.file, "label_conflict", _conflict_detail(conflicted[decoded.sha256])
                )
            )
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
    return (
        store,
        manifest,
        rejects_df.reset_index(drop=True),
        _decode_cache(settings, results, images[: len(kept)]),
    )


def _reject_row(entry: RawFile | SkippedEntry, reason: str, detail: str) -> dict[str, str]:
    return {"path": entry.relpath, "category": entry.category, "reason": reason, "detail": detail}


def _conflict_detail(other: RawFile) -> str:
    return (
        f"the same photo is also {other.relpath} (category '{other.category}'); "
        "keep it in one category only"
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
