"""Kedro datasets for the project's CSV tables: text columns stay text, and an optional table may
be absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.pandas import CSVDataset

from jewelry_pipeline.core.lookup import TEXT_DTYPES, read_table


class TableDataset(CSVDataset):
    """`pandas.CSVDataset` that reads the project's text columns (`TEXT_COLUMNS`) as text."""

    def __init__(self, *, load_args: dict[str, Any] | None = None, **kwargs: Any):
        load_args = dict(load_args or {})
        load_args["dtype"] = {**TEXT_DTYPES, **load_args.get("dtype", {})}
        super().__init__(load_args=load_args, **kwargs)


class OptionalCSVDataset(AbstractDataset[None, pd.DataFrame]):
    """Read-only CSV that loads as an empty table with `columns` when the file is absent."""

    def __init__(self, filepath: str, columns: list[str], metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._columns = list(columns)
        self.metadata = metadata

    def _load(self) -> pd.DataFrame:
        if not self._filepath.is_file():
            return pd.DataFrame(columns=self._columns)
        return read_table(self._filepath)

    def _save(self, data: None) -> None:
        raise DatasetError("OptionalCSVDataset is read-only")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "columns": self._columns}
