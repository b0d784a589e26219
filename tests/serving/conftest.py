"""Serving fixtures: a tiny real bundle (untrained small CNN, exact index) and a live
`bentoml serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.core.answers import AnswerPolicy
from jewelry_pipeline.core.bundle import BundleContents, write_bundle
from jewelry_pipeline.core.drift import reference_sample
from jewelry_pipeline.core.familiarity import FamiliarityReference
from jewelry_pipeline.core.images import Preprocessing
from jewelry_pipeline.core.models.classifier import build_classifier, features_model
from jewelry_pipeline.core.query import IndexSpec, combined_vectors, descriptor_vectors
from jewelry_pipeline.core.search import EmbeddingIndex
from jewelry_pipeline.core.thumbnails import Thumbnails
from jewelry_testing.servers import (
    BENTOML_SERVICE,
    Server,
    clean_env,
    start_bentoml,
    wait_until_every_worker_is_ready,
)
from tests.conftest import FOREGROUND, PROJECT_ROOT, image_bytes, random_photo

CLASSES = ["bracelet", "necklace", "ring"]
IMAGE_SIZE = 32
PER_CLASS = 10
COMBINED_WEIGHT = 0.5
PRETRAINED = {"backbone": "efficientnet_lite0", "input_size": 32}  # the packaged ImageNet weights
DESCRIPTOR_LAYOUT = (-1, 2)  # the classifier's last block, on a 2 x 2 grid
FAMILIARITY_NEIGHBOURS = 3
MAX_REQUEST_BYTES = 3_000_000  # the live server's request-body cap
PREPROCESSING = {
    "image_size": IMAGE_SIZE,
    "pad_value": 255,
    "max_bytes": 2_000_000,
    "max_pixels": 4_000_000,
    "min_side": 16,
    "foreground": FOREGROUND,
}


def catalog_photos(seed: int = 0) -> np.ndarray:
    """The photos (already at model size) of the items of `make_bundle(..., seed=seed)`."""
    count = PER_CLASS * len(CLASSES)
    return np.stack([random_photo(seed * 1000 + i, (IMAGE_SIZE, IMAGE_SIZE)) for i in range(count)])


def _encoders_and_latents(
    photos: np.ndarray, categories: np.ndarray, autoencoder_input: str
) -> tuple[dict, np.ndarray]:
    """Untrained per-category encoders (standardised on their category) and every item's latent."""
    from jewelry_pipeline.core.images import autoencoder_inputs
    from jewelry_pipeline.core.models.autoencoder import build_autoencoder, standardised_encoder

    maps = autoencoder_inputs(
        photos,
        np.arange(len(photos)),
        autoencoder_input,
        Preprocessing.from_config(PREPROCESSING).foreground,
    )
    encoders, latents = {}, np.zeros((len(photos), 6), np.float32)
    for name in CLASSES:
        rows = categories == name
        _, encoder, _ = build_autoencoder(IMAGE_SIZE, (4, 8), 6, channels=maps.shape[-1])
        encoders[name] = standardised_encoder(encoder, encoder.predict(maps[rows], verbose=0))
        latents[rows] = encoders[name].predict(maps[rows], verbose=0)
    return encoders, latents


