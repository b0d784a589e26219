"""The pretrained classifier on a tiny generated set: it learns, only its top blocks move, batch
norm stays frozen, it and its ensemble with the CNN round-trip safely, and the run keeps the
candidate validation favours."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from jewelry_pipeline.core.models.backbone import BackboneSettings, load_backbone
from jewelry_pipeline.core.models.classifier import (
    build_classifier,
    ensemble_classifier,
    ensemble_members,
    features_model,
    is_pretrained,
)
from jewelry_pipeline.core.models.data import predict_batches
from jewelry_pipeline.core.models.pretrained import STAGED_BACKBONE, FineTuneSettings, fine_tune
from jewelry_pipeline.datasets.keras_model import KerasModelDataset
from jewelry_pipeline.pipelines.classifier.nodes import (
    best_candidate,
    choose_classifier,
    embed_backbone,
)

CATEGORIES = ["red", "green", "blue"]
SIDE = 32
PRETRAINED = {
    "backbone": "efficientnet_lite0",
    "input_size": 32,
    "training": {
        "warmup_epochs": 2,
        "fine_tune_epochs": 2,
        "batch_size": 16,
        "fine_tune_blocks": 2,
    },
}
CLASSIFIER = {"seed": 3, "training": {"class_weight_imbalance_ratio": 1.5}}


@pytest.fixture(scope="module")
def colour_set():
    """Discs of one hue per category on a white backdrop, at random places and sizes."""
    rng = np.random.default_rng(0)
    hues = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 40, 200)}
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    images, rows = [], []
    for k in range(60):
        category = CATEGORIES[k % 3]
        cx, cy, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(5, 9)
        image = np.full((SIDE, SIDE, 3), 255, np.uint8)
        image[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = hues[category]
        images.append(image)
        split = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
        rows.append(
            {
                "item_id": f"{k:016x}",
                "category": category,
                "store_index": k,
                "split": split[k // 6 % 10],
            }
        )
    return np.stack(images), pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fine_tuned(colour_set):
    images, manifest = colour_set
    backbone = load_backbone(BackboneSettings.from_config(PRETRAINED))
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in backbone.layers}
    split = {
        name: (
            manifest.loc[manifest["split"] == name, "store_index"].to_numpy(),
            manifest.loc[manifest["split"] == name, "category"].map(CATEGORIES.index).to_numpy(),
        )
        for name in ("train", "val")
    }
    keras.utils.set_random_seed(3)
    model, history = fine_tune(
        backbone,
        images,
        split["train"],
        split["val"],
        3,
        FineTuneSettings.from_config(PRETRAINED["training"]),
    )
    return model, history, backbone, before


def test_it_learns_and_reports_both_phases(fine_tuned, colour_set):
    model, history, _, _ = fine_tuned
    images, manifest = colour_set
    assert len(history["loss"]) == len(history["val_accuracy"]) == len(history["lr"]) == 4
    test = manifest[manifest["split"] == "test"]
    predicted = model.predict(images[test["store_index"]].astype(np.float32), verbose=0).argmax(1)
    assert (predicted == test["category"].map(CATEGORIES.index).to_numpy()).mean() >= 0.9
    assert history["lr"][:2] == pytest.approx([1e-3, 1e-3]) and history["lr"][2] == pytest.approx(
        1e-4
    )


def test_only_the_top_blocks_move_and_batch_norm_stays_frozen(fine_tuned):
    _, _, backbone, before = fine_tuned

    def moved(name):
        after = backbone.get_layer(name).get_weights()
        return any(not np.array_equal(a, b) for a, b in zip(after, before[name]))

    assert moved("block15_project_conv") and moved("head_conv") and moved("block14_expand_conv")
    assert not moved("block13_project_conv") and not moved("stem_conv")
    assert not any(moved(f"block{i}_project_bn") for i in range(16)) and not moved("head_bn")


def test_the_file_round_trips_safely_with_its_descriptor(fine_tuned, colour_set, tmp_path):
    model, _, _, _ = fine_tuned
    images, _ = colour_set
    assert is_pretrained(model) and not is_pretrained(build_classifier(SIDE, 3, filters=(4,)))
    dataset = KerasModelDataset(str(tmp_path / "classifier.keras"))
    dataset.save(model)
    loaded = dataset.load()
    batch = images[:5].astype(np.float32)
    np.testing.assert_allclose(loaded(batch).numpy(), model(batch).numpy(), atol=1e-5)
    embedding, probabilities, descriptor = features_model(loaded, (-2, 4))(batch)
    assert embedding.shape == (5, 128) and probabilities.shape == (5, 3)
    assert descriptor.shape[0] == 5 and np.isfinite(descriptor.numpy()).all()
    assert loaded.get_layer(STAGED_BACKBONE) is not None


def test_the_ensemble_averages_its_members_and_round_trips_safely(fine_tuned, colour_set, tmp_path):
    model, _, _, _ = fine_tuned
    images, _ = colour_set
    cnn = build_classifier(SIDE, 3, filters=(4,), embedding_dim=8)
    dataset = KerasModelDataset(str(tmp_path / "classifier.keras"))
    dataset.save(ensemble_classifier(model, cnn))
    loaded = dataset.load()
    pretrained_member, cnn_member = ensemble_members(loaded)
    assert ensemble_members(model) is None and is_pretrained(pretrained_member)
    batch = images[:5].astype(np.float32)
    mean = (model(batch).numpy() + cnn(batch).numpy()) / 2
    np.testing.assert_allclose(loaded(batch).numpy(), mean, atol=1e-5)
    # Probabilities are the members' mean; what retrieval reads is the pretrained member's.
    single = [o.numpy() for o in features_model(model, (-2, 4), pooled=True)(batch)]
    both = [o.numpy() for o in features_model(loaded, (-2, 4), pooled=True)(batch)]
    np.testing.assert_allclose(both[1], mean, atol=1e-5)
    for index in (0, 2, 3):  # embedding, descriptor, pooled
        np.testing.assert_allclose(both[index], single[index], atol=1e-5)
    with pytest.raises(ValueError, match="same photos"):
        ensemble_classifier(model, build_classifier(SIDE * 2, 3, filters=(4,)))
    with pytest.raises(ValueError, match="takes a 'pretrained_classifier'"):
        ensemble_classifier(cnn, model)


def test_the_best_candidate_has_the_best_accuracy_then_log_loss_and_ties_go_first():
    assert best_candidate(
        {"cnn": (0.9, 0.3), "pretrained": (0.95, 0.5), "ensemble": (0.95, 0.4)}
    ) == ("ensemble")
    assert best_candidate(
        {"cnn": (0.9, 0.3), "pretrained": (0.9, 0.3), "ensemble": (0.9, 0.3)}
    ) == ("cnn")
    assert best_candidate(
        {"cnn": (0.8, 0.3), "pretrained": (0.9, 0.1), "ensemble": (0.9, 0.2)}
    ) == ("pretrained")


def test_the_run_keeps_the_candidate_validation_favours(colour_set):
    images, manifest = colour_set
    cnn = build_classifier(SIDE, 3, filters=(4,), embedding_dim=8)  # untrained: chance level
    history = {"loss": [1.0]}
    model, kept_history, choice = choose_classifier(
        images, manifest, CATEGORIES, cnn, history, PRETRAINED, CLASSIFIER
    )
    figures = {
        name: (choice["val_accuracy"][name], choice["val_log_loss"][name])
        for name in ("cnn", "pretrained", "ensemble")
    }
    assert choice["chosen"] == best_candidate(figures) != "cnn"
    assert choice["val_accuracy"]["pretrained"] > choice["val_accuracy"]["cnn"]
    assert (ensemble_members(model) is not None) == (choice["chosen"] == "ensemble")
    assert is_pretrained(model) or choice["chosen"] == "ensemble"
    # The kept model scores on validation what the choice recorded for it.
    val = manifest["split"] == "val"
    probabilities = predict_batches(model, images, manifest.loc[val, "store_index"].to_numpy())
    labels = manifest.loc[val, "category"].map(CATEGORIES.index).to_numpy()
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert accuracy == pytest.approx(choice["val_accuracy"][choice["chosen"]], abs=1e-9)
    # The other candidates' figures are theirs too; the ensemble's comes from the mean of both.
    rows = manifest.loc[val, "store_index"].to_numpy()
    members = ensemble_members(model)
    pretrained = members[0] if members is not None else model
    cnn_probabilities = predict_batches(cnn, images, rows)
    mean = (cnn_probabilities + predict_batches(pretrained, images, rows)) / 2
    assert choice["val_log_loss"]["cnn"] == pytest.approx(
        log_loss(labels, cnn_probabilities, labels=range(3)), rel=1e-5
    )
    assert choice["val_log_loss"]["ensemble"] == pytest.approx(
        log_loss(labels, mean, labels=range(3)), rel=1e-5
    )
    lead = choice["reason"].split(" against ")[0]
    assert lead.startswith("validation accuracy") and f"{figures[choice['chosen']][0]:.4f}" in lead
    assert kept_history is not history

    off = {**PRETRAINED, "backbone": "none"}
    model, kept_history, choice = choose_classifier(
        images, manifest, CATEGORIES, cnn, history, off, CLASSIFIER
    )
    assert model is cnn and kept_history is history and choice["chosen"] == "cnn"


def test_frozen_features_follow_the_manifest_and_vanish_when_off(colour_set):
    images, manifest = colour_set
    features = embed_backbone(images, manifest, PRETRAINED)
    assert features["features"].shape == (len(manifest), 1280)
    assert list(features["item_id"]) == list(manifest["item_id"])
    assert len(embed_backbone(images, manifest, {"backbone": "none"})["features"]) == 0


def test_the_warmed_up_head_is_the_one_fine_tuning_starts_from(colour_set):
    images, manifest = colour_set
    split = {
        name: (
            manifest.loc[manifest["split"] == name, "store_index"].to_numpy(),
            manifest.loc[manifest["split"] == name, "category"].map(CATEGORIES.index).to_numpy(),
        )
        for name in ("train", "val")
    }
    # a fine-tuning that cannot move: the returned classifier is the warm-up's head on the backbone
    training = {**PRETRAINED["training"], "warmup_epochs": 4, "fine_tune_epochs": 1}
    keras.utils.set_random_seed(3)
    model, history = fine_tune(
        load_backbone(BackboneSettings.from_config(PRETRAINED)),
        images,
        split["train"],
        split["val"],
        3,
        FineTuneSettings.from_config({**training, "fine_tune_learning_rate": 1e-12}),
    )
    val_rows, val_labels = split["val"]
    accuracy = float((predict_batches(model, images, val_rows).argmax(1) == val_labels).mean())
    assert accuracy == pytest.approx(history["val_accuracy"][-1])
    assert (
        history["val_accuracy"][-1] == pytest.approx(history["val_accuracy"][3]) and accuracy > 0.8
    )
