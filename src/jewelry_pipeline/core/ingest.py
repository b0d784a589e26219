"""Ingestion of a photo tree: every file decoded safely, exact and near duplicates collapsed, a
photo in two categories refused, every refusal reported; unchanged files reuse the last decode."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.folders import RawFile, RawImageFolder, SkippedEntry
from jewelry_pipeline.core.images import (
    DecodeLimits,
    ImageRejected,
    Preprocessing,
    hamming_pairs,
    perceptual_hash,
    preprocess,
    sniff_format,
)

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
DECODE_CACHE_VERSION = 1  # bump when decoding or hashing changes, so older caches are ignored


@dataclass(frozen=True)
class IngestSettings:
    """How photos are decoded (model size, letterbox fill, limits) and collapsed, and how many
    threads decode how many files at a time."""

    size: int
    pad: int
    limits: DecodeLimits
    workers: int = 4
    chunk_size: int = 256
    near_duplicate_max_hamming: int = 2
    near_duplicate_max_pixel_diff: float = 6.0

    @classmethod
    def from_config(cls, preprocessing: Preprocessing, ingestion: dict[str, Any]) -> IngestSettings:
        """The settings of the preprocessing and the `ingestion` parameters."""
        return cls(
            size=preprocessing.image_size,
            pad=preprocessing.pad_value,
            limits=preprocessing.limits,
            workers=int(ingestion.get("workers", 4)),
            chunk_size=int(ingestion.get("chunk_size", 256)),
            near_duplicate_max_hamming=int(ingestion.get("near_duplicate_max_hamming", 2)),
            near_duplicate_max_pixel_diff=float(
                ingestion.get("near_duplicate_max_pixel_diff", 6.0)
            ),
        )

    def cache_key(self) -> str:
        """Everything a decode depends on besides the file: a cache made with other settings is
        not reused."""
        return json.dumps(
            {
                "version": DECODE_CACHE_VERSION,
                "size": self.size,
                "pad": self.pad,
                "limits": self.limits.__dict__,
            },
            sort_keys=True,
        )


@dataclass
class Decoded:
    """One file's decode: its model-size pixels and facts, or the reason it was refused."""

    file: RawFile
    image: np.ndarray | None = None
    width: int = 0
    height: int = 0
    fmt: str = ""
    sha256: str = ""
    phash: int = 0
    reason: str = ""
    detail: str = ""


def decode_file(raw: RawImageFolder, file: RawFile, settings: IngestSettings) -> Decoded:
    """Read, hash, decode and letterbox one file; never raises for a bad file."""
    limits = settings.limits
    if file.size > limits.max_bytes:
        return Decoded(
            file,
            reason="too_large",
            detail=f"{file.size} bytes > cap {limits.max_bytes} (setting preprocessing.max_bytes)",
        )
    try:
        data = raw.read(file.relpath)
        image, (width, height) = preprocess(data, settings.size, limits, settings.pad)
    except ImageRejected as exc:
        return Decoded(file, reason=exc.reason, detail=exc.detail)
    except OSError as exc:
        return Decoded(file, reason="unreadable", detail=str(exc))
    return Decoded(
        file,
        image=image,
        width=width,
        height=height,
        fmt=sniff_format(data) or "",
        sha256=hashlib.sha256(data).hexdigest(),
        phash=perceptual_hash(image),
    )


