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
    run.

    Every node gets the model as read from the file. The file is read once while it is unchanged
    (same inode, size and modification time): the nodes of a run that read one model share it
    instead of rebuilding it each time (about 0.4 s a read for a small model). Models are only read
    (predict), never changed, by the nodes that load them. The model is dropped when the runner
    releases the dataset.
    """

    def __init__(
        self, filepath: str, mlflow_name: str | None = None, metadata: dict[str, Any] | None = None
    ):
        self._filepath = Path(filepath)
        self._mlflow_name = mlflow_name
        self.metadata = metadata
        self._read: tuple[tuple[int, int, int], keras.Model] | None = None  # (file stamp, model)

    def _file_stamp(self) -> tuple[int, int, int]:
        stat = self._filepath.stat()
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _load(self) -> keras.Model:
        stamp = self._file_stamp()
        if self._read is None or self._read[0] != stamp:
            self._read = (stamp, load_keras_safe(self._filepath))
        return self._read[1]

    def _save(self, model: keras.Model) -> None:
        self._read = None
        save_keras_atomic(model, self._filepath)
        if self._mlflow_name:
            self._log_to_mlflow(model)

    def _release(self) -> None:
        self._read = None

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
            # MLflow would load the logged model again to predict the example and only warn if it
            # failed (0.7 s a model); tests/datasets/test_keras_model.py checks that it serves.
            validate_serving_input=False,
        )

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "mlflow_name": self._mlflow_name}
