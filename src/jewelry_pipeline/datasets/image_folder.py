"""Kedro dataset that lists a folder-per-category photo tree without decoding anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from jewelry_pipeline.folders import category_folders


@dataclass(frozen=True)
class RawFile:
    """One candidate file: its path relative to the root, its category and its size in bytes."""

    relpath: str
    category: str
    size: int


@dataclass(frozen=True)
class RawImageFolder:
    """A listing of a photo tree; `read` gives a file's bytes on demand (lazy, like PartitionedDataset)."""

    root: Path
    categories: tuple[str, ...]
    files: tuple[RawFile, ...] = field(repr=False)

    def read(self, relpath: str) -> bytes:
        """Return the bytes of one listed file."""
        return (self.root / relpath).read_bytes()


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_image_folder(root: str | Path) -> RawImageFolder:
    """List every non-hidden file under each category sub-folder of `root` (nested folders included)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"Raw image folder '{root}' does not exist or is not a folder.")
    categories = category_folders(root)
    files = []
    for category in categories:
        for path in sorted((root / category).rglob("*")):
            if path.is_file() and not path.is_symlink() and not _is_hidden(path, root):
                files.append(RawFile(path.relative_to(root).as_posix(), category, path.stat().st_size))
    return RawImageFolder(root=root, categories=tuple(categories), files=tuple(files))


class ImageFolderDataset(AbstractDataset[None, RawImageFolder]):
    """Read-only dataset: categories are the sub-folder names of `path`."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def _load(self) -> RawImageFolder:
        return list_image_folder(self._path)

    def _save(self, data: None) -> None:
        raise DatasetError("ImageFolderDataset is read-only: it lists photos, it never writes them.")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
