"""End to end: the README's default path on a user's own folder, twice, through the registry to the
web page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from bentoml._internal.models import ModelStore
from mlflow.tracking import MlflowClient

from jewelry_pipeline.core.bundle import bundle_digest, read_bundle
from jewelry_pipeline.core.models.files import load_keras_safe
from jewelry_pipeline.synth import generate_dataset
from tests.conftest import REGISTRY, tiny_run_params

# enough for the small dataset below to be learned well above chance (the test checks it against a
# run that cannot learn)
GOOD_EPOCHS = 12


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """The built-in dataset at 40 photos per category and 48 px: small, yet learnable in a dozen
    epochs."""
    out = tmp_path_factory.mktemp("small") / "jewelry"
    generate_dataset(out, per_category=40, seed=7, size=48, workers=1)
    return out


OTHER_CATEGORIES = {
    "bracelet": "bangles",
    "earring": "studs",
    "necklace": "chains",
    "ring": "bands",
}


def _other_categories_folder(tiny_dataset, destination):
    """The tiny dataset under other category names (a user's own folder), with its sub-style
    labels."""
    import shutil

    for old, new in OTHER_CATEGORIES.items():
        shutil.copytree(tiny_dataset / old, destination / new)
    labels = pd.read_csv(tiny_dataset / "substyles.csv")
    labels["path"] = [OTHER_CATEGORIES[p.split("/")[0]] + p[p.index("/") :] for p in labels["path"]]
    labels["category"] = labels["category"].map(OTHER_CATEGORIES)
    labels.to_csv(destination / "substyles.csv", index=False)
    return destination


def _kedro_run(
    project: Path, photos: Path, epochs: int, learning_rate: float | None = None
) -> subprocess.CompletedProcess:
    """`kedro run` with default pipelines on `photos`, shrunk only in size and epochs."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--params",
            tiny_run_params(photos, epochs, learning_rate),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.mark.heavy
def test_default_path_end_to_end(kedro_project, small_dataset, tmp_path, browser):
    """Two default `kedro run`s on a user's folder (other category names, no conf edit), the second
    made worse on purpose; the registry keeps the first as champion; `bentoml serve` from the
    BentoML model store serves the champion's bundle with the configured index source, over HTTP and
    on the web page in Chromium.

    Broken on purpose once each: with `decide_promotion` promoting unconditionally it failed on the
    second run's `promotion.decision` ('promoted'); serving the project's bundle folder (the second
    run's) instead of the store's champion failed it on the served run (then named by its
    `mlflow_run_id`, now by the bundle digest).
    """
    photos = _other_categories_folder(small_dataset, tmp_path / "my photos")
    result = _kedro_run(kedro_project, photos, epochs=GOOD_EPOCHS)
    assert f"Epoch 1/{GOOD_EPOCHS}" in result.stdout + result.stderr  # Keras progress per epoch

    client = MlflowClient(tracking_uri=f"sqlite:///{kedro_project}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("jewelry-pipeline")
    # The MLflow UI opens it on its training runs, not on the GenAI overview.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["classifier.training.epochs"] == str(GOOD_EPOCHS)
    assert run.data.params["preprocessing.image_size"] == "32"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert len(client.get_metric_history(run.info.run_id, name)) >= 1, name
    for name in (
        "test_accuracy",
        "test_macro_f1",
        "baseline_test_accuracy",
        "baseline_pca_logistic_test_accuracy",
        "baseline_pixel_logistic_test_accuracy",
    ):
        assert 0 <= run.data.metrics[name] <= 1
    assert run.data.metrics["baseline_test_accuracy"] == max(
        run.data.metrics["baseline_pca_logistic_test_accuracy"],
        run.data.metrics["baseline_pixel_logistic_test_accuracy"],
        run.data.metrics["baseline_frozen_logistic_test_accuracy"],
    )
    assert run.info.run_name == "all pipelines on my photos"
    identity = json.loads((kedro_project / "data/03_primary/ingestion.json").read_text())
    (photos_input,) = run.inputs.dataset_inputs
    assert (
        photos_input.dataset.name == "photos:my photos"
        and photos_input.dataset.digest == identity["manifest_sha256"][:16]
    )
    assert json.loads(photos_input.dataset.source)["uri"].endswith("my photos")
    input_tags = {tag.key: tag.value for tag in photos_input.tags}
    assert input_tags["photos"] == str(identity["photos"]) and input_tags["photos.bangles"] == str(
        identity["per_category"]["bangles"]
    )
    assert run.data.params["categories.used"] == "bands,bangles,chains,studs"
    for category in OTHER_CATEGORIES.values():
        assert len(client.get_metric_history(run.info.run_id, f"autoencoder.{category}.loss")) == 1
        assert run.data.metrics[f"autoencoder.{category}.reconstruction_beats_mean"] in (0.0, 1.0)
        for method in ("kmeans_pixels", "pca_kmeans", "ae_kmeans"):
            for metric in ("silhouette", "silhouette_common", "ari", "nmi", "k"):
                assert f"clustering.{category}.{method}.{metric}" in run.data.metrics
    for source in ("pixels", "pca", "autoencoder", "classifier", "combined"):
        for level in ("category", "substyle"):
            assert 0 <= run.data.metrics[f"retrieval.{source}.precision_at_10.{level}"] <= 1
            assert 0 <= run.data.metrics[f"retrieval.{source}.map_at_10.{level}"] <= 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "confusion_matrix.png",
        "learning_curves.png",
        "learning_rate.png",
        "misclassified.png",
        "confusion_matrix.csv",
    } <= artifacts
    assert {"autoencoder_input.json", "served_source.json"} <= artifacts
    choice = json.loads((kedro_project / "data/05_model_input/autoencoder_input.json").read_text())
    served = json.loads((kedro_project / "data/07_model_output/served_source.json").read_text())
    assert choice["input"] in ("photo", "foreground") and set(choice["probe_val_accuracy"]) == {
        "photo",
        "foreground",
    }
    assert (
        run.data.metrics["autoencoder_input.foreground_probe_val_accuracy"]
        == choice["probe_val_accuracy"]["foreground"]
    )
    assert served["source"] == {"foreground": "combined", "photo": "descriptor"}[choice["input"]]

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project}/mlruns/mlflow.db")
    logged = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    by_name = {m.name: m for m in logged}
    assert {"classifier", "encoder_bands", "autoencoder_bands"} <= set(by_name)
    info = mlflow.models.get_model_info(by_name["classifier"].model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None

    champion = client.get_model_version_by_alias(REGISTRY["classifier"], REGISTRY["alias"])
    assert champion.run_id == run.info.run_id
    assert (
        int(
            client.get_model_version_by_alias(
                REGISTRY["encoder_prefix"] + "bands", REGISTRY["alias"]
            ).version
        )
        == 1
    )
    assert run.data.tags["promotion.decision"] == "promoted"
    assert "promotion.json" in artifacts

    bundle = read_bundle(kedro_project / "data/07_model_output/bundle")
    assert (
        bundle.class_names == ["bands", "bangles", "chains", "studs"]
        and sorted(bundle.encoders) == bundle.class_names
    )
    assert (
        bundle.config["preprocessing"]["autoencoder_input"] == choice["input"]
        and str(bundle.index["source"]) == served["source"]
    )
    assert bundle.config["version"]["mlflow_run_id"] == run.info.run_id
    assert len(bundle.catalog) == len(bundle.thumbnails) == len(bundle.index["item_ids"])
    first = bundle.catalog.iloc[0]
    original = cv2.imread(str(tmp_path / "my photos" / first["path"]))
    thumbnail = cv2.imdecode(
        np.frombuffer(bundle.thumbnails.jpeg(int(first["thumbnail_row"])), np.uint8), 1
    )
    assert thumbnail.shape == original.shape  # the original photo (48 px), not the 32 px model copy
    stored = ModelStore(Path(os.environ["BENTOML_HOME"]) / "models").get(
        "jewelry-bundle:latest"
    )  # this test's store, whatever this process imported before
    assert read_bundle(stored.path).config == bundle.config

    local = load_keras_safe(kedro_project / "data/06_models/classifier.keras")
    store = np.load(kedro_project / "data/03_primary/image_store.npy")
    batch = store[:6].astype(np.float32)
    tracked = mlflow.keras.load_model(by_name["classifier"].model_uri)
    np.testing.assert_allclose(local(batch).numpy(), tracked(batch).numpy(), atol=1e-5)

    # The second run, worse on purpose: one epoch at a learning rate too small to learn anything.
    first_run, first_accuracy = run.info.run_id, run.data.metrics["test_accuracy"]
    _kedro_run(kedro_project, photos, epochs=1, learning_rate=1e-7)
    (second,) = [
        r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id != first_run
    ]
    assert second.data.metrics["test_accuracy"] < first_accuracy, (
        "the deliberately worse run must score lower for this test to mean anything"
    )
    assert second.data.tags["promotion.decision"] == "kept_champion"
    assert (
        client.get_model_version_by_alias(REGISTRY["classifier"], REGISTRY["alias"]).run_id
        == first_run
    )
    assert {
        v.run_id for v in client.search_model_versions(f"name = '{REGISTRY['classifier']}'")
    } == {
        first_run,
        second.info.run_id,
    }
    assert (
        read_bundle(kedro_project / "data/07_model_output/bundle").config["version"][
            "mlflow_run_id"
        ]
        == second.info.run_id
    )
    bentoml_store = ModelStore(Path(os.environ["BENTOML_HOME"]) / "models")
    (champion_bundle,) = bentoml_store.list("jewelry-bundle")  # the worse bundle never entered
    assert champion_bundle.info.metadata["mlflow_run_id"] == first_run
    champion_digest = bundle_digest(champion_bundle.path)[:16]
    second_digest = bundle_digest(kedro_project / "data/07_model_output/bundle")[:16]

    from jewelry_testing.servers import start_bentoml

    server = start_bentoml(
        None, tmp_path / "serve.log", {"BENTOML_HOME": os.environ["BENTOML_HOME"]}
    )  # the store's champion
    try:
        photo = sorted((photos / "chains").iterdir())[0]
        answer = httpx.post(
            f"{server.url}/recommend",
            files={"image": (photo.name, photo.read_bytes())},
            data={"k": "3"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["category"] in OTHER_CATEGORIES.values() and len(body["items"]) == 3
        assert {item["category"] for item in body["items"]} <= set(OTHER_CATEGORIES.values())
        assert body["model_version"]["bundle_digest"] == champion_digest != second_digest
        assert (
            body["model_version"]["index_source"] == served["source"]
        )  # what run 1 chose and recorded
        classified = httpx.post(
            f"{server.url}/classify", files={"image": (photo.name, photo.read_bytes())}, timeout=60
        )
        assert (
            classified.status_code == 200
            and classified.json()["model_version"]["bundle_digest"] == champion_digest
        )
        assert set(classified.json()["probabilities"]) == set(OTHER_CATEGORIES.values())
        _page_shows_the_champion(browser, server.url, photo, champion_digest, served["source"])
    finally:
        server.stop()


def _page_shows_the_champion(browser, url: str, photo: Path, digest: str, source: str) -> None:
    """The web page names the champion's bundle and index source, browses its catalog and answers an
    upload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#browse .card")) > 0)
    footer = browser.find_element(By.ID, "model-version").text
    assert digest in footer and f"by {source} vectors" in footer, footer
    browser.find_element(By.ID, "file").send_keys(str(photo))
    heading = wait.until(ec.visibility_of_element_located((By.ID, "predicted-category")))
    assert any(name in heading.text for name in OTHER_CATEGORIES.values())
    cards = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card") or False)
    assert len(cards) == 10
