"""Classifier nodes: train the CNN, evaluate it on the test split.
Then compare it with linear baselines, and plot."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.hints import (  # both load inside the nodes that use them
    Figure,
    KerasModel,
)
from jewelry_pipeline.core.images import Preprocessing
from jewelry_pipeline.core.lookup import aligned
from jewelry_pipeline.core.metrics import single_step

logger = logging.getLogger(__name__)


def _split(
    manifest: pd.DataFrame, categories: list[str], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Store rows and integer labels of one split."""
    rows = manifest[manifest["split"] == name]
    labels = rows["category"].map({c: i for i, c in enumerate(categories)})
    if labels.isna().any():
        unknown = sorted(set(rows.loc[labels.isna(), "category"]))
        raise ValueError(
            f"Manifest has categories {unknown} that are not in categories.json {categories}"
        )
    return rows["store_index"].to_numpy(), labels.to_numpy(dtype=np.int32)


def _class_weights(labels: np.ndarray, n_classes: int, max_ratio: float) -> dict[int, float] | None:
    """Balanced class weights when the largest class outnumbers the smallest by more than
    `max_ratio`."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    if counts.min() > 0 and counts.max() / counts.min() <= max_ratio:
        return None
    weights = len(labels) / (n_classes * np.maximum(counts, 1))
    logger.info(
        "Classes are imbalanced (%s); using class weights %s",
        counts.astype(int).tolist(),
        np.round(weights, 2).tolist(),
    )
    return {i: float(w) for i, w in enumerate(weights)}


def choose_working_size(
    manifest: pd.DataFrame, preprocessing: dict[str, Any], classifier: dict[str, Any]
) -> dict[str, Any]:
    """The side the CNN works at: with `auto`, the training photos' median longer side rounded up to
    16, from 32 to the store size.

    Small photos (say 28 px) are then not blown up to the store size, where 3x3 filters see too
    little of the item.
    """
    store_size, configured = (
        Preprocessing.from_config(preprocessing).image_size,
        classifier["architecture"].get("input_size", "auto"),
    )
    train = manifest[manifest["split"] == "train"]
    median_side = (
        float(np.median(np.maximum(train["width"], train["height"])))
        if len(train)
        else float(store_size)
    )
    if configured == "auto":
        size = int(min(store_size, max(32, 16 * np.ceil(median_side / 16))))
        reason = (
            f"the training photos' median longer side is {median_side:.0f} px; "
            f"the CNN works at {size} px (store {store_size} px)"
        )
    else:
        size = int(configured)
        if not 8 <= size <= store_size:
            raise ValueError(
                f"classifier.architecture.input_size must be 'auto' or 8..{store_size} "
                f"(preprocessing.image_size); got {configured}"
            )
        reason = f"set by classifier.architecture.input_size: {size}"
    logger.info("Classifier input size: %d px (%s)", size, reason)
    return {
        "input_size": size,
        "store_size": store_size,
        "median_photo_side": median_side,
        "configured": configured,
        "reason": reason,
    }


def _training_callbacks(training: dict[str, Any]) -> list[Any]:
    """Early stopping (best weights restored) and learning-rate reduction on the validation loss,
    both from the end of the warm-up epochs."""
    import keras

    from jewelry_pipeline.core.models.data import ReduceLROnPlateauAfterWarmup

    warmup = int(training.get("warmup_epochs", 0))
    # Neither stop nor slow down during warm-up: on small sets the validation loss first rises
    # while batch-norm statistics settle; stopping there restored the untrained first epoch, and
    # the learning rate had been halved to nothing before the model started to learn.
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(training["early_stopping_patience"]),
            min_delta=float(training["early_stopping_min_delta"]),
            restore_best_weights=True,
            start_from_epoch=warmup,
        ),
        ReduceLROnPlateauAfterWarmup(
            start_from_epoch=warmup,
            monitor="val_loss",
            factor=float(training["reduce_lr_factor"]),
            patience=int(training["reduce_lr_patience"]),
            min_lr=float(training["min_learning_rate"]),
        ),
    ]


def _compiled_cnn(
    store_side: int, n_classes: int, working_side: int, classifier: dict[str, Any]
) -> KerasModel:
    """The CNN of the parameters' architecture, compiled (Adam, sparse cross-entropy)."""
    import keras

    from jewelry_pipeline.core.models.classifier import build_classifier

    architecture = {k: v for k, v in classifier["architecture"].items() if k != "input_size"}
    model = build_classifier(store_side, n_classes, **architecture, working_size=working_side)
    model.compile(
        optimizer=keras.optimizers.Adam(float(classifier["training"]["learning_rate"])),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def train_classifier(
    images: np.ndarray,
    manifest: pd.DataFrame,
    categories: list[str],
    working_size: dict[str, Any],
    classifier: dict[str, Any],
) -> tuple[KerasModel, dict[str, list[float]]]:
    """Train the CNN with Adam, early stopping and learning-rate reduction; return it and its
    history."""
    from jewelry_pipeline.core.models.data import (
        LearningRateLog,
        TrainingSize,
        augmenter,
        batches,
        eager_when_short,
        rotator,
        seed_everything,
        unknown_length_epochs,
    )

    seed = int(classifier["seed"])
    seed_everything(seed)
    training = classifier["training"]
    train_rows, train_labels = _split(manifest, categories, "train")
    val_rows, val_labels = _split(manifest, categories, "val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(
            "The classifier needs a non-empty train and val split; check the split fractions."
        )
    side = int(working_size["input_size"])
    model = _compiled_cnn(images.shape[1], len(categories), side, classifier)
    batch_size, epochs = int(training["batch_size"]), int(training["epochs"])
    train_data = batches(
        images,
        train_rows,
        train_labels,
        batch_size,
        shuffle_seed=seed,
        augment=augmenter(classifier["augmentation"], seed),
        rotate=rotator(classifier["augmentation"], seed),
    )
    val_data = batches(images, val_rows, val_labels, batch_size)
    learning_rates = LearningRateLog()
    callbacks = [*_training_callbacks(training), learning_rates]
    logger.info(
        "Training classifier on %d images (val %d), %d classes, up to %d epochs",
        len(train_rows),
        len(val_rows),
        len(categories),
        epochs,
    )
    size = TrainingSize.of(len(train_rows), len(val_rows), batch_size, epochs, side)
    with eager_when_short(model, size), unknown_length_epochs():
        fit = model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            callbacks=callbacks,
            shuffle=False,  # the tf.data input shuffles itself, seeded
            class_weight=_class_weights(
                train_labels, len(categories), float(training["class_weight_imbalance_ratio"])
            ),
            verbose=2,
        )
    history = {
        key: [float(v) for v in fit.history[key]]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy")
    }
    history["lr"] = learning_rates.rates
    return model, history


