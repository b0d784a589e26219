"""The categories that shape the per-category (namespaced) pipelines.
They are found in the photo folder, or set explicitly.

The pipeline registry is built before any node runs, so the run's `raw_dir` and parameters are read
when the Kedro context is created (`RunCategories` hook) and the registry is rebuilt from them.
Where no context is made (`kedro registry list`), the project's configuration is read directly.

`per_category_pipelines` instantiates a base pipeline once per category; `per_category` names the
namespaced copies of a dataset that a combining node reads.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from functools import partial, wraps
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from jewelry_pipeline.core.folders import category_folders

logger = logging.getLogger(__name__)

DEFAULT_CATEGORIES = [
    "bracelet",
    "earring",
    "necklace",
    "ring",
]  # the built-in dataset's, before it is generated

_run: dict[str, Any] = {"raw_dir": None, "categories": None, "known": False}


def _raw_dir_path(raw_dir: str, project_path: Path) -> Path:
    """`raw_dir` as ingestion reads it: `~` expanded, relative to the project."""
    path = Path(raw_dir).expanduser()
    return path if path.is_absolute() else project_path / path


def _from_project_config() -> None:
    """Read `categories` and the default `raw_dir` from the project's conf (local over base) when
    no Kedro context told us."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import settings

    conf_source = Path.cwd() / settings.CONF_SOURCE
    if conf_source.is_dir():
        try:
            loader = OmegaConfigLoader(str(conf_source), base_env="base", default_run_env="local")
            _run["categories"] = loader["parameters"].get("categories") or None
            _run["raw_dir"] = str(_raw_dir_path(loader["globals"]["raw_dir"], Path.cwd()))
        except Exception:  # noqa: BLE001 - unreadable conf: the built-in categories, and the run itself reports the conf error
            logger.debug("No readable parameters under %s", conf_source)


def configured_categories() -> list[str]:
    """Sorted categories: the explicit `categories` parameter, else the sub-folders of the run's
    `raw_dir`."""
    if not _run["known"]:
        _from_project_config()
    if _run["categories"]:
        return sorted(str(c) for c in _run["categories"])
    raw_dir = Path(_run["raw_dir"]) if _run["raw_dir"] else None
    found = category_folders(raw_dir) if raw_dir and raw_dir.is_dir() else []
    return found or list(DEFAULT_CATEGORIES)


def per_category(dataset: str, categories: Iterable[str]) -> list[str]:
    """The namespaced copies of `dataset`, `<category>.<dataset>`, in the order of `categories`."""
    return [f"{category}.{dataset}" for category in categories]


def per_category_pipelines(
    base: Pipeline, categories: Iterable[str], inputs: set[str], parameters: set[str]
) -> Pipeline:
    """`base` once per category (namespace), sharing `inputs` and `parameters` across them."""
    namespaced = (
        Pipeline(base, namespace=category, inputs=inputs, parameters=parameters)
        for category in categories
    )
    return sum(namespaced, Pipeline([]))


def with_built(func: Callable[..., Any], built: list[str]) -> Callable[..., Any]:
    """`func` with its keyword `built` (the categories the pipelines were built for) fixed, as a
    plain function: Kedro reads its name, signature and type hints as those of `func`."""
    bound = partial(func, built=built)

    @wraps(func)
    def node_function(*args: Any) -> Any:
        return bound(*args)

    node_function.__signature__ = inspect.signature(bound)
    return node_function


class RunCategories:
    """Reads `raw_dir` (runtime parameter) and `categories` (parameters) once the context exists,
    then rebuilds the registry."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        from kedro.framework.project import pipelines

        loader = context.config_loader
        runtime = getattr(loader, "runtime_params", None) or {}
        _run["raw_dir"] = str(
            _raw_dir_path(
                str(runtime.get("raw_dir") or loader["globals"]["raw_dir"]),
                Path(context.project_path),
            )
        )
        _run["categories"] = loader["parameters"].get("categories") or None
        _run["known"] = True
        pipelines._is_data_loaded = (
            False  # registered before this run's folder was known: build again
        )
        logger.debug("Per-category pipelines for %s", configured_categories())
