"""Custom Kedro datasets: photo folders, the image store, models, arrays, and the serving boundary.

Each class is imported on first use (PEP 562), so a catalog that only lists photos never loads
TensorFlow.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULE_OF = {
    "ImageFolderDataset": "image_folder",
    "ImageStoreDataset": "image_store",
    "KerasModelDataset": "keras_model",
    "NpzDataset": "npz",
    "OptionalCSVDataset": "tables",
    "TableDataset": "tables",
    "MlflowChampionDataset": "serving",
    "ServingBundleDataset": "serving",
    "ThumbnailsDataset": "thumbnails",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
