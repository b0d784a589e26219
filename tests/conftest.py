"""Shared fixtures: tiny generated datasets and a messy photo folder, all under tmp_path."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

# Under pytest-xdist (`make test`: one worker per core) each worker, and every process it starts,
# computes on one thread: pools of one thread per core in every process oversubscribed the cores
# (found: a 2 s scikit-learn node took 23 s while two runs trained at once).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(_threads, "1")

import numpy as np  # noqa: E402 - after the thread settings, which BLAS reads as it loads
import pytest
import yaml
from PIL import Image

_TESTS_HOME = Path(
    os.environ.setdefault(
        "JEWELRY_TEST_HOME", __import__("tempfile").mkdtemp(prefix="jewelry-tests-")
    )
)
# Each pytest-xdist worker has a home (and a BentoML store) of its own; never ~/bentoml.
_SESSION_HOME = _TESTS_HOME / os.environ.get("PYTEST_XDIST_WORKER", "main")
if os.environ.get("BENTOML_HOME", str(_TESTS_HOME)).startswith(
    str(_TESTS_HOME)
):  # not the caller's
    os.environ["BENTOML_HOME"] = str(_SESSION_HOME / "bentoml")

import jewelry_pipeline  # noqa: E402, F401 - turns telemetry off, here and in every process tests start
from jewelry_pipeline.synth import generate_dataset  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The MLflow registry's model names and champion alias, as conf/base/globals.yml names them.
REGISTRY = yaml.safe_load((PROJECT_ROOT / "conf/base/globals.yml").read_text())["registry"]
# The project's own foreground settings, so tests exercise what the pipelines and the service use.
FOREGROUND = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters.yml").read_text())[
    "preprocessing"
]["foreground"]


def kill_when_it_says(script: str, marker: str = "writing") -> None:
    """Run `script` in a Python process from the project root and SIGKILL it as soon as it prints
    `marker`: a real crash at a chosen moment, not an exception the code could catch."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == marker
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()


def image_bytes(array: np.ndarray | Image.Image, fmt: str, **save_args) -> bytes:
    """Encode an array or Pillow image to bytes in the given Pillow format."""
    img = array if isinstance(array, Image.Image) else Image.fromarray(array)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def random_photo(seed: int, size: tuple[int, int] = (80, 60)) -> np.ndarray:
    """A random smooth RGB image (distinct per seed, so never a near-duplicate of another)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.BICUBIC))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """The built-in dataset at 12 images per category and 48 px."""
    out = tmp_path_factory.mktemp("tiny") / "jewelry"
    generate_dataset(out, per_category=12, seed=7, size=48, workers=1)
    return out


@pytest.fixture
def kedro_project(tmp_path, monkeypatch) -> Path:
    """A throw-away copy of the project's config and metadata, so runs write only under tmp_path."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    return make_kedro_project(tmp_path / "project")


@pytest.fixture(scope="session")
def team_server():
    """A fresh team tracking server (PostgreSQL + mlflow server, `jewelry_pipeline.tracking_server`)
    in a folder the `postgres` user can enter, on free ports; stopped and removed afterwards."""
    import tempfile

    from jewelry_pipeline import tracking_server
    from jewelry_testing.servers import free_port

    folder = Path(tempfile.mkdtemp(prefix="tracking-", dir="/tmp"))
    folder.chmod(0o755)
    state = tracking_server.start(folder / "server", free_port(), free_port())
    state.folder = folder / "server"
    yield state
    tracking_server.stop(folder / "server")
    shutil.rmtree(folder, ignore_errors=True)


def tiny_run_settings(photos: Path, epochs: int, learning_rate: float | None = None) -> dict:
    """Parameters of a default `kedro run` on `photos`, shrunk only in size and epochs."""
    settings = {
        "raw_dir": str(photos),
        "preprocessing.image_size": 32,
        "ingestion.min_images_per_category": 5,
        "classifier.training.epochs": epochs,
        "classifier.training.batch_size": 16,
        "autoencoders.training.epochs": 1,
        "pretrained.input_size": 32,
        "pretrained.training.warmup_epochs": min(epochs, 5),
        "pretrained.training.fine_tune_epochs": epochs,
        "pretrained.training.batch_size": 16,
    }
    if learning_rate is not None:
        settings["classifier.training.learning_rate"] = learning_rate
        settings["pretrained.training.warmup_learning_rate"] = learning_rate
        settings["pretrained.training.fine_tune_learning_rate"] = learning_rate
    return settings


def tiny_run_params(photos: Path, epochs: int, learning_rate: float | None = None) -> str:
    """`tiny_run_settings` as `kedro run --params`."""
    settings = tiny_run_settings(photos, epochs, learning_rate)
    return ",".join(f"{key}={value}" for key, value in settings.items())


def make_kedro_project(project: Path) -> Path:
    """The project's config and metadata copied to `project`, with empty data folders."""
    project.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    for sub in (
        "01_raw",
        "02_intermediate",
        "03_primary",
        "05_model_input",
        "06_models",
        "07_model_output",
        "08_reporting",
    ):
        (project / "data" / sub).mkdir(parents=True)
    (project / "mlruns").mkdir()
    (project / "src").mkdir()  # the package itself is imported from the installed project
    return project


SLOW_FIXTURES = {
    "kedro_project",
    "live_server",
    "project",
    "bundle",
    "browser",
}  # real `kedro run`s and live servers


def pytest_collection_modifyitems(config, items):
    """Mark every test that runs `kedro run` or a live server `slow` (`pytest -m "not slow"` is the
    quick subset), and put the ones marked `heavy` first, so that the xdist workers start on them
    and end together."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures or "tests/benchmarks/" in item.nodeid:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Every test tracks into its own SQLite file unless it sets one, with artifacts under
    `tmp_path` (never the checkout's mlruns/), and leaves no MLflow state behind."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'default-mlflow.db'}")
    # A SQLite store's default artifact root is MLflow's "./mlruns", read when the store is made.
    monkeypatch.setattr(
        tracking_utils, "DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH", str(tmp_path / "mlruns")
    )
    yield
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    # `mlflow.set_experiment` keeps the experiment in a module global and in the environment,
    # which later tests and the processes they start would inherit.
    mlflow.tracking.fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def browser():
    """A headless Chromium driven through Debian's chromedriver (never downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if shutil.which("chromedriver") is None:
        pytest.fail(
            "chromedriver is not installed: "
            "`make test` installs Debian's chromium and chromium-driver"
        )
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver")), options=options
    )  # a local driver: nothing is downloaded
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