def make_bundle(
    destination: Path,
    run_id: str = "run-a",
    seed: int = 0,
    source: str = "classifier",
    autoencoder_input: str = "foreground",
    answers: AnswerPolicy = AnswerPolicy(),
    substyles: dict | None = None,
    ensemble: bool = False,
) -> Path:
    """Write a small but complete serving bundle with real (untrained) Keras models, indexing
    `source` vectors; a `backbone` bundle has a pretrained classifier and the frozen backbone, and
    an `ensemble` one the ensemble of a pretrained classifier and the CNN."""
    import keras

    from jewelry_pipeline.core.models.backbone import (
        BackboneSettings,
        frozen_backbone,
        load_backbone,
    )
    from jewelry_pipeline.core.models.classifier import ensemble_classifier
    from jewelry_pipeline.core.models.pretrained import build_pretrained_classifier

    keras.utils.set_random_seed(seed)
    n = PER_CLASS * len(CLASSES)
    photos = catalog_photos(seed)
    backbone = None
    if source == "backbone":
        settings = BackboneSettings.from_config(PRETRAINED)
        classifier = build_pretrained_classifier(
            load_backbone(settings), IMAGE_SIZE, len(CLASSES), 16, 0.0
        )
        backbone = frozen_backbone(PRETRAINED, IMAGE_SIZE)
    else:
        classifier = build_classifier(IMAGE_SIZE, len(CLASSES), filters=(8, 16), embedding_dim=16)
    if ensemble:
        pretrained = build_pretrained_classifier(
            load_backbone(BackboneSettings.from_config(PRETRAINED)),
            IMAGE_SIZE,
            len(CLASSES),
            16,
            0.0,
        )
        classifier = ensemble_classifier(pretrained, classifier)
    embeddings, probabilities, pooled, features = features_model(
        classifier, DESCRIPTOR_LAYOUT, pooled=True
    ).predict(photos.astype(np.float32), verbose=0)
    item_ids = np.array([f"item{i:03d}" for i in range(n)])
    categories = np.repeat(CLASSES, PER_CLASS)
    encoders, latents = (
        _encoders_and_latents(photos, categories, autoencoder_input)
        if source in ("autoencoder", "combined")
        else ({}, None)
    )
    sources = {
        "item_id": item_ids,
        "classifier": embeddings,
        "autoencoder": latents,
        "descriptor": descriptor_vectors(pooled),
        "descriptor_layout": np.array(DESCRIPTOR_LAYOUT),
    }
    if latents is not None:
        sources["combined"] = combined_vectors(embeddings, latents, COMBINED_WEIGHT)
    if backbone is not None:
        sources["backbone"] = backbone.predict(photos.astype(np.float32), verbose=0)
    # The index is made here the way the pipelines make catalog vectors, not by the service's query
    # code, so the engine tests compare two independent computations.
    spec = IndexSpec(
        source,
        descriptor_layout=DESCRIPTOR_LAYOUT if source == "descriptor" else None,
        combined_autoencoder_weight=COMBINED_WEIGHT if source == "combined" else None,
    )
    index = {**EmbeddingIndex(item_ids, sources[source]).to_arrays(), **spec.to_arrays()}
    catalog = pd.DataFrame(
        {
            "item_id": item_ids,
            "path": [f"{c}/{i}.jpg" for c, i in zip(categories, item_ids)],
            "category": categories,
            "cluster": np.arange(n) % 2,
            "thumbnail_row": np.arange(n),
        }
    )
    return write_bundle(
        destination,
        BundleContents(
            classifier=classifier,
            encoders=encoders,
            index=index,
            catalog=catalog,
            thumbnails=Thumbnails.from_images(photos, 2 * IMAGE_SIZE),
            class_names=CLASSES,
            preprocessing=Preprocessing.from_config(
                {**PREPROCESSING, "autoencoder_input": autoencoder_input}
            ),
            answers=answers,
            drift_reference=reference_sample(
                categories, probabilities, embeddings, CLASSES, 1000, seed
            ),
            backbone=backbone,
            substyles=substyles,
            familiarity=FamiliarityReference.sample(
                features, categories, 1000, FAMILIARITY_NEIGHBOURS, seed
            ).to_arrays(),
            version={
                "mlflow_run_id": run_id,
                "created_at": "2026-11-22T00:00:00+00:00",
                "promotion": {"reason": "test", "metric": "test_accuracy", "new_value": 1.0},
            },
        ),
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """One tiny bundle shared by the engine tests (read-only)."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="session")
def tiny_autoencoder_bundle(tmp_path_factory) -> Path:
    """A tiny bundle whose index holds per-category autoencoder latents (read-only)."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle", source="autoencoder")


@pytest.fixture(scope="session")
def tiny_descriptor_bundle(tmp_path_factory) -> Path:
    """A tiny bundle whose index holds the classifier's mid-level descriptors (read-only)."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle", source="descriptor")


@pytest.fixture(scope="session")
def tiny_photo_autoencoder_bundle(tmp_path_factory) -> Path:
    """A tiny bundle whose autoencoders read the plain photo, not its foreground map (read-only)."""
    return make_bundle(
        tmp_path_factory.mktemp("bundle") / "bundle",
        source="autoencoder",
        autoencoder_input="photo",
    )


@pytest.fixture(scope="session")
def tiny_backbone_bundle(tmp_path_factory) -> Path:
    """A tiny bundle with a pretrained classifier whose index holds frozen backbone features (the
    bundle carries the frozen backbone; read-only)."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle", source="backbone")


