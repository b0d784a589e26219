"""The one rule for which sub-folders of a photo tree are categories (used by ingestion and the pipeline registry)."""

from __future__ import annotations

from pathlib import Path


def category_folders(root: str | Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `root`; each is a category."""
    return sorted(p.name for p in Path(root).expanduser().iterdir() if p.is_dir() and not p.name.startswith("."))
