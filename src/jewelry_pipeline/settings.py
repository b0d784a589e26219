"""Kedro project settings: config loader and hooks.
kedro-mlflow's hook goes through `DeferredMlflowHook`, which imports MLflow only for a tracked run.
"""

from kedro.config import OmegaConfigLoader

from jewelry_pipeline.hooks import DataLineageCheck, NodeTimes, RunIdentity, TrackingStoreCheck
from jewelry_pipeline.logs import QuietUserErrors
from jewelry_pipeline.pipelines.categories import RunCategories
from jewelry_pipeline.plugins import DeferredMlflowHook, defer_kedro_mlflow_hook

defer_kedro_mlflow_hook()  # before Kedro loads plugin hooks

HOOKS = (
    QuietUserErrors(),
    RunCategories(),
    TrackingStoreCheck(),
    DataLineageCheck(),
    RunIdentity(),
    NodeTimes(),
    DeferredMlflowHook(),
)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)  # its hook is registered above, deferred

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment's mlflow.yml (conf/team) changes single keys of conf/base's
    "merge_strategy": {"mlflow": "soft"},
}