@pytest.fixture(scope="session")
def tiny_ensemble_bundle(tmp_path_factory) -> Path:
    """A tiny bundle whose classifier is the ensemble of a pretrained classifier and the CNN, its
    index holding descriptor vectors (read-only)."""
    return make_bundle(
        tmp_path_factory.mktemp("bundle") / "bundle", source="descriptor", ensemble=True
    )


@pytest.fixture(scope="session")
def tiny_combined_bundle(tmp_path_factory) -> Path:
    """A tiny bundle whose index holds combined vectors: classifier embedding beside weighted latent
    (read-only)."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle", source="combined")


def edit_recorder(tmp_path: Path):
    """An `EditRecorder` into an MLflow store under `tmp_path`, its experiment made there first (a
    server given its URI records edits there, never in the checkout's mlruns/)."""
    from mlflow import MlflowClient

    from jewelry_pipeline.serving.edit_record import EditRecorder

    recorder = EditRecorder(f"sqlite:///{tmp_path / 'mlflow.db'}", "jewelry-pipeline")
    MlflowClient(recorder.tracking_uri).create_experiment(
        recorder.experiment, (tmp_path / "artifacts").as_uri()
    )
    return recorder


@dataclass
class LiveServer(Server):
    """A `bentoml serve` process on 127.0.0.1 and what its readiness probe said while it started."""

    readiness: list[int] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    bentoml_home: Path | None = None

    def client(self, **kwargs) -> httpx.Client:
        """An HTTP client bound to this server."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


SLOW_LOADING_SERVICE = "tests.serving.slow_loading_service:JewelryService"


def start_server(tmp_path: Path, env: dict[str, str], service: str = BENTOML_SERVICE) -> LiveServer:
    """Start `service` from the BentoML store, recording each /readyz answer until it is ready,
    then wait for every worker (a connection may land on one still loading)."""
    readiness: list[int] = []
    server = start_bentoml(None, tmp_path / "serve.log", env, readiness, service)
    wait_until_every_worker_is_ready(server)
    return LiveServer(server.process, server.url, server.log, readiness)


def package_twice(workdir: str) -> dict[str, str]:
    """Two package runs into the BentoML store: the first promoted, the second not; their run
    ids. Their artifacts go under `workdir` (MLflow's default is the working folder's mlruns/)."""
    import mlflow

    from jewelry_pipeline.datasets.serving import ServingBundleDataset

    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("package", (Path(workdir) / "artifacts").as_uri())
    )
    runs = {}
    for seed, (decision, promote) in enumerate((("promoted", True), ("kept", False))):
        staged = make_bundle(Path(workdir) / f"staged-{decision}", seed=seed)
        with mlflow.start_run() as run:
            ServingBundleDataset(str(Path(workdir) / "bundle"))._save(_contents_of(staged, promote))
        runs[decision] = run.info.run_id
    return runs


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The service started from the BentoML store after two package runs: one promoted, one not.

    The runs happen in a child process with their own BENTOML_HOME and MLflow database, since
    BentoML fixes its store location once per process. `server.runs` holds their run ids.
    """
    tmp_path = tmp_path_factory.mktemp("live")
    env = {
        **clean_env(),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    script = (
        "import json, sys; from tests.serving.conftest import package_twice; "
        "print(json.dumps(package_twice(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    server = start_server(
        tmp_path,
        {
            "BENTOML_HOME": env["BENTOML_HOME"],
            "JEWELRY_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        },
        SLOW_LOADING_SERVICE,  # readiness is seen at 503 before 200
    )
    server.runs = runs
    server.bentoml_home = tmp_path / "bentoml"
    yield server
    server.stop()


def _contents_of(bundle: Path, promote: bool) -> BundleContents:
    """What the package pipeline hands ServingBundleDataset, rebuilt from a written bundle."""
    from jewelry_pipeline.core.bundle import read_bundle

    loaded = read_bundle(bundle)
    return BundleContents(
        classifier=loaded.classifier,
        encoders=loaded.encoders,
        index=loaded.index,
        catalog=loaded.catalog,
        thumbnails=loaded.thumbnails,
        class_names=loaded.class_names,
        preprocessing=loaded.preprocessing,
        answers=loaded.answers,
        version={
            **loaded.version,
            "promotion": {**loaded.version["promotion"], "promote": promote},
        },
    )


def jpeg(seed: int = 1, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small valid JPEG."""
    return image_bytes(random_photo(seed, size), "JPEG", quality=90)
