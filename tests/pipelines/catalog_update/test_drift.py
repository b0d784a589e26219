"""The catalog update's drift check on photos of the built-in generator: new photos drawn as the
training photos were raise no warning; the same photos under a blue colour cast (another studio's
light) raise one, in the log and in the report's figures."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from jewelry_pipeline.core.bundle import read_bundle
from jewelry_pipeline.core.drift import reference_sample
from jewelry_pipeline.core.folders import list_image_folder
from jewelry_pipeline.core.query import QueryEncoder
from jewelry_pipeline.pipelines.catalog_update.nodes import check_drift, decode_new_photos
from jewelry_pipeline.synth.generator import generate_dataset
from tests.serving.conftest import CLASSES, make_bundle

INGESTION = {"min_images_per_category": 1, "workers": 2, "near_duplicate_max_hamming": -1}
UPDATE = {"batch_size": 64, "drift": {"seed": 0}}  # the default thresholds


def _generated(folder: Path, seed: int, per_category: int) -> Path:
    """Generator photos of the bundle's categories only."""
    generate_dataset(folder, per_category=per_category, seed=seed, size=64, workers=2)
    for other in folder.iterdir():
        if other.is_dir() and other.name not in CLASSES:
            for photo in other.iterdir():
                photo.unlink()
            other.rmdir()
    return folder


def _blue_cast(source: Path, folder: Path) -> Path:
    """The same photos under a blue cast: red halved, green at three quarters."""
    for photo in sorted(source.glob("*/*")):
        target = folder / photo.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        cast = cv2.imread(str(photo)).astype(np.float32) * np.array([1.0, 0.75, 0.5], np.float32)
        cv2.imwrite(str(target), cast.astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A bundle whose drift reference is generator photos (seed 1) seen by its classifier, and new
    generator photos (seed 2) as they come and under a blue cast."""
    root = tmp_path_factory.mktemp("drift")
    bundle = read_bundle(make_bundle(root / "bundle", source="classifier"))
    training = list_image_folder(_generated(root / "training", seed=1, per_category=80))
    store, manifest, _ = decode_new_photos(training, bundle, INGESTION)
    embeddings, probabilities, _ = QueryEncoder.of_bundle(bundle).classifier_outputs(
        store, manifest["store_index"].to_numpy()
    )
    bundle.drift_reference = reference_sample(
        manifest["category"].to_numpy(),
        probabilities,
        embeddings,
        bundle.class_names,
        size=1000,
        seed=0,
    )
    new = _generated(root / "new", seed=2, per_category=40)
    return bundle, new, _blue_cast(new, root / "blue")


def _check(bundle, folder: Path):
    store, manifest, _ = decode_new_photos(list_image_folder(folder), bundle, INGESTION)
    return check_drift(store, manifest, bundle, UPDATE)


def test_photos_drawn_as_the_training_photos_raise_no_warning(setting, caplog):
    bundle, new, _ = setting
    with caplog.at_level(logging.INFO):
        html, figures = _check(bundle, new)
    assert figures["new_photos"] == 120 and figures["reference_photos"] == 240
    assert figures["warnings"] == [], figures
    assert "DRIFT" not in caplog.text and "look like the training photos" in caplog.text
    assert "<html" in html.lower()


def test_photos_under_a_colour_cast_raise_the_drift_warning(setting, caplog):
    bundle, _, blue = setting
    with caplog.at_level(logging.INFO):
        _, figures = _check(bundle, blue)
    assert figures["embeddings"]["roc_auc"] > 0.65, figures
    assert any("embeddings are told apart" in line for line in figures["warnings"])
    drift_lines = [r for r in caplog.records if "DRIFT" in r.getMessage()]
    assert drift_lines and all(r.levelno == logging.WARNING for r in drift_lines)


def test_a_bundle_without_a_reference_says_so(setting, caplog, tmp_path):
    bundle, new, _ = setting
    old = read_bundle(make_bundle(tmp_path / "old", source="classifier"))
    old.drift_reference = None
    store, manifest, _ = decode_new_photos(list_image_folder(new), old, INGESTION)
    with caplog.at_level(logging.WARNING):
        html, figures = check_drift(store, manifest, old, UPDATE)
    assert "retrain" in figures["skipped"] and "no drift reference" in caplog.text
    assert "No drift report" in html
