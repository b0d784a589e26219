"""The configured category list that shapes the per-category (namespaced) pipelines at build time."""

from __future__ import annotations

from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings

DEFAULT_CATEGORIES = ["bracelet", "earring", "necklace", "ring"]


def configured_categories(project_path: Path | None = None) -> list[str]:
    """`categories` from the project parameters (local overrides base), or the built-in four."""
    conf_source = Path(project_path or Path.cwd()) / settings.CONF_SOURCE
    if not conf_source.is_dir():
        return list(DEFAULT_CATEGORIES)
    loader = OmegaConfigLoader(str(conf_source), base_env="base", default_run_env="local")
    try:
        parameters = loader["parameters"]
    except Exception:  # noqa: BLE001 - no parameters yet: fall back to the built-in dataset
        return list(DEFAULT_CATEGORIES)
    return list(parameters.get("categories", DEFAULT_CATEGORIES))
