"""Project hooks: check the MLflow tracking store (local database or team server), and refuse stale
data. Both happen before a run touches anything."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from kedro.framework.hooks import hook_impl

from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.lineage import check_ingested, check_split
from jewelry_pipeline.plugins import MLFLOW_CONFIG_PATTERNS

logger = logging.getLogger(__name__)
LOCK_WAIT_SECONDS = 10.0
IN_USE_MARKER = ".tracking-database-in-use"  # written next to the database once it holds runs
SERVER_WAIT_SECONDS = 20.0  # how long a run waits for the team's tracking server before it stops
SERVER_CREDENTIALS = "mlflow_tracking"  # conf/local/credentials.yml: mlflow_tracking: {uri: ...}


class TrackingStoreError(RuntimeError):
    """The MLflow tracking database cannot be used safely for this run."""


def sqlite_path(tracking_uri: str, project_path: Path) -> Path | None:
    """The database file of a `sqlite:///` tracking URI (relative to the project), else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    return path if path.is_absolute() else project_path / path


def check_tracking_database(
    database: Path, artifacts: Path, lock_wait: float = LOCK_WAIT_SECONDS
) -> None:
    """Refuse a run that would silently start a new history (database gone) or wait on a locked
    database."""
    marker = database.parent / IN_USE_MARKER
    if not database.exists():
        if marker.exists() or (artifacts.is_dir() and any(artifacts.iterdir())):
            raise TrackingStoreError(
                f"The MLflow database {database} is missing, but earlier runs were tracked there "
                f"({marker.name} or artifacts in {artifacts} remain). Restore the database from "
                f"a backup; to start a fresh history on purpose, remove {marker} and {artifacts}. "
                "Nothing was written."
            )
        return
    try:
        connection = sqlite3.connect(database, timeout=lock_wait)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise TrackingStoreError(
                f"The MLflow database {database} is locked by another process (another "
                f"`kedro run`, or a tool holding a write transaction) and stayed locked for "
                f"{lock_wait:.0f} s. Nothing was written; run again once it is free."
            ) from None
        raise TrackingStoreError(
            f"The MLflow database {database} cannot be opened: {exc}. Nothing was written."
        ) from None
    except sqlite3.DatabaseError as exc:
        raise TrackingStoreError(
            f"The MLflow database {database} is not a usable SQLite file: {exc}. "
            "Nothing was written."
        ) from None
    marker.touch()


def team_tracking_uri(environ: dict[str, str], credentials: dict) -> str:
    """The tracking server's URL: `MLFLOW_TRACKING_URI`, else `mlflow_tracking.uri` in
    conf/local/credentials.yml; only an http(s) server, so nothing lands in a local store."""
    uri = environ.get("MLFLOW_TRACKING_URI") or (credentials.get(SERVER_CREDENTIALS) or {}).get(
        "uri"
    )
    if not uri:
        raise UserInputError(
            "This environment logs to a team MLflow tracking server, but none is configured: "
            "export MLFLOW_TRACKING_URI=http://HOST:PORT (`make tracking-server` starts one on "
            f"this machine) or set {SERVER_CREDENTIALS}: {{uri: ...}} in "
            "conf/local/credentials.yml. Nothing was run."
        )
    if not str(uri).startswith(("http://", "https://")):
        raise UserInputError(
            f"The team tracking URI must be an http(s) MLflow server, not '{uri}': this "
            "environment never writes to a local store. Nothing was run."
        )
    return str(uri).rstrip("/")


def wait_for_server(uri: str, wait: float = SERVER_WAIT_SECONDS) -> None:
    """Return once the MLflow server at `uri` answers `/health`; else a UserInputError naming it."""
    from jewelry_pipeline.tracking_server import healthy

    deadline = time.monotonic() + wait
    while not healthy(uri):
        if time.monotonic() > deadline:
            raise UserInputError(
                f"The MLflow tracking server at {uri} did not answer for {wait:.0f} s. Start it "
                "(`make tracking-server`) or point MLFLOW_TRACKING_URI at a running one. "
                "Nothing was run."
            )
        time.sleep(1.0)


