"""kedro-mlflow without its start-up cost: MLflow is loaded only by a command or run that uses it.
It takes ~1.5 s to import, plus its database; `kedro registry list` or untracked ingestion skip it.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import Any

import click
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)
# The modules of kedro-mlflow's two entry points (`kedro.project_commands` and `kedro.hooks`): both
# import MLflow.
KEDRO_MLFLOW_CLI = "kedro_mlflow.framework.cli.cli"
KEDRO_MLFLOW_HOOK = "kedro_mlflow.framework.hooks.mlflow_hook"
MLFLOW_CONFIG_PATTERNS = [
    "mlflow*",
    "mlflow*/**",
    "**/mlflow*",
]  # kedro-mlflow's patterns for mlflow.yml


def _real_module(name: str) -> types.ModuleType:
    """The real module `name`, replacing its stand-in (this imports MLflow)."""
    module = sys.modules.get(name)
    if module is None or getattr(module, "__deferred__", False):
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
    return module


def _register_stand_in(name: str, doc: str, **attributes: Any) -> None:
    """Put a stand-in for module `name` in `sys.modules`: `attributes` are its own, any other is the
    real one's."""
    if name in sys.modules:
        return

    def real_attribute(attribute: str) -> Any:
        if attribute.startswith(
            "__"
        ):  # introspection (`inspect.getmodule` asks every module for `__file__`)
            raise AttributeError(attribute)
        return getattr(_real_module(name), attribute)

    stand_in = types.ModuleType(name, doc)
    stand_in.__dict__.update(attributes, __deferred__=True, __getattr__=real_attribute)
    sys.modules[name] = stand_in


def _kedro_mlflow_cli() -> types.ModuleType:
    """kedro-mlflow's real CLI module."""
    return _real_module(KEDRO_MLFLOW_CLI)


class _DeferredMlflowGroup(click.Group):
    """`kedro mlflow ...`: kedro-mlflow's own group, imported when one of its commands is listed or
    run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return _kedro_mlflow_cli().mlflow_commands.list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return _kedro_mlflow_cli().mlflow_commands.get_command(ctx, cmd_name)


def defer_kedro_mlflow_cli() -> None:
    """Register a stand-in for kedro-mlflow's CLI module, so loading Kedro's plugin commands imports
    no MLflow.

    Called from the `kedro.init` entry point, which Kedro runs before it loads plugin commands.
    """
    commands = click.Group(name="Mlflow")
    commands.add_command(
        _DeferredMlflowGroup(
            name="mlflow", help="Use mlflow-specific commands inside kedro project."
        )
    )
    _register_stand_in(
        KEDRO_MLFLOW_CLI,
        "kedro-mlflow's CLI, imported when a `kedro mlflow` command is used.",
        commands=commands,
    )


def defer_kedro_mlflow_hook() -> None:
    """Register a stand-in for kedro-mlflow's hook module, so Kedro's loading of plugin hooks
    imports no MLflow.

    Its `mlflow_hook` is an empty plugin (unregistered by `DISABLE_HOOKS_FOR_PLUGINS`);
    `DeferredMlflowHook` creates the real hook when a run is tracked. Called from `settings.py`,
    which Kedro reads before it loads plugin hooks.
    """
    _register_stand_in(
        KEDRO_MLFLOW_HOOK,
        "kedro-mlflow's hook module, imported by the first tracked run.",
        mlflow_hook=object(),
    )


class DeferredMlflowHook:
    """kedro-mlflow's hook, created only for a run that is tracked (not listed in mlflow.yml's
    `tracking.disable_tracking.pipelines`); the earlier hook calls are replayed to it in order.

    `settings.py` disables the plugin's own registration (`DISABLE_HOOKS_FOR_PLUGINS`) and registers
    this.
    """

    def __init__(self) -> None:
        self._context = None
        self._catalog_args: dict[str, Any] | None = None
        self._hook = None
        self._passed_params: dict[str, Any] = {}  # the parameter inputs already given this run

    @hook_impl
    def after_context_created(self, context) -> None:
        self._context, self._catalog_args, self._hook = context, None, None

    @hook_impl
    def after_catalog_created(
        self, catalog, conf_catalog, conf_creds, parameters, save_version, load_versions
    ) -> None:
        self._catalog_args = {
            "catalog": catalog,
            "conf_catalog": conf_catalog,
            "conf_creds": conf_creds,
            "parameters": parameters,
            "save_version": save_version,
            "load_versions": load_versions,
        }

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        names = run_params.get("pipeline_names") or [
            run_params.get("pipeline_name") or "__default__"
        ]
        if not self._tracked(names):
            logger.info(
                "Not tracked in MLflow: %s is listed in mlflow.yml "
                "`tracking.disable_tracking.pipelines`",
                "+".join(names),
            )
            return
        self._hook = _real_module(KEDRO_MLFLOW_HOOK).MlflowHook()
        self._passed_params = {}
        self._hook.after_context_created(self._context)
        if self._catalog_args is not None:
            self._hook.after_catalog_created(**self._catalog_args)
        self._hook.before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)

    @hook_impl
    def before_node_run(self, node, catalog, inputs, is_async) -> None:
        if self._hook is not None:
            inputs = self._new_inputs(inputs)
            self._hook.before_node_run(node=node, catalog=catalog, inputs=inputs, is_async=is_async)

    def _new_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` without the parameters already given with the same value: kedro-mlflow logs a
        node's parameters one MLflow call each, and one `params:autoencoders` feeds every category's
        nodes (~900 calls, 2 s, in a 4-category run, for ~60 parameters)."""
        new = {}
        for name, value in inputs.items():
            is_param = name.startswith("params:") or name == "parameters"
            if is_param and name in self._passed_params and self._passed_params[name] == value:
                continue
            if is_param:
                self._passed_params[name] = value
            new[name] = value
        return new

    @hook_impl
    def after_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if self._hook is not None:
            self._hook.after_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)

    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        if self._hook is not None:
            self._hook.on_pipeline_error(
                error=error, run_params=run_params, pipeline=pipeline, catalog=catalog
            )

    def _tracked(self, pipeline_names: list[str]) -> bool:
        """kedro-mlflow's own rule: a run is untracked when every pipeline it runs is listed as
        disabled."""
        loader = self._context.config_loader
        loader.config_patterns.setdefault("mlflow", MLFLOW_CONFIG_PATTERNS)
        try:
            config = loader["mlflow"]
        except MissingConfigException:
            config = {}
        disabled = ((config.get("tracking") or {}).get("disable_tracking") or {}).get(
            "pipelines"
        ) or []
        return not all(name in disabled for name in pipeline_names)
