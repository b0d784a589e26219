"""A throw-away Kedro project with a tiny built-in dataset, and bounded `kedro run`s in it, for
the reproducibility and training-fault checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks._report import ROOT
from benchmarks.reliability.checks import Settings, wide_output_env

DATA_FOLDERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def make_project(workdir: Path, settings: Settings) -> Path:
    """A throw-away copy of the project's config with a tiny built-in dataset."""
    from jewelry_pipeline.project_config import project_globals
    from jewelry_pipeline.synth import generate_dataset

    project = workdir / "project"
    project.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    for sub in DATA_FOLDERS:
        (project / "data" / sub).mkdir(parents=True)
    (project / "mlruns").mkdir()
    (project / "src").mkdir()
    generate_dataset(
        project / project_globals(project)["raw_dir"],
        per_category=settings.per_category,
        seed=7,
        size=48,
        workers=1,
    )
    return project


def run_params(settings: Settings, **extra) -> str:
    """The `--params` of a small, quick run at `settings`, with `extra` on top."""
    values = {
        "preprocessing.image_size": settings.image_size,
        "ingestion.min_images_per_category": 5,
        "classifier.training.epochs": settings.epochs,
        "classifier.training.batch_size": 16,
        # the pretrained candidate still trains both phases, at the size and epochs of the CNN
        "pretrained.input_size": settings.image_size,
        "pretrained.training.warmup_epochs": min(settings.epochs, 5),
        "pretrained.training.fine_tune_epochs": settings.epochs,
        "pretrained.training.batch_size": 16,
        **extra,
    }
    return ",".join(f"{k}={v}" for k, v in values.items())


def kedro_run_command(pipelines: str, params: str) -> list[str]:
    """`kedro run` of `pipelines` with `params`, by this interpreter."""
    return [sys.executable, "-m", "kedro", "run", "--pipelines", pipelines, "--params", params]


def kedro_run(
    project: Path, pipelines: str, params: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`kedro run` in the project, bounded in time."""
    return subprocess.run(
        kedro_run_command(pipelines, params),
        cwd=project,
        env=wide_output_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
