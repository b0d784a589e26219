"""Kedro datasets at the serving boundary: MLflow registry champion, and the serving bundle."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from jewelry_pipeline.bundle import BUNDLE_MODEL_NAME, ServingBundle, read_bundle, write_bundle

logger = logging.getLogger(__name__)


class MlflowChampionDataset(AbstractDataset[dict, dict]):
    """Load: the registry's current champion and its metric. Save: register this run's models and
    move the alias when the decision says so, recording the decision and its reason in MLflow."""

    def __init__(self, model_name: str, metric: str, alias: str = "champion", encoder_prefix: str | None = None, metadata: dict | None = None):
        self._model_name = model_name
        self._metric = metric
        self._alias = alias
        self._encoder_prefix = encoder_prefix
        self.metadata = metadata

    def _load(self) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        try:
            version = client.get_model_version_by_alias(self._model_name, self._alias)
        except MlflowException:
            return {"exists": False, "version": None, "metric": None}
        value = client.get_run(version.run_id).data.metrics.get(self._metric) if version.run_id else None
        return {"exists": True, "version": int(version.version), "metric": value}

    def _save(self, decision: dict[str, Any]) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        run = mlflow.active_run()
        if run is None:
            raise DatasetError("Promotion needs an active MLflow run (run it through `kedro run`).")
        client = MlflowClient()
        logged = _models_logged_by(run.info.experiment_id, run.info.run_id)
        if "classifier" not in logged:
            raise DatasetError(
                f"This run ({run.info.run_id}) logged no classifier model; promotion registers only the models of its own run. "
                "Run the models and `package` together: `kedro run` (or `--pipelines classifier,autoencoders,clustering,recommender,package`)."
            )
        registered = {self._model_name: logged["classifier"]}
        if self._encoder_prefix:
            registered |= {f"{self._encoder_prefix}{name.removeprefix('encoder_')}": m for name, m in logged.items() if name.startswith("encoder_")}
        versions = {}
        for name, model in registered.items():
            version = mlflow.register_model(model.model_uri, name)
            versions[name] = int(version.version)
            if decision["promote"]:
                client.set_registered_model_alias(name, self._alias, version.version)
        mlflow.set_tags({"promotion.decision": "promoted" if decision["promote"] else "kept_champion", "promotion.reason": decision["reason"]})
        mlflow.log_dict({**decision, "registered_versions": versions}, "promotion.json")
        logger.info("Promotion: %s (%s)", "promoted" if decision["promote"] else "champion kept", decision["reason"])

    def _describe(self) -> dict[str, Any]:
        return {"model_name": self._model_name, "alias": self._alias, "metric": self._metric}


def _models_logged_by(experiment_id: str, run_id: str) -> dict[str, Any]:
    """The models this run logged, by name: never another run's, even one that finished later in the same store."""
    import mlflow

    models = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_time", "ascending": True}],
        output_format="list",
    )
    return {m.name: m for m in models}


class ServingBundleDataset(AbstractDataset[dict, ServingBundle]):
    """Writes the serving bundle locally and, when promoted, into the BentoML model store."""

    def __init__(self, path: str, bentoml_name: str = BUNDLE_MODEL_NAME, metadata: dict | None = None):
        self._path = Path(path)
        self._bentoml_name = bentoml_name
        self.metadata = metadata

    def _load(self) -> ServingBundle:
        return read_bundle(self._path)

    def _save(self, contents: dict[str, Any]) -> None:
        import mlflow

        contents = dict(contents)
        promote = contents.pop("promote")
        run = mlflow.active_run()
        contents["version"] = {
            **contents["version"],
            "mlflow_run_id": run.info.run_id if run else None,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_bundle(self._path, **contents)
        if not promote:
            logger.info("Bundle written to %s; not promoted, so the BentoML store keeps the champion", self._path)
            return
        import bentoml

        version = contents["version"]
        metadata = {
            "mlflow_run_id": version["mlflow_run_id"] or "",
            "created_at": version["created_at"],
            "promotion_reason": version["promotion"]["reason"],
            "promotion_metric": version["promotion"]["metric"],
            "promotion_value": float(version["promotion"]["new_value"]),
        }
        with bentoml.models.create(self._bentoml_name, labels={"stage": "champion"}, metadata=metadata) as model_ref:
            shutil.copytree(self._path.resolve(), model_ref.path, dirs_exist_ok=True)  # the version the link points to
        logger.info("Champion bundle saved to the BentoML model store as %s", model_ref.tag)

    def _exists(self) -> bool:
        return (self._path / "files.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "bentoml_name": self._bentoml_name}
