"""jewelry-pipeline: catalog-image classifier, sub-style discovery and similar-item search."""

import logging
import os
import warnings

from jewelry_pipeline.native_logs import quiet_tensorflow_import

__version__ = "0.1.0"

# Telemetry is off everywhere this package is imported (and in the processes it starts): Kedro,
# BentoML, MLflow and Evidently (DO_NOT_TRACK); TensorFlow's start-up chatter too. The one list:
# the Makefile, bentofile.yaml and .ci/run repeat it only for tools that start before this import.
QUIET_ENV = {
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
for _name, _value in QUIET_ENV.items():
    os.environ.setdefault(_name, _value)


class _DropMessages(logging.Filter):
    """Drops log records that contain one of the given texts."""

    def __init__(self, *texts: str):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


def silence_known_warnings() -> None:
    """Silence other packages' warnings that a user can do nothing about, each at the one message it
    prints.

    Runs when this package is imported and, through the `kedro.init` entry point, when the Kedro CLI
    starts (before its plugins import MLflow).
    """
    # kedro 1.7 and kedro-mlflow 2.0.3 call OmegaConf.register_new_resolver (deprecated in OmegaConf
    # 2.4).
    warnings.filterwarnings(
        "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
    )
    # mlflow 3.17 warns, in colour codes, that kedro-mlflow's KedroPipelineModel.predict has no type
    # hints. MLflow raises it under its own `simplefilter("once")`, which outranks any filter, so it
    # is dropped as a log record.
    if not any(isinstance(f, _DropMessages) for f in logging.getLogger("py.warnings").filters):
        logging.getLogger("py.warnings").addFilter(
            _DropMessages("Add type hints to the `predict` method")
        )
    # kedro 1.7 warns about dots in dataset names; ours are the namespaced outputs
    # "<category>.<name>" that the combining nodes read, which is how Kedro names a modular
    # pipeline's outputs.
    warnings.filterwarnings(
        "ignore", message=r"One or more dataset names contain '\.' characters", category=UserWarning
    )


def on_kedro_cli_start() -> None:
    """The `kedro.init` entry point: quiet known warnings, and load kedro-mlflow's commands only
    when used."""
    from jewelry_pipeline.plugins import defer_kedro_mlflow_cli

    silence_known_warnings()
    defer_kedro_mlflow_cli()


silence_known_warnings()

quiet_tensorflow_import()
