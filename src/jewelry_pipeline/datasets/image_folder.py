"""Kedro dataset that lists a folder-per-category photo tree without decoding anything
(`core.folders.list_image_folder`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from jewelry_pipeline.core.folders import MissingPhotoFolder, RawImageFolder, list_image_folder


class MissingPhotoFolderError(MissingPhotoFolder, DatasetError):
    """`raw_dir` is not a folder: a user error that Kedro passes on as it is."""


class ImageFolderDataset(AbstractDataset[None, RawImageFolder]):
    """Read-only dataset: categories are the sub-folder names of `path`."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    @property
    def path(self) -> Path:
        """The folder this dataset lists (the run's `raw_dir`)."""
        return self._path

    def _load(self) -> RawImageFolder:
        try:
            return list_image_folder(self._path)
        except MissingPhotoFolder as exc:
            raise MissingPhotoFolderError(str(exc)) from None

    def _save(self, data: None) -> None:
        raise DatasetError(
            "ImageFolderDataset is read-only: it lists photos, it never writes them."
        )

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
