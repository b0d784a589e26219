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
    CATALOG_FILE,
    CONFIG_FILE,
    FILES_MANIFEST,
    BundleContents,
    ServingBundle,
    read_bundle,
    version_config,
    write_bundle,
)
from jewelry_pipeline.core.lookup import read_table
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
    """Writes the serving bundle locally and, when promoted, into the BentoML model store.

    With `follow_store_edits`, it reads the store's latest version instead of the folder when that
    version is the shop's sub-style edit of the folder's bundle (made on the store-served service):
    the same run's models and the same items. A catalog update then keeps those edits.
    """

    def __init__(
        self,
        path: str,
        bentoml_name: str = BUNDLE_MODEL_NAME,
        follow_store_edits: bool = False,
        metadata: dict | None = None,
    ):
        self._path = Path(path)
        self._bentoml_name = bentoml_name
        self._follow_store_edits = follow_store_edits
        self.metadata = metadata

    def _load(self) -> ServingBundle:
        edited = self._store_edit() if self._follow_store_edits else None
        return read_bundle(edited or self._path)

    def _store_edit(self) -> Path | None:
        """The store's latest version when it is a sub-style edit of the folder's bundle."""
        import bentoml

        try:
            model = bentoml.models.get(f"{self._bentoml_name}:latest")
        except bentoml.exceptions.NotFound:
            return None
        made = model.info.metadata or {}
        folder = self._path.resolve()
        if made.get("change") != "substyle_edit" or not (folder / CONFIG_FILE).is_file():
            return None
        run = version_config(folder).get("version", {}).get("mlflow_run_id")
        if not run or made.get("mlflow_run_id") != run:  # the same run's models, known
            return None
        items = [
            read_table(place / CATALOG_FILE)["item_id"].astype(str)
            for place in (folder, Path(model.path))
        ]
        if list(items[0]) != list(items[1]):
            return None
        logger.info(
            "Starting from %s, the served version with the shop's sub-style edits, not %s",
            model.tag,
            self._path,
        )
        return Path(model.path)

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
