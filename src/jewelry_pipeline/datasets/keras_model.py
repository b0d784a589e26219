"""Kedro dataset for Keras models: atomic `.keras` save, `safe_mode=True` load.
MLflow logging is optional."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from kedro.io import AbstractDataset

from jewelry_pipeline.core.models.files import load_keras_safe, save_keras_atomic

if (
    TYPE_CHECKING
):  # Keras loads with the first model read or written, never when the catalog is built
    import keras

logger = logging.getLogger(__name__)


@cache
def model_requirements() -> list[str] | None:
    """Pinned pip requirements of a logged Keras model: the installed TensorFlow and Keras.

    Given explicitly, MLflow skips inferring them, which loads the model in a subprocess (about 7 s
    a model). None (infer) when no TensorFlow distribution is installed under a known name.
    """
    for tensorflow in ("tensorflow-cpu", "tensorflow"):
        try:
            return [f"{tensorflow}=={version(tensorflow)}", f"keras=={version('keras')}"]
        except PackageNotFoundError:
            continue
    return None


class KerasModelDataset(AbstractDataset["keras.Model", "keras.Model"]):
    """A `.keras` model file; with `mlflow_name`, each save is also logged to the active MLflow
    run."""

    def __init__(
        self, filepath: str, mlflow_name: str | None = None, metadata: dict[str, Any] | None = None
    ):
        self._filepath = Path(filepath)
        self._mlflow_name = mlflow_name
        self.metadata = metadata

    def _load(self) -> keras.Model:
        return load_keras_safe(self._filepath)

    def _save(self, model: keras.Model) -> None:
        save_keras_atomic(model, self._filepath)
        if self._mlflow_name:
            self._log_to_mlflow(model)

    def _log_to_mlflow(self, model: keras.Model) -> None:
        import mlflow
        from mlflow.models import Model, infer_signature

        from jewelry_pipeline.datasets import mlflow_keras_flavor

        if mlflow.active_run() is None:
            logger.info("No active MLflow run; %s saved locally only", self._filepath)
            return
        example = np.full((1, *model.input_shape[1:]), 255.0, np.float32)
        signature = infer_signature(example, model(example, training=False).numpy())
        # What mlflow.keras.log_model does, with a flavour module that makes the model folder
        # before mlflow 3.17's Keras flavour writes the input example into it.
        Model.log(
            artifact_path=None,
            name=self._mlflow_name,
            flavor=mlflow_keras_flavor,
            model=model,
            signature=signature,
            input_example=example,
            pip_requirements=model_requirements(),
        )

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "mlflow_name": self._mlflow_name}
