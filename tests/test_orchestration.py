"""The pipelines in slices: no in-memory hand-off between slices in the team environment, and the
generated Airflow DAG run end to end by `airflow dags test`, logging to the team server."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from kedro.framework.project import configure_project, pipelines

from jewelry_pipeline.orchestration import environment_catalog, memory_handoffs, slices
from jewelry_pipeline.synth import generate_dataset
from tests.conftest import PROJECT_ROOT, REGISTRY, make_kedro_project, tiny_run_settings

AIRFLOW_BIN = PROJECT_ROOT / ".venv-airflow" / "bin"
CATEGORIES = ("bracelet", "earring", "necklace", "ring")


def _default_pipeline():
    configure_project("jewelry_pipeline")
    return pipelines["__default__"]


def test_the_team_environment_hands_nothing_over_in_memory():
    pipeline = _default_pipeline()
    assert memory_handoffs(pipeline, environment_catalog(PROJECT_ROOT, "team")) == {}
    in_memory = memory_handoffs(pipeline, environment_catalog(PROJECT_ROOT, "local"))
    assert in_memory["catalog_thumbnails"] == ("make_thumbnails", "assemble_bundle")
    assert {"decoded_store", "checked_categories"} <= set(in_memory)
    names = {group.name for group in slices(pipeline)}
    assert set(CATEGORIES) <= names  # one task per category: its autoencoder and clustering


def test_a_dataset_dropped_from_the_team_catalog_is_found(tmp_path):
    project = make_kedro_project(tmp_path / "project")
    catalog = project / "conf" / "team" / "catalog.yml"
    catalog.write_text(catalog.read_text().replace("catalog_thumbnails:", "unused_thumbnails:"))
    found = memory_handoffs(_default_pipeline(), environment_catalog(project, "team"))
    assert found == {"catalog_thumbnails": ("make_thumbnails", "assemble_bundle")}


@pytest.mark.slow
@pytest.mark.heavy
def test_the_airflow_dag_runs_end_to_end_into_the_team_server(tmp_path, team_server):
    """`make airflow-dag`'s DAG, run by `airflow dags test` in the Airflow virtual environment on
    a tiny dataset: every task succeeds, the outputs a plain run writes exist, and one MLflow run
    on the team server holds the metrics, the models (registered) and the bundle."""
    assert (AIRFLOW_BIN / "airflow").exists(), "Airflow's venv is missing: `make airflow-venv`"
    photos = tmp_path / "photos"
    generate_dataset(photos, per_category=12, seed=7, size=40, workers=1)
    project = make_kedro_project(tmp_path / "project")
    dags = tmp_path / "dags"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}",
        "MLFLOW_TRACKING_URI": team_server.url,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "COLUMNS": "400",
    }

    def airflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args), cwd=project, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
        return result

    airflow(
        str(AIRFLOW_BIN / "kedro"),
        "airflow",
        "create",
        "--env",
        "team",
        "--group-by",
        "namespace",
        "--jinja-file",
        str(PROJECT_ROOT / "src/jewelry_pipeline/templates/airflow_dag.j2"),
        "--target-dir",
        str(dags),
    )
    (dag_file,) = dags.glob("*.py")
    airflow(str(AIRFLOW_BIN / "airflow"), "db", "migrate")
    settings = tiny_run_settings(photos, epochs=1)
    airflow(  # fails unless every task succeeds
        str(AIRFLOW_BIN / "airflow"),
        "dags",
        "test",
        "jewelry-pipeline",
        "--conf",
        json.dumps(settings),
        timeout=1800,
    )
    for category in CATEGORIES:  # one task per category: its autoencoder and clustering
        assert f'@task(task_id="{category}")' in dag_file.read_text()
    for output in (
        "data/03_primary/manifest.csv",
        "data/06_models/classifier.keras",
        "data/08_reporting/classifier_metrics.json",
        "data/08_reporting/clustering_metrics.csv",
        "data/08_reporting/retrieval.csv",
        "data/07_model_output/bundle/files.json",
        *(f"data/06_models/autoencoders/{c}/encoder.keras" for c in CATEGORIES),
    ):
        assert (project / output).exists(), output
    assert not (project / "mlruns" / "mlflow.db").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=team_server.url, registry_uri=team_server.url)
    (shared,) = client.search_runs(
        [client.get_experiment_by_name("jewelry-pipeline").experiment_id],
        filter_string="tags.orchestrator = 'airflow'",
    )
    assert "test_accuracy" in shared.data.metrics
    assert "bundle" in {a.path for a in client.list_artifacts(shared.info.run_id)}
    registered = client.search_model_versions(f"run_id = '{shared.info.run_id}'")
    assert {v.name for v in registered} == {REGISTRY["classifier"]} | {
        f"{REGISTRY['encoder_prefix']}{c}" for c in CATEGORIES
    }
