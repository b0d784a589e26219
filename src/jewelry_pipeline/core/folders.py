"""The photo tree: which sub-folders are categories, and every file in them listed without decoding.
Used by ingestion, the catalog update and the pipeline registry.

Policy: names starting with '.' are hidden and symbolic links are never followed, for files and
folders alike. Every entry under the root is either a candidate photo or a `SkippedEntry` with a
reason a user can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jewelry_pipeline.core.errors import UserInputError

SUBSTYLE_LABELS = (
    "substyles.csv"  # optional ground truth at the top of the tree, read for evaluation only
)
ITEM_DETAILS = (
    "catalog.csv"  # optional item titles at the top of the tree (path, title), shown by the page
)


def is_category_folder(path: Path) -> bool:
    """A real (not symlinked), non-hidden sub-folder."""
    return path.is_dir() and not path.is_symlink() and not path.name.startswith(".")


def category_folders(root: str | Path) -> list[str]:
    """Sorted names of the category sub-folders of `root`."""
    return sorted(p.name for p in Path(root).expanduser().iterdir() if is_category_folder(p))


SKIP_ADVICE = {
    "hidden": "names starting with '.' are hidden and never read; rename it to use it",
    "symlink": (
        "symbolic links are not followed (files and folders alike); "
        "copy the photo or folder in instead"
    ),
    "loose_file": (
        "a photo directly in the raw folder has no category; move it into a category sub-folder"
    ),
    "unreadable_folder": "the folder cannot be listed; fix its permissions",
    "not_a_file": "not a regular file (device, pipe or socket)",
}


class MissingPhotoFolder(UserInputError):
    """`raw_dir` is not a folder."""


@dataclass(frozen=True)
class RawFile:
    """One candidate file: its path relative to the root, its category, its size in bytes and
    modification time."""

    relpath: str
    category: str
    size: int
    mtime_ns: int = 0


@dataclass(frozen=True)
class SkippedEntry:
    """A file or folder under the root that is not read, and why."""

    relpath: str
    category: str
    reason: str
    detail: str


@dataclass(frozen=True)
class RawImageFolder:
    """A listing of a photo tree; `read` gives a file's bytes on demand (lazy, like
    PartitionedDataset)."""

    root: Path
    categories: tuple[str, ...]
    files: tuple[RawFile, ...] = field(repr=False)
    skipped: tuple[SkippedEntry, ...] = field(default=(), repr=False)

    def read(self, relpath: str) -> bytes:
        """Return the bytes of one listed file."""
        return (self.root / relpath).read_bytes()


def _skip(path: Path, root: Path, category: str, reason: str, detail: str = "") -> SkippedEntry:
    suffix = "/" if path.is_dir() and not path.is_symlink() else ""
    return SkippedEntry(
        path.relative_to(root).as_posix() + suffix, category, reason, detail or SKIP_ADVICE[reason]
    )


def _entry_skip(path: Path, root: Path, category: str) -> SkippedEntry | None:
    """Why `path` (any entry inside a category) is not read, or None for a regular photo candidate
    or folder."""
    if path.name.startswith("."):
        return _skip(path, root, category, "hidden")
    if path.is_symlink():
        return _skip(path, root, category, "symlink")
    if not path.is_dir() and not path.is_file():
        return _skip(path, root, category, "not_a_file")
    return None


def _walk_category(root: Path, category: str) -> tuple[list[RawFile], list[SkippedEntry]]:
    """Every regular file under one category folder (nested folders included), plus what is
    skipped."""
    files: list[RawFile] = []
    skipped: list[SkippedEntry] = []

    def unreadable(error: OSError) -> None:
        folder = Path(error.filename)
        skipped.append(
            _skip(
                folder,
                root,
                category,
                "unreadable_folder",
                f"{SKIP_ADVICE['unreadable_folder']} ({error.strerror})",
            )
        )

    for folder, subfolders, names in os.walk(
        root / category, onerror=unreadable, followlinks=False
    ):
        here = Path(folder)
        for name in sorted(subfolders):
            reason = _entry_skip(here / name, root, category)
            if reason is not None:
                skipped.append(reason)
                subfolders.remove(name)
        subfolders.sort()
        for name in sorted(names):
            path = here / name
            reason = _entry_skip(path, root, category)
            if reason is not None:
                skipped.append(reason)
            else:
                stat = path.stat()
                files.append(
                    RawFile(
                        path.relative_to(root).as_posix(), category, stat.st_size, stat.st_mtime_ns
                    )
                )
    return files, skipped


def list_image_folder(root: str | Path) -> RawImageFolder:
    """List every photo candidate under each category sub-folder of `root`, and every entry that is
    skipped."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise MissingPhotoFolder(
            f"The photo folder '{root}' does not exist or is not a folder; "
            "check `--params raw_dir=...`."
        )
    categories: list[str] = []
    files: list[RawFile] = []
    skipped: list[SkippedEntry] = []
    for path in sorted(root.iterdir()):
        if is_category_folder(path):
            categories.append(path.name)
            found, passed_over = _walk_category(root, path.name)
            files += found
            skipped += passed_over
        elif (
            path.name in (SUBSTYLE_LABELS, ITEM_DETAILS)
            and path.is_file()
            and not path.is_symlink()
        ):
            continue  # read by the `substyle_labels` and `item_details` datasets
        elif path.is_file() and not path.is_symlink() and not path.name.startswith("."):
            skipped.append(_skip(path, root, "", "loose_file"))
        else:
            skipped.append(_entry_skip(path, root, "") or _skip(path, root, "", "not_a_file"))
    return RawImageFolder(
        root=root, categories=tuple(categories), files=tuple(files), skipped=tuple(skipped)
    )
