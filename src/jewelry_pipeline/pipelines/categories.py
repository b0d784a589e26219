"""The categories that shape the per-category (namespaced) pipelines: found in the photo folder, or set explicitly.

The pipeline registry is built before any node runs, so the run's `raw_dir` and parameters are read
when the Kedro context is created (`RunCategories` hook) and the registry is rebuilt from them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from jewelry_pipeline.folders import category_folders

logger = logging.getLogger(__name__)

DEFAULT_RAW_DIR = "data/01_raw/jewelry"
DEFAULT_CATEGORIES = ["bracelet", "earring", "necklace", "ring"]  # the built-in dataset's, before it is generated

_run: dict[str, Any] = {"raw_dir": None, "categories": None}


def configured_categories() -> list[str]:
    """Sorted categories: the explicit `categories` parameter, else the sub-folders of the run's `raw_dir`."""
    if _run["categories"]:
        return sorted(str(c) for c in _run["categories"])
    raw_dir = Path(_run["raw_dir"] or DEFAULT_RAW_DIR)
    found = category_folders(raw_dir) if raw_dir.is_dir() else []
    return found or list(DEFAULT_CATEGORIES)


class RunCategories:
    """Reads `raw_dir` (runtime parameter) and `categories` (parameters) once the context exists, then rebuilds the registry."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        from kedro.framework.project import pipelines

        runtime = getattr(context, "_runtime_params", None) or {}
        raw_dir = runtime.get("raw_dir") or DEFAULT_RAW_DIR
        path = Path(raw_dir)
        _run["raw_dir"] = str(path if path.is_absolute() else Path(context.project_path) / path)
        _run["categories"] = context.params.get("categories") or None
        pipelines._is_data_loaded = False  # registered before this run's folder was known: build again
        logger.debug("Per-category pipelines for %s", configured_categories())
