"""Custom Kedro datasets for what kedro-datasets does not cover: raw image folders and the image store."""

from .image_folder import ImageFolderDataset, RawImageFolder
from .image_store import ImageStoreDataset
from .keras_model import KerasModelDataset
from .npz import NpzDataset, OptionalCSVDataset

__all__ = ["ImageFolderDataset", "ImageStoreDataset", "KerasModelDataset", "NpzDataset", "OptionalCSVDataset", "RawImageFolder"]
