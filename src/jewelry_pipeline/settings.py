"""Kedro project settings: config loader and hooks (kedro-mlflow's own hook comes from its plugin entry point)."""

from kedro.config import OmegaConfigLoader

from jewelry_pipeline.hooks import DataLineageCheck, NodeTimes, RunIdentity, TrackingStoreCheck
from jewelry_pipeline.logs import QuietUserErrors
from jewelry_pipeline.pipelines.categories import RunCategories

HOOKS = (QuietUserErrors(), RunCategories(), TrackingStoreCheck(), DataLineageCheck(), RunIdentity(), NodeTimes())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