def ensure_experiment(uri: str, name: str) -> None:
    """Create the experiment on the server unless it exists. Two runs starting at once both find
    it missing; the one whose create loses the race (RESOURCE_ALREADY_EXISTS) goes on, instead of
    failing inside kedro-mlflow's own create."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(name) is not None:
        return
    try:
        client.create_experiment(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def connect_team_server(context) -> str | None:
    """When the environment's mlflow.yml names no tracking URI (conf/team), find the team server,
    wait for it, make sure the experiment exists and point MLflow (and kedro-mlflow) at it; its URL.
    None for an environment with its own URI."""
    loader = context.config_loader
    loader.config_patterns.setdefault("mlflow", MLFLOW_CONFIG_PATTERNS)
    mlflow_config = loader["mlflow"]
    if mlflow_config.get("server", {}).get("mlflow_tracking_uri") is not None:
        return None
    uri = team_tracking_uri(dict(os.environ), _local_credentials(context))
    wait_for_server(uri)
    ensure_experiment(uri, mlflow_config["tracking"]["experiment"]["name"])
    os.environ["MLFLOW_TRACKING_URI"] = uri  # what kedro-mlflow reads when the yml is null
    # a server gone mid-run fails the run in seconds rather than after minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    logger.info("Tracking to the MLflow server at %s", uri)
    return uri


def _local_credentials(context) -> dict:
    """conf/local/credentials.yml (git-ignored), whichever environment runs."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        str(Path(context.project_path) / "conf"), base_env="local", default_run_env="local"
    )
    try:
        return dict(loader["credentials"])
    except KeyError:
        return {}


class TrackingStoreCheck:
    """Runs before kedro-mlflow's own hook, so a bad tracking store fails the run with a plain
    message."""

    def __init__(self) -> None:
        self._database: Path | None = None
        self._server: str | None = None
        self._context = None

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self) -> None:
        """In the team environment, reach the shared server before anything runs (commands that
        only read the project, such as `kedro airflow create`, need no server)."""
        if self._context is not None and self._server is None:
            self._server = connect_team_server(self._context)

    @hook_impl(tryfirst=True)  # before kedro-mlflow's, which raises when it cannot end the run
    def on_pipeline_error(self) -> None:
        """A team server that stopped answering mid-run is named, not left to a traceback."""
        from jewelry_pipeline.tracking_server import healthy

        if self._server is not None and not healthy(self._server):
            logger.error(
                "The MLflow tracking server at %s stopped answering during the run, so the run "
                "failed. Its models were not promoted (encoder versions of a registration cut "
                "short are deleted by a later run). Restart the server and run again.",
                self._server,
            )

    @hook_impl
    def after_pipeline_run(self) -> None:
        """The database now holds a run: mark it in use, so its later disappearance is noticed."""
        if self._database is not None and self._database.exists():
            (self._database.parent / IN_USE_MARKER).touch()

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        loader = context.config_loader
        if "mlflow" not in loader.config_patterns:
            loader.config_patterns.update({"mlflow": MLFLOW_CONFIG_PATTERNS})
        server = loader["mlflow"].get("server", {})
        self._context = context
        if server.get("mlflow_tracking_uri") is None:  # the team environment: checked at run time
            return
        database = sqlite_path(
            str(server.get("mlflow_tracking_uri") or ""), Path(context.project_path)
        )
        if database is None:
            return
        self._database = database
        artifacts = database.parent / "artifacts"
        check_tracking_database(database, artifacts)
        logger.debug("MLflow database %s is usable", database)


INGESTED = ("image_store", "ingestion_manifest", "categories")


