"""Kedro dataset for `.npz` array bundles, written atomically and never unpickled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError


class NpzDataset(AbstractDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """A dict of arrays in one `.npz`; object arrays are refused so loading never needs pickle.

    With `missing_ok`, an absent file loads as an empty dict (a cache before its first run).
    """

    def __init__(
        self, filepath: str, missing_ok: bool = False, metadata: dict[str, Any] | None = None
    ):
        self._filepath = Path(filepath)
        self._missing_ok = missing_ok
        self.metadata = metadata

    def _load(self) -> dict[str, np.ndarray]:
        if self._missing_ok and not self._filepath.is_file():
            return {}
        with np.load(self._filepath, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def _save(self, data: dict[str, np.ndarray]) -> None:
        arrays = {key: np.asarray(value) for key, value in data.items()}
        objects = [key for key, value in arrays.items() if value.dtype == object]
        if objects:
            raise DatasetError(
                f"NpzDataset refuses object arrays {objects}: they would need pickle to load"
            )
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_name(f".{self._filepath.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, self._filepath)
        finally:
            tmp.unlink(missing_ok=True)

    def _exists(self) -> bool:
        return self._missing_ok or self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "missing_ok": self._missing_ok}
