"""Kedro dataset for catalog thumbnails: the JPEG bytes and offsets in one `.npz`, no pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset

from jewelry_pipeline.core.thumbnails import Thumbnails


class ThumbnailsDataset(AbstractDataset[Thumbnails, Thumbnails]):
    """Saves `Thumbnails` as two arrays; loads them back (with `allow_pickle=False`)."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> Thumbnails:
        with np.load(self._filepath, allow_pickle=False) as arrays:
            return Thumbnails.from_arrays(arrays)

    def _save(self, data: Thumbnails) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        np.savez(self._filepath, **data.to_arrays())

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