class DataLineageCheck:
    """Before a run, refuse stored inputs that come from another folder or another ingestion (see
    `lineage`).

    Only what the run reads without producing it is checked: a full `kedro run` checks nothing.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        reads = set(pipeline.inputs())
        if not reads & {*INGESTED, "model_input_manifest"}:
            return
        ingested = (
            catalog.load("ingestion_identity") if catalog.exists("ingestion_identity") else None
        )
        manifest = (
            catalog.load("ingestion_manifest") if catalog.exists("ingestion_manifest") else None
        )
        store_rows = len(catalog.load("image_store")) if catalog.exists("image_store") else None
        check_ingested(ingested, manifest, store_rows, catalog["raw_images"].path)
        if "model_input_manifest" in reads:
            split = catalog.load("split_identity") if catalog.exists("split_identity") else None
            split_manifest = (
                catalog.load("model_input_manifest")
                if catalog.exists("model_input_manifest")
                else None
            )
            check_split(split, ingested, split_manifest)
        logger.info(
            "Stored inputs belong to %s (ingestion %s)",
            ingested["raw_dir"],
            ingested["manifest_sha256"][:12],
        )


EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def mark_model_training(client, experiment_id: str) -> None:
    """Tag the experiment as model training (MLflow 3 opens an experiment of unknown kind on its
    GenAI overview), once: two runs starting at once on a team server may both try, and there the
    second insert of the tag fails; it then finds the tag set, which is all it wanted."""
    from mlflow.exceptions import MlflowException

    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND:
        return
    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except MlflowException:
        if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            raise


def _active_mlflow():
    """MLflow's active run, without importing MLflow for a run that never started one (an untracked
    run)."""
    mlflow = sys.modules.get("mlflow")
    return mlflow.active_run() if mlflow is not None else None


class RunIdentity:
    """Names each MLflow run by what ran on which folder, and logs the photos it used as an MLflow
    dataset input.

    Runs after kedro-mlflow has opened the run (`trylast`). The dataset's digest is the manifest
    digest of `ingestion.json`, so two runs that saw the same photos show the same dataset in the
    MLflow UI.
    """

    def __init__(self) -> None:
        self._logged = False

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        self._logged = False
        if _active_mlflow() is None:
            return
        import mlflow

        raw_dir = Path(catalog["raw_images"].path).expanduser().resolve()
        names = run_params.get("pipeline_names") or [
            run_params.get("pipeline_name") or "__default__"
        ]
        ran = "all pipelines" if list(names) == ["__default__"] else "+".join(names)
        mlflow.set_tag("mlflow.runName", f"{ran} on {raw_dir.name}")
        mark_model_training(mlflow.MlflowClient(), mlflow.active_run().info.experiment_id)
        mlflow.set_tag("raw_dir", str(raw_dir))
        if set(pipeline.inputs()) & {*INGESTED} and catalog.exists("ingestion_identity"):
            self._log_photos(catalog.load("ingestion_identity"), catalog.load("ingestion_manifest"))

    @hook_impl
    def after_node_run(self, node, outputs) -> None:
        if "ingestion_identity" in outputs and "ingestion_manifest" in outputs:
            self._log_photos(outputs["ingestion_identity"], outputs["ingestion_manifest"])

    def _log_photos(self, identity: dict, manifest) -> None:
        """The photos as an MLflow dataset input: name, source folder, manifest digest, counts per
        category."""
        if self._logged or _active_mlflow() is None:
            return
        import mlflow
        from mlflow.data.dataset_source_registry import get_registered_sources
        from mlflow.exceptions import MlflowException

        # An explicit source: a bare path string makes MLflow 3.17 warn that it matches its local
        # source twice.
        local = next(
            s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource"
        )
        dataset = mlflow.data.from_pandas(
            manifest[["item_id", "path", "category"]],
            source=local(identity["raw_dir"]),
            name=f"photos:{Path(identity['raw_dir']).name}",
            digest=identity["manifest_sha256"][:16],
        )
        counts = {
            f"photos.{category}": str(count) for category, count in identity["per_category"].items()
        }
        for attempt in range(3):
            try:
                mlflow.log_input(
                    dataset, context="training", tags={"photos": str(identity["photos"]), **counts}
                )
                break
            except MlflowException as exc:
                # Two runs on the same photos at once create the same dataset row on a team
                # server: one insert loses ("dataset_pk" unique violation); the retry finds it.
                if "dataset_pk" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))
        mlflow.log_param("categories.used", ",".join(identity["per_category"]))
        self._logged = True


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux `ru_maxrss`, in KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class NodeTimes:
    """Logs each node's wall time and the process's peak memory as it finishes and, at the end of a
    run, where the time went and which node raised the peak most."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.peak_rise_mb: dict[str, float] = {}
        self._peak_mb = 0.0

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._started, self.seconds, self.peak_rise_mb = {}, {}, {}
        self._peak_mb = peak_memory_mb()

    @hook_impl
    def before_node_run(self, node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        now, peak = time.perf_counter(), peak_memory_mb()
        seconds = now - self._started.pop(node.name, now)
        self.seconds[node.name] = round(seconds, 2)
        self.peak_rise_mb[node.name] = round(max(0.0, peak - self._peak_mb), 1)
        self._peak_mb = max(self._peak_mb, peak)
        if seconds >= 1.0:
            logger.info("Node %s took %.1f s; peak memory %.0f MB", node.name, seconds, peak)

    @hook_impl
    def after_pipeline_run(self) -> None:
        if not self.seconds:
            return
        slowest = sorted(self.seconds.items(), key=lambda item: -item[1])[:5]
        total = sum(self.seconds.values())
        riser = max(self.peak_rise_mb, key=lambda name: self.peak_rise_mb[name])
        logger.info(
            "Node time %.0f s; slowest: %s; peak memory %.0f MB (raised most by %s, +%.0f MB)",
            total,
            ", ".join(f"{name} {seconds:.0f} s" for name, seconds in slowest),
            self._peak_mb,
            riser,
            self.peak_rise_mb[riser],
        )
