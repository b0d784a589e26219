"""Tests for the Keras model dataset's MLflow logging."""

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np

from jewelry_pipeline.datasets.keras_model import KerasModelDataset, model_requirements
from jewelry_pipeline.models.autoencoder import build_autoencoder


def test_model_requirements_pin_the_installed_tensorflow_and_keras():
    pins = dict(requirement.split("==") for requirement in model_requirements())
    assert pins["keras"] == version("keras")
    tensorflow = next(name for name in pins if name.startswith("tensorflow"))
    assert pins[tensorflow] == version(tensorflow)


def test_logged_model_carries_the_pins_and_reloads(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("keras-dataset-test")
    try:
        _, encoder, _ = build_autoencoder(16, (4,), 3)
        with mlflow.start_run():
            KerasModelDataset(str(tmp_path / "encoder.keras"), mlflow_name="encoder").save(encoder)
        logged = mlflow.search_logged_models(output_format="list")
        assert [model.name for model in logged] == ["encoder"]
        requirements = Path(mlflow.pyfunc.get_model_dependencies(logged[0].model_uri)).read_text().split()
        assert set(model_requirements()) <= set(requirements)
        batch = np.full((2, 16, 16, 1), 200.0, np.float32)
        np.testing.assert_allclose(mlflow.keras.load_model(logged[0].model_uri)(batch).numpy(), encoder(batch).numpy(), atol=1e-6)
    finally:
        mlflow.set_tracking_uri(None)
