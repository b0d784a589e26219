"""Kedro datasets at the serving boundary: the MLflow registry champion, and the serving bundle."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from jewelry_pipeline.core.bundle import (
    BUNDLE_MODEL_NAME,
    FILES_MANIFEST,
    BundleContents,
    ServingBundle,
    read_bundle,
    write_bundle,
)
from jewelry_pipeline.serving.store import store_in_bentoml

logger = logging.getLogger(__name__)


BUNDLE_ARTIFACT = "bundle"  # where a run's serving bundle lies among its MLflow artifacts


class MlflowChampionDataset(AbstractDataset[dict, dict]):
    """The registry's current champion (the model version under `alias`) and its run's `metric`.

    Read-only: the `register_run_models` node registers a run's models and moves the alias.
    """

    def __init__(
        self, model_name: str, metric: str, alias: str = "champion", metadata: dict | None = None
    ):
        self._model_name = model_name
        self._metric = metric
        self._alias = alias
        self.metadata = metadata

    def _load(self) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        try:
            version = client.get_model_version_by_alias(self._model_name, self._alias)
        except MlflowException:
            return {"exists": False, "version": None, "metric": None}
        value = (
            client.get_run(version.run_id).data.metrics.get(self._metric)
            if version.run_id
            else None
        )
        return {"exists": True, "version": int(version.version), "metric": value}

    def _save(self, data: dict) -> None:
        raise DatasetError(f"{self.__class__.__name__} is read-only: the champion is only loaded.")

    def _describe(self) -> dict[str, Any]:
        return {"model_name": self._model_name, "alias": self._alias, "metric": self._metric}


class ServingBundleDataset(AbstractDataset[BundleContents, ServingBundle]):
    """Writes the serving bundle locally and, when promoted, into the BentoML model store."""

    def __init__(
        self, path: str, bentoml_name: str = BUNDLE_MODEL_NAME, metadata: dict | None = None
    ):
        self._path = Path(path)
        self._bentoml_name = bentoml_name
        self.metadata = metadata

    def _load(self) -> ServingBundle:
        return read_bundle(self._path)

    def _save(self, contents: BundleContents) -> None:
        import mlflow

        run = mlflow.active_run()
        contents = replace(
            contents,
            version={
                **contents.version,
                "mlflow_run_id": run.info.run_id if run else None,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        write_bundle(self._path, contents)
        if run is not None:  # so any machine can pull it (`jewelry-pipeline pull-champion`)
            mlflow.log_artifacts(str(self._path.resolve()), artifact_path=BUNDLE_ARTIFACT)
        if not contents.promoted:
            logger.info(
                "Bundle written to %s; not promoted, so the BentoML store keeps the champion",
                self._path,
            )
            return
        tag = store_in_bentoml(self._path.resolve(), contents.version, self._bentoml_name)
        logger.info("Champion bundle saved to the BentoML model store as %s", tag)

    def _exists(self) -> bool:
        return (self._path / FILES_MANIFEST).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "bentoml_name": self._bentoml_name}