def near_duplicates(
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


class CachedDecodes:
    """The previous run's decodes by (path, size, mtime), when made with the same settings."""

    def __init__(self, cache: dict[str, np.ndarray], settings: IngestSettings):
        self._by_file: dict[tuple[str, int, int], tuple[int, Decoded]] = {}
        self._images = None
        if not cache or str(cache.get("settings", "")) != settings.cache_key():
            return
        self._images = cache.get("images")
        for i, path in enumerate(cache["path"]):
            decoded = Decoded(
                RawFile(str(path), "", int(cache["size"][i]), int(cache["mtime_ns"][i])),
                width=int(cache["width"][i]),
                height=int(cache["height"][i]),
                fmt=str(cache["format"][i]),
                sha256=str(cache["sha256"][i]),
                phash=int(cache["phash"][i]),
                reason=str(cache["reason"][i]),
                detail=str(cache["detail"][i]),
            )
            key = (decoded.file.relpath, decoded.file.size, decoded.file.mtime_ns)
            self._by_file[key] = (int(cache["image_row"][i]), decoded)

    def __contains__(self, file: RawFile) -> bool:
        return (file.relpath, file.size, file.mtime_ns) in self._by_file

    def get(self, file: RawFile) -> Decoded | None:
        """`file`'s cached decode (with its pixels) as this run's file, or None."""
        hit = self._by_file.get((file.relpath, file.size, file.mtime_ns))
        if hit is None:
            return None
        row, cached = hit
        image = np.array(self._images[row]) if row >= 0 else None
        return Decoded(
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


def reject_row(entry: RawFile | SkippedEntry, reason: str, detail: str) -> dict[str, str]:
    """One row of the rejects report."""
    return {"path": entry.relpath, "category": entry.category, "reason": reason, "detail": detail}


def _conflict_detail(other: RawFile) -> str:
    return (
        f"the same photo is also {other.relpath} (category '{other.category}'); "
        "keep it in one category only"
    )


class _Collected:
    """What the decode loop gathers: the distinct photos in file order and their pixels, each
    file's decode and cache row, and every refusal."""

    def __init__(self, folder: RawImageFolder, size: int):
        self.images = np.empty((len(folder.files), size, size, 3), np.uint8)
        self.kept: list[Decoded] = []
        self.rejects = [reject_row(entry, entry.reason, entry.detail) for entry in folder.skipped]
        self.results: list[tuple[Decoded, int]] = []  # every file and its row in `images`
        self.first: dict[str, Decoded] = {}  # sha256 -> the first file with those bytes
        self.row: dict[str, int] = {}  # sha256 -> row in `images`
        self.conflicted: dict[str, RawFile] = {}  # sha256 of a photo in two categories -> the other

    def add(self, result: Decoded) -> None:
        """Keep a new photo; report a refused file, an exact duplicate or a label conflict."""
        if result.reason:
            self.rejects.append(reject_row(result.file, result.reason, result.detail))
            self.results.append((result, -1))
        elif result.sha256 in self.first:
            first = self.first[result.sha256].file
            if first.category != result.file.category:
                self.conflicted.setdefault(result.sha256, result.file)
                self.rejects.append(
                    reject_row(result.file, "label_conflict", _conflict_detail(first))
                )
            else:
                self.rejects.append(
                    reject_row(result.file, "duplicate", f"same bytes as {first.relpath}")
                )
            self.results.append((result, self.row[result.sha256]))
        else:
            self.first[result.sha256] = result
            self.row[result.sha256] = len(self.kept)
            self.results.append((result, len(self.kept)))
            self.images[len(self.kept)] = result.image
            result.image = None
            self.kept.append(result)

    def drop_near_duplicates(self, settings: IngestSettings) -> dict[int, int]:
        """Report near duplicates (a conflict across categories); return them, kept index by
        dropped index."""
        phashes = np.array([d.phash for d in self.kept], dtype=np.uint64)
        near = near_duplicates(
            phashes,
            self.images,
            settings.near_duplicate_max_hamming,
            settings.near_duplicate_max_pixel_diff,
        )
        for j, i in near.items():
            kept, copy = self.kept[i], self.kept[j]
            if kept.file.category != copy.file.category:
                self.conflicted.setdefault(kept.sha256, copy.file)
                self.rejects.append(
                    reject_row(copy.file, "label_conflict", _conflict_detail(kept.file))
                )
            else:
                self.rejects.append(
                    reject_row(copy.file, "near_duplicate", f"looks like {kept.file.relpath}")
                )
        # a photo filed under two categories: neither label can be trusted, so no copy is kept
        for decoded in self.kept:
            if decoded.sha256 in self.conflicted:
                other = self.conflicted[decoded.sha256]
                self.rejects.append(
                    reject_row(decoded.file, "label_conflict", _conflict_detail(other))
                )
        return near


def _decoded_in_order(
    folder: RawImageFolder, cached: CachedDecodes, settings: IngestSettings
) -> Iterator[Decoded]:
    """Every file's decode in file order (cached ones reused), decoded `chunk_size` at a time on
    `workers` threads, with progress logged every 5 s."""
    files = folder.files
    started = last_log = time.perf_counter()
    reused = 0

    def decode(file: RawFile) -> Decoded:
        return cached.get(file) or decode_file(folder, file, settings)

    with ThreadPoolExecutor(max_workers=settings.workers) as pool:
        for start in range(0, len(files), settings.chunk_size):
            batch = files[start : start + settings.chunk_size]
            reused += sum(file in cached for file in batch)
            yield from pool.map(decode, batch)
            now = time.perf_counter()
            done = min(start + settings.chunk_size, len(files))
            if now - last_log > 5 or done >= len(files):
                last_log = now
                logger.info(
                    "ingestion: %d/%d files (%.0f files/s), %d unchanged since the last run",
                    done,
                    len(files),
                    done / (now - started),
                    reused,
                )


def _manifest(kept: list[Decoded], keep_index: list[int]) -> pd.DataFrame:
    """One row per kept photo; `store_index` is its row in the store."""
    return pd.DataFrame(
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


def _decode_cache(
    settings: IngestSettings, results: list[tuple[Decoded, int]], images: np.ndarray
) -> dict[str, np.ndarray]:
    """This run's decodes, for the next run: one row per file, decoded pixels once per distinct
    photo."""
    rows = [decoded for decoded, _ in results]
    return {
        "settings": np.array(settings.cache_key()),
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


def ingest_folder(
    folder: RawImageFolder, cache: dict[str, np.ndarray], settings: IngestSettings
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """The store (model-size pixels of each kept photo), its manifest, the rejects report and the
    decode cache for the next run, from every file of `folder` (`cache`: the last run's)."""
    logger.info(
        "Ingesting %d files in %d categories from %s",
        len(folder.files),
        len(folder.categories),
        folder.root,
    )
    collected = _Collected(folder, settings.size)
    for decoded in _decoded_in_order(folder, CachedDecodes(cache, settings), settings):
        collected.add(decoded)
    kept = collected.kept
    logger.info("ingestion: %d distinct photos, %d refused", len(kept), len(collected.rejects))
    near = collected.drop_near_duplicates(settings)
    keep_index = [
        k for k in range(len(kept)) if k not in near and kept[k].sha256 not in collected.conflicted
    ]
    images = collected.images
    store = images[keep_index] if len(keep_index) < len(folder.files) else images
    rejects = pd.DataFrame(collected.rejects, columns=REJECT_COLUMNS)
    rejects = rejects.sort_values("path", kind="stable").reset_index(drop=True)
    cache_out = _decode_cache(settings, collected.results, images[: len(kept)])
    return store, _manifest(kept, keep_index), rejects, cache_out
