"""Bulk embedding that survives faults: catalog photos are embedded chunk by chunk, each chunk
written atomically to a folder, so a run killed half-way resumes from its last finished chunk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jewelry_pipeline.core.query import QueryEncoder

logger = logging.getLogger(__name__)


def _fingerprint(identity: str, rows: np.ndarray, categories: np.ndarray, chunk_rows: int) -> str:
    """What the chunks depend on: the models (`identity`), rows, categories and chunking."""
    digest = hashlib.sha256(identity.encode())
    digest.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    digest.update("\n".join(categories).encode())
    digest.update(str(chunk_rows).encode())
    return digest.hexdigest()


def _log_progress(done: int, total: int, started: float, reused: int) -> None:
    elapsed = time.perf_counter() - started
    rate = (done - reused) / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    logger.info(
        "embedding: %d/%d photos (%.0f photos/s, ETA %.0f s; %d from earlier chunks)",
        done,
        total,
        rate,
        eta,
        reused,
    )


def embed_in_chunks(
    encoder: QueryEncoder,
    images: np.ndarray,
    rows: np.ndarray,
    categories: np.ndarray,
    folder: str | Path,
    identity: str,
    chunk_rows: int = 2048,
    batch_size: int = 256,
    progress: Callable[[int, int, float, int], None] = _log_progress,
) -> np.ndarray:
    """The index vectors of store `rows` (`QueryEncoder.catalog_vectors`), one chunk file at a time.

    `images` may be memory-mapped: only one chunk of photos is in memory. Finished chunks in
    `folder` made for the same `identity` (say, the bundle's digest), rows, categories and chunking
    are reused; others are cleared first. The result equals one uninterrupted run.
    """
    rows = np.asarray(rows, dtype=np.int64)
    categories = np.asarray(categories).astype(str)
    if len(rows) == 0 or len(rows) != len(categories):
        raise ValueError("rows and categories must be non-empty and of the same length")
    folder = Path(folder)
    fingerprint = _fingerprint(identity, rows, categories, chunk_rows)
    job = folder / "job.json"
    if job.exists() and json.loads(job.read_text()).get("fingerprint") != fingerprint:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    job.write_text(json.dumps({"fingerprint": fingerprint, "rows": int(len(rows))}))
    starts = range(0, len(rows), chunk_rows)
    started, done, reused = time.perf_counter(), 0, 0
    for number, start in enumerate(starts):
        path = folder / f"chunk-{number:06d}.npy"
        stop = min(start + chunk_rows, len(rows))
        if path.exists():
            reused += stop - start
        else:
            vectors = encoder.catalog_vectors(
                images, rows[start:stop], categories[start:stop], batch_size
            )
            staging = path.with_suffix(".tmp.npy")
            np.save(staging, vectors.astype(np.float32))
            os.replace(staging, path)  # a chunk is there whole or not at all
        done = stop
        progress(done, len(rows), started, reused)
    return np.concatenate(
        [np.load(folder / f"chunk-{n:06d}.npy", allow_pickle=False) for n in range(len(starts))]
    )
