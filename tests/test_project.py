"""Project-level checks: pipelines are registered and the Kedro-Viz static export builds."""

import os
import subprocess
import sys
from pathlib import Path

from kedro.framework.project import configure_project, pipelines

from tests.conftest import PROJECT_ROOT


def test_pipelines_are_discovered():
    configure_project("jewelry_pipeline")
    assert {
        "ingestion",
        "split",
        "classifier",
        "autoencoders",
        "clustering",
        "recommender",
        "package",
        "__default__",
    } <= set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    assert {"decode_images", "check_categories", "split_manifest"} <= default_nodes


def test_kedro_viz_build_exports_the_static_view(kedro_project):
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    main_json = kedro_project / "build" / "api" / "main"
    assert main_json.is_file()
    assert "decode_images" in main_json.read_text()


def test_kedro_reads_every_nodes_type_hints_without_a_warning(caplog):
    """Kedro reads every node's hints when a run starts; a hint it cannot resolve (a partial, a
    name imported only for type checkers) was a warning per node and run: 128 in one run."""
    import logging
    import typing

    from kedro.validation import TypeExtractor

    configure_project("jewelry_pipeline")
    every = {name: pipelines[name] for name in pipelines}
    for node in every["__default__"].nodes:
        typing.get_type_hints(node.func)  # raises on a hint that does not resolve
    with caplog.at_level(logging.WARNING, logger="kedro.validation"):
        TypeExtractor(every).extract_types_from_pipelines()
    assert not [r for r in caplog.records if "type hints" in r.getMessage()], caplog.text


def test_the_tools_that_start_before_the_package_turn_the_same_telemetry_off():
    """The package's QUIET_ENV is the list; the Makefile, the Bento and CI repeat its telemetry
    switches (their tools start before the package is imported) and may not drift from it."""
    import re

    import yaml

    from jewelry_pipeline import QUIET_ENV
    from tests.conftest import PROJECT_ROOT

    telemetry = {k: v for k, v in QUIET_ENV.items() if "TRACK" in k or "TELEMETRY" in k}
    assert len(telemetry) == 4
    makefile = dict(
        re.findall(r"^export (\w+) := (\S+)$", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    )
    bento = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
    bento_envs = {env["name"]: str(env["value"]) for env in bento["envs"]}
    ci = dict(re.findall(r"(\w+)=(\S+)", (PROJECT_ROOT / ".ci" / "run").read_text()))
    for where, settings in (
        ("Makefile", makefile),
        ("bentofile.yaml", bento_envs),
        (".ci/run", ci),
    ):
        assert {k: settings.get(k) for k in telemetry} == telemetry, where


def test_an_in_process_mlflow_run_keeps_its_artifacts_under_the_tests_tmp_path(tmp_path):
    import mlflow

    checkout_runs = PROJECT_ROOT / "mlruns"
    before = sorted(checkout_runs.rglob("*"))
    # Explicit ids: the test holds whichever experiment MLflow has active.
    default = Path(mlflow.get_experiment("0").artifact_location.removeprefix("file://"))
    with mlflow.start_run(experiment_id=mlflow.create_experiment("artifacts")) as run:
        mlflow.log_text("a note", "note.txt")
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "note.txt").read_text() == "a note"
    assert default.is_relative_to(tmp_path) and artifacts.is_relative_to(tmp_path), artifacts
    assert sorted(checkout_runs.rglob("*")) == before


def test_an_experiment_a_test_sets_is_not_left_to_the_next_one(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import _isolated_tracking  # noqa\n")
    (tmp_path / "test_pair.py").write_text(
        "import os, mlflow\n"
        "def test_a_sets_one():\n"
        "    mlflow.set_experiment('left-behind')\n"
        "    assert os.environ['MLFLOW_EXPERIMENT_ID']\n"
        "def test_b_finds_none():\n"
        "    assert mlflow.tracking.fluent._active_experiment_id is None\n"
        "    assert 'MLFLOW_EXPERIMENT_ID' not in os.environ\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
        + ["-p", "no:xdist", "test_pair.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-2000:]
