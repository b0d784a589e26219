"""The registry champion dataset: the version under the alias and its run's metric; no save."""

from __future__ import annotations

import mlflow
import pytest
from kedro.io import DatasetError
from mlflow.tracking import MlflowClient

from jewelry_pipeline.core.models.classifier import build_classifier
from jewelry_pipeline.datasets import KerasModelDataset, MlflowChampionDataset


def test_champion_is_loaded_from_the_alias_and_never_saved(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("champion")
    try:
        champion = MlflowChampionDataset("clf", "test_accuracy")
        assert champion.load() == {"exists": False, "version": None, "metric": None}
        with mlflow.start_run():
            classifier = build_classifier(16, 2, filters=(4,), embedding_dim=4)
            KerasModelDataset(str(tmp_path / "c.keras"), mlflow_name="classifier").save(classifier)
            mlflow.log_metric("test_accuracy", 0.75)
        (logged,) = mlflow.search_logged_models(output_format="list")
        version = mlflow.register_model(logged.model_uri, "clf")
        MlflowClient().set_registered_model_alias("clf", "champion", version.version)
        assert champion.load() == {"exists": True, "version": 1, "metric": 0.75}
        with pytest.raises(DatasetError, match="read-only"):
            champion.save({"promote": True})
    finally:
        mlflow.set_tracking_uri(None)
