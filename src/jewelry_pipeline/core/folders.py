"""The one rule for which sub-folders of a photo tree are categories.
Used by ingestion and the pipeline registry.

Policy: names starting with '.' are hidden and symbolic links are never followed, for files and
folders alike.
"""

from __future__ import annotations

from pathlib import Path

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
