"""Tests for the Keras model dataset's MLflow logging."""

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pytest

from jewelry_pipeline.core.models.autoencoder import build_autoencoder
from jewelry_pipeline.datasets import mlflow_keras_flavor
from jewelry_pipeline.datasets.keras_model import KerasModelDataset, model_requirements


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
        requirements = (
            Path(mlflow.pyfunc.get_model_dependencies(logged[0].model_uri)).read_text().split()
        )
        assert set(model_requirements()) <= set(requirements)
        batch = np.full((2, 16, 16, 1), 200.0, np.float32)
        np.testing.assert_allclose(
            mlflow.keras.load_model(logged[0].model_uri)(batch).numpy(),
            encoder(batch).numpy(),
            atol=1e-6,
        )
        # What MLflow's log-time check did (turned off there): the model serves its own example.
        info = mlflow.models.get_model_info(logged[0].model_uri)
        example = mlflow.models.Model.load(logged[0].model_uri).load_input_example()
        served = mlflow.pyfunc.load_model(logged[0].model_uri).predict(example)
        assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"][-1] == served.shape[-1]
        np.testing.assert_allclose(served, encoder(example).numpy(), atol=1e-6)
    finally:
        mlflow.set_tracking_uri(None)


def test_a_model_file_is_read_once_while_unchanged_and_again_after_a_save(tmp_path):
    """Nodes share one read of an unchanged file; a new save, another writer's file or a release
    means a fresh read, and every read is the file's model, not the object saved."""
    path = tmp_path / "encoder.keras"
    dataset = KerasModelDataset(str(path))
    _, first, _ = build_autoencoder(16, (4,), 3)
    dataset.save(first)
    read = dataset.load()
    assert read is not first and dataset.load() is read
    _, second, _ = build_autoencoder(16, (4,), 3)
    second.set_weights([w + 1.0 for w in second.get_weights()])
    dataset.save(second)
    reread = dataset.load()
    batch = np.full((1, 16, 16, 1), 100.0, np.float32)
    assert reread is not read
    np.testing.assert_allclose(reread(batch).numpy(), second(batch).numpy(), atol=1e-6)
    KerasModelDataset(str(path)).save(first)  # another dataset (or process) replaces the file
    np.testing.assert_allclose(dataset.load()(batch).numpy(), first(batch).numpy(), atol=1e-6)
    shared = dataset.load()
    dataset.release()
    assert dataset.load() is not shared


def test_logged_model_is_mlflow_keras_with_signature_and_input_example(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("keras-flavour-test")
    save_model = mlflow.keras.save_model
    try:
        _, encoder, _ = build_autoencoder(16, (4,), 3)
        with mlflow.start_run():
            KerasModelDataset(str(tmp_path / "encoder.keras"), mlflow_name="encoder").save(encoder)
        (logged,) = mlflow.search_logged_models(output_format="list")
        info = mlflow.models.get_model_info(logged.model_uri)
        assert {"keras", "python_function"} <= set(info.flavors)
        assert info.flavors["python_function"]["loader_module"] == "mlflow.keras"
        assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 16, 16, 1]
        assert info.saved_input_example_info["artifact_path"] == "input_example.json"
        assert mlflow.keras.save_model is save_model  # MLflow's own flavour, never patched
    finally:
        mlflow.set_tracking_uri(None)


def test_the_flavour_module_saves_into_a_folder_that_does_not_exist_yet(tmp_path):
    _, encoder, _ = build_autoencoder(16, (4,), 3)
    example = np.full((1, 16, 16, 1), 255.0, np.float32)
    path = tmp_path / "not" / "yet"
    mlflow_keras_flavor.save_model(encoder, str(path), input_example=example)
    assert (path / "input_example.json").is_file() and (path / "MLmodel").is_file()


def test_mlflow_keras_still_writes_the_example_before_making_the_folder(tmp_path):
    """Why `mlflow_keras_flavor` exists. When this fails, MLflow makes the folder itself and
    `mlflow.keras.log_model` can replace `Model.log` with the flavour module."""
    _, encoder, _ = build_autoencoder(16, (4,), 3)
    example = np.full((1, 16, 16, 1), 255.0, np.float32)
    with pytest.raises(FileNotFoundError, match="input_example.json"):
        mlflow.keras.save_model(encoder, str(tmp_path / "model"), input_example=example)
