"""Classifier nodes on tiny data: training, evaluation, baselines, descriptors and safe model
files."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.core.metrics import history_metrics
from jewelry_pipeline.core.models.classifier import (
    build_classifier,
    descriptor_model,
    embedding_model,
    features_model,
)
from jewelry_pipeline.core.models.files import load_keras_safe
from jewelry_pipeline.core.query import descriptor_vectors
from jewelry_pipeline.datasets.keras_model import KerasModelDataset
from jewelry_pipeline.pipelines.classifier.nodes import (
    _class_weights,
    baseline_classifier,
    choose_working_size,
    classifier_metrics,
    embed_catalog,
    evaluate_classifier,
    plot_confusion_matrix,
    plot_misclassified,
    train_classifier,
)

CATEGORIES = ["a", "b", "c"]
PARAMS = {
    "seed": 1,
    "architecture": {
        "filters": [8, 16],
        "convs_per_block": 1,
        "block_dropout": 0.0,
        "embedding_dim": 16,
        "dropout": 0.0,
    },
    "training": {
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 0.01,
        "early_stopping_patience": 3,
        "early_stopping_min_delta": 0.0,
        "reduce_lr_patience": 1,
        "reduce_lr_factor": 0.5,
        "min_learning_rate": 1e-5,
        "class_weight_imbalance_ratio": 1.5,
    },
    "augmentation": {"flip": True, "rotation": 0.02, "brightness": 0.1, "contrast": 0.1},
    "gallery_size": 4,
    "descriptor": {"block": -1, "grid": 2},
    "baseline": {"image_size": 8, "pca_components": 5, "max_iter": 200},
}
WORKING_SIZE = {"input_size": 24}  # the toy store's own side


def test_working_size_follows_the_photos_and_never_exceeds_the_store():
    manifest = pd.DataFrame(
        {
            "split": ["train"] * 5 + ["test"],
            "width": [28, 28, 30, 26, 28, 4000],
            "height": [28, 28, 20, 28, 28, 3000],
        }
    )
    chosen = choose_working_size(
        manifest, {"image_size": 64}, {"architecture": {"input_size": "auto"}}
    )
    assert chosen["input_size"] == 32 and "28 px" in chosen["reason"]
    large = manifest.assign(width=[800] * 6, height=[600] * 6)
    assert (
        choose_working_size(large, {"image_size": 64}, {"architecture": {"input_size": "auto"}})[
            "input_size"
        ]
        == 64
    )
    assert (
        choose_working_size(manifest, {"image_size": 64}, {"architecture": {"input_size": 48}})[
            "input_size"
        ]
        == 48
    )
    with pytest.raises(ValueError, match="input_size"):
        choose_working_size(manifest, {"image_size": 64}, {"architecture": {"input_size": 128}})


def test_a_smaller_working_size_is_inside_the_model():
    model = build_classifier(64, 3, filters=(4, 8), embedding_dim=8, working_size=32)
    assert model.input_shape == (None, 64, 64, 3)
    assert model.get_layer("working_size").output.shape[1:3] == (32, 32)
    assert model.get_layer("block1_pool").output.shape[1:3] == (8, 8)
    assert "working_size" not in [
        layer.name for layer in build_classifier(64, 3, filters=(4,), working_size=64).layers
    ]


@pytest.fixture(scope="module")
def toy_data():
    """Three easy classes (dark, mid, bright images), grayscale-like, in a uint8 store."""
    rng = np.random.default_rng(0)
    levels = {"a": 30, "b": 128, "c": 225}
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    images, rows = [], []
    for k in range(90):
        category = CATEGORIES[k % 3]
        images.append(
            np.clip(rng.normal(levels[category], 20, (24, 24, 1)), 0, 255)
            .astype(np.uint8)
            .repeat(3, axis=2)
        )
        rows.append(
            {
                "item_id": f"{k:016x}",
                "category": category,
                "store_index": k,
                "split": splits[(k // 3) % 10],
            }
        )
    manifest = pd.DataFrame(rows)
    return np.stack(images), manifest


@pytest.fixture(scope="module")
def trained(toy_data):
    images, manifest = toy_data
    return train_classifier(images, manifest, CATEGORIES, WORKING_SIZE, PARAMS)


def test_model_shapes_and_embedding():
    model = build_classifier(32, 5, filters=(4, 8), embedding_dim=12)
    assert model.output_shape == (None, 5)
    assert embedding_model(model).output_shape == (None, 12)
    batch = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype(np.float32)
    embedding, probabilities, pooled = (o.numpy() for o in features_model(model, (-1, 2))(batch))
    np.testing.assert_allclose(embedding, embedding_model(model)(batch).numpy(), atol=1e-6)
    np.testing.assert_allclose(probabilities, model(batch).numpy(), atol=1e-6)
    # The last block's 8 features (16 x 16 px after one pooling) averaged on a 2 x 2 grid: 8 * 2 * 2
    # values.
    assert pooled.shape == (6, 32) and descriptor_model(model, 1, 2).output_shape == (None, 32)
    assert descriptor_model(model, 0, 4).output_shape == (None, 4 * 4 * 4)
    assert (descriptor_vectors(pooled) >= 0).all()
    with pytest.raises(ValueError, match="no block 5"):
        descriptor_model(model, 5, 2)


def test_catalog_embedding_matches_the_served_features(trained, toy_data):
    model, _ = trained
    images, manifest = toy_data
    arrays = embed_catalog(model, images, manifest, PARAMS)
    assert list(arrays["item_id"]) == list(manifest["item_id"])
    # Block 1 of a 24 px input: 12 x 12 x 16 features, averaged on a 2 x 2 grid.
    assert (
        arrays["embeddings"].shape == (90, 16)
        and arrays["probabilities"].shape == (90, 3)
        and arrays["descriptors"].shape == (90, 64)
    )
    batch = images[manifest["store_index"].to_numpy()[:5]].astype(np.float32)
    embedding, probabilities, pooled = (o.numpy() for o in features_model(model, (-1, 2))(batch))
    np.testing.assert_allclose(arrays["descriptors"][:5], descriptor_vectors(pooled), atol=1e-5)
    np.testing.assert_allclose(arrays["probabilities"][:5], probabilities, atol=1e-5)


def test_training_history_has_every_metric_per_epoch(trained):
    _, history = trained
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(values) == len(history["loss"]) >= 1 for values in history.values())
    mlflow_format = history_metrics(history)
    assert mlflow_format["lr"][0] == {"value": history["lr"][0], "step": 0}


def test_evaluation_tables_and_plots(trained, toy_data):
    images, manifest = toy_data
    model, _ = trained
    metrics, per_class, confusion, predictions = evaluate_classifier(
        model, images, manifest, CATEGORIES
    )
    n_test = int((manifest["split"] == "test").sum())
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["test_macro_f1"] <= 1
    assert confusion.drop(columns="true").to_numpy().sum() == n_test
    assert per_class["support"].sum() == n_test and list(per_class["category"]) == CATEGORIES
    accuracy = (predictions["true"] == predictions["predicted"]).mean()
    assert metrics["test_accuracy"] == pytest.approx(accuracy)
    assert plot_confusion_matrix(confusion).axes
    assert plot_misclassified(images, predictions, PARAMS).axes


NO_FEATURES = {"item_id": np.array([], str), "features": np.zeros((0, 0), np.float32)}


def test_baseline_learns_the_easy_classes(toy_data):
    images, manifest = toy_data
    baselines = baseline_classifier(images, manifest, CATEGORIES, WORKING_SIZE, NO_FEATURES, PARAMS)
    assert baselines["baseline_test_accuracy"] > 0.9
    assert "baseline_frozen_logistic_test_accuracy" not in baselines


def test_the_frozen_feature_baseline_counts_when_it_is_the_strongest(toy_data):
    images, manifest = toy_data
    # Features that give the category away, in shuffled item order: the rows are aligned by id.
    labels = manifest["category"].map({c: i for i, c in enumerate(CATEGORIES)}).to_numpy()
    order = np.random.default_rng(3).permutation(len(manifest))
    features = np.eye(3, dtype=np.float32)[labels][order] + 0.01 * order[:, None]
    frozen = {"item_id": manifest["item_id"].to_numpy()[order], "features": features}
    noisy = manifest.assign(store_index=np.random.default_rng(4).permutation(len(manifest)))
    baselines = baseline_classifier(images, noisy, CATEGORIES, WORKING_SIZE, frozen, PARAMS)
    assert baselines["baseline_frozen_logistic_test_accuracy"] == 1.0
    assert (
        baselines["baseline_test_accuracy"]
        == 1.0
        > baselines["baseline_pixel_logistic_test_accuracy"]
    )


def test_metrics_report_merges_both():
    choice = {
        "chosen": "pretrained",
        "val_accuracy": {"cnn": 0.8, "pretrained": 0.85},
        "val_log_loss": {"cnn": 0.5, "pretrained": 0.4},
    }
    mlflow_metrics, report = classifier_metrics(
        {"test_accuracy": 0.9}, {"baseline_test_accuracy": 0.5}, choice
    )
    assert report["test_accuracy"] == 0.9 and report["baseline_test_accuracy"] == 0.5
    assert report["choice_val_accuracy_pretrained"] == 0.85 and report["pretrained_chosen"] == 1.0
    assert mlflow_metrics["baseline_test_accuracy"] == {"value": 0.5, "step": 0}
    assert report["ensemble_chosen"] == 0.0
    _, ensemble = classifier_metrics(
        {"test_accuracy": 0.9},
        {"baseline_test_accuracy": 0.5},
        {
            **choice,
            "chosen": "ensemble",
            "val_accuracy": {**choice["val_accuracy"], "ensemble": 0.9},
        },
    )
    assert ensemble["ensemble_chosen"] == 1.0 and ensemble["pretrained_chosen"] == 0.0
    assert ensemble["choice_val_accuracy_ensemble"] == 0.9


def test_class_weights_only_when_imbalanced():
    assert _class_weights(np.array([0, 1, 2] * 10), 3, 1.5) is None
    weights = _class_weights(np.array([0] * 30 + [1] * 10 + [2] * 10), 3, 1.5)
    assert weights[1] > weights[0]


def test_same_seed_same_model(toy_data, trained):
    images, manifest = toy_data
    again, _ = train_classifier(images, manifest, CATEGORIES, WORKING_SIZE, PARAMS)
    batch = images[:8].astype(np.float32)
    np.testing.assert_allclose(trained[0](batch).numpy(), again(batch).numpy(), atol=1e-5)


def test_keras_file_round_trip_is_safe_and_identical(trained, tmp_path, toy_data):
    model, _ = trained
    dataset = KerasModelDataset(str(tmp_path / "m.keras"))
    dataset.save(model)
    reloaded = dataset.load()
    batch = toy_data[0][:5].astype(np.float32)
    np.testing.assert_allclose(model(batch).numpy(), reloaded(batch).numpy(), atol=1e-6)


def test_lambda_layer_is_refused_at_load(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "evil.keras")
    with pytest.raises(ValueError, match="(?i)lambda|safe_mode"):
        load_keras_safe(tmp_path / "evil.keras")


def test_learning_rate_is_not_reduced_during_warm_up():
    from jewelry_pipeline.core.models.data import ReduceLROnPlateauAfterWarmup

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    callback = ReduceLROnPlateauAfterWarmup(
        start_from_epoch=3, monitor="val_loss", patience=0, factor=0.5, min_lr=1e-6
    )
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for epoch, val_loss in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]):  # worse every epoch
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
        rates.append(round(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)), 6))
    assert rates[:3] == [0.01, 0.01, 0.01]  # warm-up: untouched however bad
    assert rates[3] == 0.01 and rates[4] == 0.005 and rates[5] == 0.0025  # then Keras' own rule


def test_validation_loss_gains_below_min_delta_do_not_keep_training(toy_data):
    images, manifest = toy_data
    params = {**PARAMS, "training": {**PARAMS["training"], "epochs": 8}}
    params["training"].update(early_stopping_patience=2, early_stopping_min_delta=0.0)
    _, history = train_classifier(images, manifest, CATEGORIES, WORKING_SIZE, params)
    params["training"]["early_stopping_min_delta"] = 100.0  # no loss can improve this much
    _, stopped = train_classifier(images, manifest, CATEGORIES, WORKING_SIZE, params)
    assert len(history["loss"]) == 8  # the easy toy set keeps improving its loss
    assert len(stopped["loss"]) == 3  # the first epoch sets the best, two more wait, then stop
