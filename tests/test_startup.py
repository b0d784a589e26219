"""Fast start: commands that neither train nor embed never import TensorFlow, Keras or scikit-learn,
and commands that track nothing never import MLflow."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "sklearn", "mlflow")


def _imported_top_level_modules(project, *args: str) -> set[str]:
    """Run `kedro *args` with Python's import profiler on; return the top-level modules it
    imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return set(
        re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w]+)$", result.stderr, flags=re.MULTILINE)
    )


@pytest.mark.parametrize("command", ["registry list", "ingestion"])
def test_listing_and_ingestion_never_load_tensorflow(kedro_project, tiny_dataset, command):
    """Broken on purpose once: an `import keras` at the top of classifier/nodes.py makes both cases
    fail; without the stand-in for kedro-mlflow's hook module (`defer_kedro_mlflow_hook`) the
    ingestion case failed ("imported ['mlflow']")."""
    args = (
        command.split()
        if command != "ingestion"
        else ["run", "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"]
    )
    modules = _imported_top_level_modules(kedro_project, *args)
    assert "kedro" in modules  # the profiler saw the run
    assert not modules & set(HEAVY), f"`kedro {command}` imported {sorted(modules & set(HEAVY))}"


def test_an_untracked_ingestion_run_leaves_no_mlflow_run_and_the_next_run_is_tracked(
    kedro_project, tiny_dataset
):
    """mlflow.yml lists `ingestion` under `disable_tracking.pipelines`: that run opens no MLflow
    database at all; a split run afterwards is tracked as usual, through the deferred kedro-mlflow
    hook."""
    from mlflow.tracking import MlflowClient

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kedro", "run", *args],
            cwd=kedro_project,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ingested = run("--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}")
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    assert "Not tracked in MLflow: ingestion" in ingested.stdout + ingested.stderr
    assert not (kedro_project / "mlruns" / "mlflow.db").exists()
    split = run("--pipelines", "split", "--params", f"raw_dir={tiny_dataset}")
    assert split.returncode == 0, split.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{kedro_project}/mlruns/mlflow.db")
    (tracked,) = client.search_runs(
        [client.get_experiment_by_name("jewelry-pipeline").experiment_id]
    )
    assert (
        tracked.info.run_name == f"split on {tiny_dataset.name}"
        and tracked.info.status == "FINISHED"
    )
    assert tracked.data.params["split.seed"] == "42"  # kedro-mlflow's parameter logging, replayed


def test_kedro_mlflow_commands_load_when_used(kedro_project):
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "mlflow", "--help"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(command in result.stdout for command in ("init", "ui", "modelify"))
