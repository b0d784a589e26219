"""Custom Kedro datasets: photo folders, the image store, models, arrays, and the serving boundary."""

from .image_folder import ImageFolderDataset, RawImageFolder
from .image_store import ImageStoreDataset
from .keras_model import KerasModelDataset
from .npz import NpzDataset, OptionalCSVDataset
from .serving import MlflowChampionDataset, ServingBundleDataset

__all__ = [
    "ImageFolderDataset",
    "ImageStoreDataset",
    "KerasModelDataset",
    "MlflowChampionDataset",
    "NpzDataset",
    "OptionalCSVDataset",
    "RawImageFolder",
    "ServingBundleDataset",
]