def embed_backbone(
    images: np.ndarray, manifest: pd.DataFrame, pretrained: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Frozen pretrained features (pooled) of every catalog item; no rows when the backbone is
    off."""
    from jewelry_pipeline.core.models.backbone import BackboneSettings, frozen_backbone
    from jewelry_pipeline.core.models.data import predict_batches

    settings = BackboneSettings.from_config(pretrained)
    item_ids = manifest["item_id"].to_numpy().astype(str)
    if not settings.enabled:
        return {"item_id": item_ids[:0], "features": np.zeros((0, 0), np.float32)}
    frozen = frozen_backbone(pretrained, images.shape[1])
    features = predict_batches(frozen, images, manifest["store_index"].to_numpy())
    logger.info("Frozen %s features of %d items", settings.backbone, len(item_ids))
    return {"item_id": item_ids, "features": features.astype(np.float32)}


def _val_figures(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Validation accuracy and log loss of a classifier's probabilities."""
    from sklearn.metrics import log_loss

    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    loss = float(log_loss(labels, probabilities, labels=range(probabilities.shape[1])))
    return accuracy, loss


def best_candidate(figures: dict[str, tuple[float, float]]) -> str:
    """The candidate of highest validation accuracy, then lowest log loss; a full tie goes to the
    one listed first (the simpler)."""
    return max(figures, key=lambda name: (figures[name][0], -figures[name][1]))


def _choice_reason(figures: dict[str, tuple[float, float]], chosen: str, backbone: str) -> str:
    """Why `chosen` was kept: every candidate's validation figures, the kept one first."""
    labels = {
        "cnn": "the CNN",
        "pretrained": f"the pretrained {backbone}",
        "ensemble": "the ensemble (mean of both candidates' probabilities)",
    }
    order = [chosen] + [name for name in figures if name != chosen]
    parts = [
        f"{figures[name][0]:.4f} (log loss {figures[name][1]:.4f}) for {labels[name]}"
        for name in order
    ]
    return f"validation accuracy {parts[0]} against " + " and ".join(parts[1:])


def choose_classifier(
    images: np.ndarray,
    manifest: pd.DataFrame,
    categories: list[str],
    cnn_model: KerasModel,
    cnn_history: dict[str, list[float]],
    pretrained: dict[str, Any],
    classifier: dict[str, Any],
) -> tuple[KerasModel, dict[str, list[float]], dict[str, Any]]:
    """Train the pretrained variant and keep whichever of the CNN, it and their ensemble the
    validation split favours (accuracy, then log loss); return it, its history and the choice."""
    from jewelry_pipeline.core.models.backbone import BackboneSettings, load_backbone
    from jewelry_pipeline.core.models.classifier import ensemble_classifier
    from jewelry_pipeline.core.models.data import predict_batches, seed_everything
    from jewelry_pipeline.core.models.pretrained import FineTuneSettings, fine_tune

    settings = BackboneSettings.from_config(pretrained)
    val_rows, val_labels = _split(manifest, categories, "val")
    if not settings.enabled:
        reason = "pretrained.backbone is none: the from-scratch CNN is the only candidate"
        logger.info("Classifier: cnn (%s)", reason)
        return cnn_model, cnn_history, {"chosen": "cnn", "reason": reason}
    seed_everything(int(classifier["seed"]))
    train_rows, train_labels = _split(manifest, categories, "train")
    model, history = fine_tune(
        load_backbone(settings),
        images,
        (train_rows, train_labels),
        (val_rows, val_labels),
        len(categories),
        FineTuneSettings.from_config(pretrained.get("training", {})),
        _class_weights(
            train_labels,
            len(categories),
            float(classifier["training"]["class_weight_imbalance_ratio"]),
        ),
    )
    probabilities = {
        "cnn": predict_batches(cnn_model, images, val_rows),
        "pretrained": predict_batches(model, images, val_rows),
    }
    probabilities["ensemble"] = (probabilities["cnn"] + probabilities["pretrained"]) / 2
    figures = {name: _val_figures(p, val_labels) for name, p in probabilities.items()}
    chosen = best_candidate(figures)
    reason = _choice_reason(figures, chosen, settings.backbone)
    logger.info("Classifier: %s (%s)", chosen, reason)
    choice = {
        "chosen": chosen,
        "reason": reason,
        "backbone": settings.backbone,
        "val_accuracy": {name: accuracy for name, (accuracy, _) in figures.items()},
        "val_log_loss": {name: loss for name, (_, loss) in figures.items()},
    }
    if chosen == "cnn":
        return cnn_model, cnn_history, choice
    # The ensemble's history is its trained member's: the CNN's is logged as classifier_cnn_history.
    return (
        (ensemble_classifier(model, cnn_model) if chosen == "ensemble" else model),
        history,
        choice,
    )


def evaluate_classifier(
    model: KerasModel, images: np.ndarray, manifest: pd.DataFrame, categories: list[str]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Accuracy, macro-F1, per-class figures, confusion matrix and per-item predictions on the test
    split."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    from jewelry_pipeline.core.models.data import predict_batches

    rows, labels = _split(manifest, categories, "test")
    probabilities = predict_batches(model, images, rows)
    predicted = probabilities.argmax(axis=1)
    all_classes = list(range(len(categories)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=all_classes, zero_division=0
    )
    per_class = pd.DataFrame(
        {
            "category": categories,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    )
    matrix = confusion_matrix(labels, predicted, labels=all_classes)
    confusion = pd.DataFrame(
        matrix, index=pd.Index(categories, name="true"), columns=categories
    ).reset_index()
    test_items = manifest[manifest["split"] == "test"]
    predictions = pd.DataFrame(
        {
            "item_id": test_items["item_id"].to_numpy(),
            "store_index": rows,
            "true": [categories[i] for i in labels],
            "predicted": [categories[i] for i in predicted],
            "confidence": probabilities.max(axis=1),
        }
    )
    metrics = {
        "test_accuracy": float(accuracy_score(labels, predicted)),
        "test_macro_f1": float(
            f1_score(labels, predicted, average="macro", labels=all_classes, zero_division=0)
        ),
    }
    logger.info(
        "Classifier on %d test images: accuracy %.4f, macro-F1 %.4f",
        len(rows),
        metrics["test_accuracy"],
        metrics["test_macro_f1"],
    )
    return metrics, per_class, confusion, predictions


def baseline_classifier(
    images: np.ndarray,
    manifest: pd.DataFrame,
    categories: list[str],
    working_size: dict[str, Any],
    backbone_features: dict[str, np.ndarray],
    classifier: dict[str, Any],
) -> dict[str, float]:
    """Reference baselines on the same split; `baseline_test_accuracy` is the strongest.

    PCA on down-sized pixels then logistic regression, and logistic regression on the plain pixels
    at the side the CNN works at, both on standardised features and fit on the train split; and,
    when a pretrained backbone is on, logistic regression on its frozen features fit on train+val
    (ten lines of scikit-learn on frozen pretrained features: the baseline to beat).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from jewelry_pipeline.core.images import downsized_pixels

    config, seed = classifier["baseline"], int(classifier["seed"])
    train_rows, train_labels = _split(manifest, categories, "train")
    test_rows, test_labels = _split(manifest, categories, "test")
    size = int(config["image_size"])
    components = min(int(config["pca_components"]), len(train_rows) - 1, size * size * 3)
    candidates = {
        "pca_logistic": (
            size,
            make_pipeline(
                StandardScaler(),
                PCA(components, random_state=seed),
                LogisticRegression(max_iter=int(config["max_iter"])),
            ),
        ),
        "pixel_logistic": (
            int(working_size["input_size"]),
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=int(config["max_iter"]))),
        ),
    }
    accuracies = {}
    for name, (side, model) in candidates.items():
        model.fit(downsized_pixels(images, train_rows, side), train_labels)
        accuracies[f"baseline_{name}_test_accuracy"] = float(
            accuracy_score(test_labels, model.predict(downsized_pixels(images, test_rows, side)))
        )
    if len(backbone_features["features"]):
        features = aligned(manifest["item_id"].to_numpy(), backbone_features, "features")
        fit = manifest["split"].isin(["train", "val"]).to_numpy()
        test = (manifest["split"] == "test").to_numpy()
        labels = manifest["category"].map({c: i for i, c in enumerate(categories)}).to_numpy()
        frozen = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=int(config["max_iter"]))
        ).fit(features[fit], labels[fit])
        accuracies["baseline_frozen_logistic_test_accuracy"] = float(
            accuracy_score(labels[test], frozen.predict(features[test]))
        )
        logger.info(
            "Baseline: logistic regression on frozen pretrained features %.4f",
            accuracies["baseline_frozen_logistic_test_accuracy"],
        )
    best = max(accuracies.values())
    logger.info(
        "Baselines: PCA(%d)+logistic regression %.4f, logistic regression on %d px pixels %.4f",
        components,
        accuracies["baseline_pca_logistic_test_accuracy"],
        int(working_size["input_size"]),
        accuracies["baseline_pixel_logistic_test_accuracy"],
    )
    return {"baseline_test_accuracy": best, **accuracies}


def classifier_metrics(
    test_metrics: dict[str, float], baseline_metrics: dict[str, float], choice: dict[str, Any]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Test metrics (and the candidates' validation figures) for MLflow (single step) and the same
    figures as a plain JSON report."""
    candidates = {
        f"choice_val_{figure}_{name}": value
        for figure in ("accuracy", "log_loss")
        for name, value in choice.get(f"val_{figure}", {}).items()
    }
    merged = {
        **test_metrics,
        **baseline_metrics,
        **candidates,
        "pretrained_chosen": float(choice["chosen"] == "pretrained"),
        "ensemble_chosen": float(choice["chosen"] == "ensemble"),
    }
    return single_step(merged), merged


def plot_confusion_matrix(confusion: pd.DataFrame) -> Figure:
    """Confusion matrix figure from its table."""
    from jewelry_pipeline.core.plots import confusion_matrix_figure

    return confusion_matrix_figure(
        confusion.drop(columns="true").to_numpy(), list(confusion.columns[1:])
    )


def plot_learning_curves(history: dict[str, list[float]]) -> Figure:
    """Learning-curve figure (loss and accuracy, train vs val)."""
    from jewelry_pipeline.core.plots import learning_curves_figure

    return learning_curves_figure(history)


def plot_learning_rate(history: dict[str, list[float]]) -> Figure:
    """Learning-rate-per-epoch figure."""
    from jewelry_pipeline.core.plots import learning_rate_figure

    return learning_rate_figure(history["lr"])


def plot_misclassified(
    images: np.ndarray, predictions: pd.DataFrame, classifier: dict[str, Any]
) -> Figure:
    """Gallery of misclassified test images, most confident mistakes first."""
    from jewelry_pipeline.core.plots import gallery_figure

    wrong = predictions[predictions["true"] != predictions["predicted"]].sort_values(
        "confidence", ascending=False
    )
    wrong = wrong.head(int(classifier["gallery_size"]))
    captions = [
        f"true {t}\npred {p} ({c:.2f})"
        for t, p, c in zip(wrong["true"], wrong["predicted"], wrong["confidence"])
    ]
    return gallery_figure(
        [images[r] for r in wrong["store_index"]],
        captions,
        f"Misclassified test images ({len(wrong)} shown)",
    )


def embed_catalog(
    model: KerasModel, images: np.ndarray, manifest: pd.DataFrame, classifier: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Classifier embeddings (penultimate layer), class probabilities and mid-level descriptors of
    every catalog item."""
    from jewelry_pipeline.core.models.classifier import features_model
    from jewelry_pipeline.core.models.data import predict_batches
    from jewelry_pipeline.core.query import descriptor_vectors

    rows = manifest["store_index"].to_numpy()
    layout = (int(classifier["descriptor"]["block"]), int(classifier["descriptor"]["grid"]))
    embeddings, probabilities, pooled = predict_batches(features_model(model, layout), images, rows)
    return {
        "item_id": manifest["item_id"].to_numpy().astype(str),
        "embeddings": embeddings.astype(np.float32),
        "probabilities": probabilities.astype(np.float32),
        "descriptors": descriptor_vectors(pooled),
        "descriptor_layout": np.array(
            layout
        ),  # (block, grid): the service computes query descriptors the same way
    }
