"""Kedro dataset for the uint8 image store (`.npy`, atomic write, memory-mapped read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset

from jewelry_pipeline.core.store import open_store, write_store


class ImageStoreDataset(AbstractDataset[np.ndarray, np.ndarray]):
    """Saves an N x H x W x C uint8 array; loads it back memory-mapped."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> np.ndarray:
        return open_store(self._filepath)

    def _save(self, data: np.ndarray) -> None:
        write_store(self._filepath, data)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
