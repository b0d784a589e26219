"""Each sub-style edit set and undo recorded as an MLflow run of the project's experiment: what (the
edit log as an artifact), when, by which token name, and the bundle versions before and after."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

MLFLOW_CONFIG = ("conf/base/mlflow.yml", "conf/local/mlflow.yml")  # local over base, as Kedro reads
EDIT_LOG_ARTIFACT = "substyle_edits.json"
RECORD_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@dataclass(frozen=True)
class EditRecorder:
    """Where edits are recorded: a tracking URI and an experiment (made with `artifact_location`
    when it does not exist yet)."""

    tracking_uri: str
    experiment: str
    artifact_location: str | None = None

    @classmethod
    def from_environment(cls, project: Path | None = None) -> EditRecorder | None:
        """`MLFLOW_TRACKING_URI`, else the project's `mlflow.yml` (in the working folder, as `make
        serve` runs); None when neither names a tracking store (edits are then kept in the bundle
        only)."""
        project = project or Path.cwd()
        try:
            config: dict[str, Any] = {}
            for name in MLFLOW_CONFIG:
                path = project / name
                if path.is_file():
                    _merge(config, yaml.safe_load(path.read_text()) or {})
            server, tracking = config.get("server") or {}, config.get("tracking") or {}
            experiment = tracking.get("experiment") or {}
            uri = os.environ.get("MLFLOW_TRACKING_URI") or server.get("mlflow_tracking_uri")
            name = experiment.get("name") or "jewelry-pipeline"
            location = (experiment.get("create_experiment_kwargs") or {}).get("artifact_location")
        except (OSError, yaml.YAMLError, AttributeError) as exc:  # a mapping that is not one
            logger.warning("Sub-style edits are kept in the bundle only: mlflow.yml: %s", exc)
            return None
        if not isinstance(uri, str) or not uri or "${" in uri:
            logger.info("Sub-style edits are kept in the bundle only: no MLflow tracking store set")
            return None
        return cls(uri, str(name), location if isinstance(location, str) else None)

    def record(
        self, entry: dict[str, Any], kind: str, before: str, after: str, models_run: str | None
    ) -> str | None:
        """One finished run for an edit set or undo (`entry`: at, by, edits); its id, or None when
        the store cannot be written (the edit stands; the bundle keeps its log either way)."""
        from mlflow import MlflowClient

        # An edit waits for its record: a tracking server that is down costs seconds, not the
        # minutes of MLflow's default retries (the service uses MLflow for nothing else).
        for variable, value in RECORD_LIMITS.items():
            os.environ.setdefault(variable, value)
        try:
            client = MlflowClient(tracking_uri=self.tracking_uri)
            found = client.get_experiment_by_name(self.experiment)
            experiment_id = (
                found.experiment_id
                if found is not None
                else client.create_experiment(self.experiment, self.artifact_location)
            )
            run = client.create_run(
                experiment_id,
                run_name=f"{kind} by {entry['by']}",
                tags={
                    "jewelry.change": kind,
                    "jewelry.by": entry["by"],
                    "jewelry.at": entry["at"],
                    "jewelry.bundle_digest": after,
                    "jewelry.previous_bundle_digest": before,
                    "jewelry.models_run_id": models_run or "",
                },
            )
            run_id = run.info.run_id
            client.log_metric(run_id, "substyle_edits", float(len(entry.get("edits", []))))
            client.log_dict(run_id, entry, EDIT_LOG_ARTIFACT)
            client.set_terminated(run_id)
        except Exception as exc:  # noqa: BLE001 - the edit is already served; say so and go on
            logger.warning(
                "Sub-style %s by %s (bundle %s) not recorded in MLflow at %s: %s: %s",
                kind,
                entry.get("by"),
                after,
                self.tracking_uri,
                type(exc).__name__,
                exc,
            )
            return None
        logger.info("Sub-style %s by %s recorded as MLflow run %s", kind, entry["by"], run_id)
        return run_id


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """`update` over `into`, nested mappings merged key by key."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
