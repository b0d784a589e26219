"""The uint8 image store: one `.npy` array of N x H x W x 3.
Written atomically, read memory-mapped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CHUNK_ROWS = 1024


def write_store(path: str | Path, images: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> None:
    """Write `images` chunk by chunk to a temporary file, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"image store expects uint8 N x H x W x C, got {images.dtype} {images.shape}"
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=images.shape)
        for start in range(0, len(images), chunk_rows):
            out[start : start + chunk_rows] = images[start : start + chunk_rows]
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_store(path: str | Path) -> np.ndarray:
    """Open the store read-only and memory-mapped, so no full copy is held in memory."""
    images = np.load(Path(path), mmap_mode="r", allow_pickle=False)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"{path} is not an image store (dtype {images.dtype}, shape {images.shape})"
        )
    return images
