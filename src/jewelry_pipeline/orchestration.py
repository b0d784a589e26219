"""The pipelines run in slices by an outside scheduler (the Airflow DAG of `make airflow-dag`): one
MLflow run shared by every slice, and the check that no slice hands another an in-memory dataset."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PIPELINE = "__default__"


def slices(pipeline: Any) -> list[Any]:
    """The DAG's tasks: one per category namespace (its autoencoder and clustering), one per other
    node; the grouping `kedro airflow create --group-by namespace` uses."""
    return pipeline.group_nodes_by("namespace")


def memory_handoffs(pipeline: Any, catalog: Any) -> dict[str, tuple[str, str]]:
    """Datasets one slice writes and another reads that the catalog would keep in memory, with the
    two slices (empty when the pipeline can be split across processes)."""
    from kedro.io import MemoryDataset

    producer = {}
    for group in slices(pipeline):
        for node in pipeline.only_nodes(*group.nodes).nodes:
            for output in node.outputs:
                producer[output] = group.name
    crossing = {}
    for group in slices(pipeline):
        for node in pipeline.only_nodes(*group.nodes).nodes:
            for name in node.inputs:
                source = producer.get(name)
                if source is None or source == group.name:
                    continue
                dataset = catalog.get(name)
                if dataset is None or isinstance(dataset, MemoryDataset):
                    crossing[name] = (source, group.name)
    return crossing


def environment_catalog(project_path: Path, env: str) -> Any:
    """The catalog of an environment, read without starting a session (no tracking server
    needed)."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from jewelry_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(project_path / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return DataCatalog.from_config(loader["catalog"])


def start_shared_run(project_path: Path, env: str) -> str:
    """Create the MLflow run every slice of one DAG run logs to (on the environment's tracking
    server); its id."""
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from jewelry_pipeline.hooks import connect_team_server

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        context = session.load_context()
        connect_team_server(context)
        experiment = context.config_loader["mlflow"]["tracking"]["experiment"]["name"]
    run = mlflow.MlflowClient().create_run(
        mlflow.set_experiment(experiment).experiment_id, tags={"orchestrator": "airflow"}
    )
    logger.info("MLflow run %s holds this DAG run", run.info.run_id)
    return run.info.run_id


def run_slice(
    project_path: Path,
    env: str,
    run_id: str,
    runtime_params: dict[str, Any] | None = None,
    node_names: list[str] | None = None,
    namespaces: list[str] | None = None,
) -> None:
    """Run some nodes (or namespaces) of the default pipeline inside the shared MLflow run."""
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from jewelry_pipeline.hooks import connect_team_server

    bootstrap_project(project_path)
    with KedroSession.create(
        project_path=project_path, env=env, runtime_params=runtime_params or {}
    ) as session:
        connect_team_server(session.load_context())  # the tracking URI, before the run resumes
        mlflow.start_run(run_id=run_id)  # kedro-mlflow logs into an active run and leaves it open
        status = "FAILED"
        try:
            session.run(pipeline_names=[PIPELINE], node_names=node_names, namespaces=namespaces)
            status = "FINISHED"
        finally:
            # kedro-mlflow re-enters the run per node (as a nested start of the same id): leave none
            for _ in range(100):
                if mlflow.active_run() is None:
                    break
                mlflow.end_run(status)


def main(argv: list[str] | None = None) -> None:
    """`python -m jewelry_pipeline.orchestration --env team`: fail when a dataset would cross two
    tasks in memory."""
    import argparse

    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--env", default="team")
    args = parser.parse_args(argv)
    project = Path.cwd()
    bootstrap_project(project)
    crossing = memory_handoffs(pipelines[PIPELINE], environment_catalog(project, args.env))
    if crossing:
        lines = [f"  {name}: {a} -> {b}" for name, (a, b) in sorted(crossing.items())]
        raise SystemExit(
            f"These datasets would pass between Airflow tasks in memory; declare them in "
            f"conf/{args.env}/catalog.yml:\n" + "\n".join(lines)
        )
    logging.getLogger("jewelry_pipeline.orchestration").info(  # `logger` is __main__'s under -m
        "%d tasks; every hand-off between them is persisted", len(slices(pipelines[PIPELINE]))
    )


if __name__ == "__main__":
    main()
