"""Pull the registry's champion onto this machine: download its run's serving bundle from the
MLflow tracking server, verify every checksum, and import it into the local BentoML model store."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from jewelry_pipeline.core.bundle import BUNDLE_MODEL_NAME, BundleError, verify_bundle
from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.datasets.serving import BUNDLE_ARTIFACT
from jewelry_pipeline.serving.store import store_in_bentoml

logger = logging.getLogger(__name__)


def pull_champion(classifier: str, alias: str, bentoml_name: str = BUNDLE_MODEL_NAME) -> str:
    """Import the bundle of the run behind `classifier@alias` into BentoML; return its tag."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    where = mlflow.get_tracking_uri()
    try:
        version = client.get_model_version_by_alias(classifier, alias)
    except MlflowException as exc:
        raise UserInputError(
            f"The registry at {where} has no '{alias}' version of {classifier}: "
            f"{exc.message.splitlines()[0]}. Train and promote one first (`kedro run`)."
        ) from None
    with tempfile.TemporaryDirectory(prefix="champion-") as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=BUNDLE_ARTIFACT, dst_path=folder
            )
        except (MlflowException, OSError) as exc:
            raise UserInputError(
                f"{classifier} v{version.version} ({alias}) has no serving bundle in its run "
                f"{version.run_id} at {where}: {exc}. Run `kedro run` again to log one."
            ) from None
        try:
            config = verify_bundle(local)
        except BundleError as exc:
            raise UserInputError(f"The champion's bundle failed verification: {exc}") from None
        bundle_run = config.get("version", {}).get("mlflow_run_id")
        if bundle_run != version.run_id:
            raise UserInputError(
                f"The bundle logged by run {version.run_id} says it came from run {bundle_run}; "
                "refusing it."
            )
        tag = store_in_bentoml(Path(local), config["version"], bentoml_name)
    logger.info(
        "Pulled %s v%s (%s, run %s) from %s into BentoML as %s",
        classifier,
        version.version,
        alias,
        version.run_id,
        where,
        tag,
    )
    return tag
