"""Autoencoder nodes: choose the input on the user's photos.
Then, per category, select, train, check, encode and show."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.hints import (  # both load inside the nodes that use them
    Figure,
    KerasModel,
)
from jewelry_pipeline.core.images import (
    AUTOENCODER_INPUTS,
    Preprocessing,
    autoencoder_inputs,
    downsized_pixels,
)
from jewelry_pipeline.core.metrics import single_step

if TYPE_CHECKING:  # TensorFlow loads inside the helpers that use it
    import tensorflow as tf

logger = logging.getLogger(__name__)


def check_category_pipelines(categories: list[str], built: list[str]) -> list[str]:
    """Fail clearly when the per-category pipelines (`built` from the folder or `categories` param)
    do not match the data."""
    missing, extra = sorted(set(categories) - set(built)), sorted(set(built) - set(categories))
    if missing or extra:
        raise UserInputError(
            f"The per-category pipelines were built for {sorted(built)}, but ingestion found the "
            f"categories {sorted(categories)} (missing: {missing}, not in data: {extra}). Pass the "
            "same `--params raw_dir=...` as the ingestion run (or run everything on one folder), "
            "and remove an explicit `categories` parameter that disagrees."
        )
    return sorted(categories)


def select_category(
    manifest: pd.DataFrame, category: str, checked_categories: list[str]
) -> pd.DataFrame:
    """All manifest rows of one category, in store order."""
    if category not in checked_categories:
        raise ValueError(f"Category '{category}' is not one of {checked_categories}")
    return manifest[manifest["category"] == category].reset_index(drop=True)


def _probe_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    probe: dict[str, Any],
    seed: int,
) -> float:
    """Validation accuracy of standardised PCA + logistic regression fitted on the training rows."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    components = max(1, min(int(probe["pca_components"]), int(train.sum()) - 1, features.shape[1]))
    model = make_pipeline(
        StandardScaler(),
        PCA(components, random_state=seed),
        LogisticRegression(max_iter=int(probe["max_iter"])),
    )
    model.fit(features[train], labels[train])
    return float(model.score(features[val], labels[val]))


def choose_autoencoder_input(
    images: np.ndarray,
    manifest: pd.DataFrame,
    preprocessing: dict[str, Any],
    autoencoders: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Pick what the autoencoders see, the plain photo or its foreground map, on this run's own
    photos.

    With `autoencoders.input: auto`, each candidate is scored by how well a linear probe (PCA +
    logistic regression, fitted on the train split) tells the known categories apart on the
    validation split; the foreground map is taken only when it scores higher than the photo itself.
    Category labels are all it uses: sub-style labels never enter. Returns the decision (with its
    reason) and its figures for MLflow.
    """
    configured, probe = str(autoencoders["input"]), autoencoders["input_probe"]
    if configured != "auto" and configured not in AUTOENCODER_INPUTS:
        raise ValueError(
            f"autoencoders.input must be 'auto' or one of {AUTOENCODER_INPUTS}; got '{configured}'"
        )
    split, labels = manifest["split"].to_numpy(), manifest["category"].to_numpy()
    train, val = split == "train", split == "val"
    rows, foreground, size = (
        manifest["store_index"].to_numpy(),
        Preprocessing.from_config(preprocessing).foreground,
        int(probe["image_size"]),
    )
    scores = {}
    if train.any() and val.any() and len(np.unique(labels[train])) > 1:
        for kind in AUTOENCODER_INPUTS:
            features = downsized_pixels(
                autoencoder_inputs(images, rows, kind, foreground), np.arange(len(rows)), size
            )
            scores[kind] = _probe_accuracy(
                features, labels, train, val, probe, int(autoencoders["seed"])
            )
    if configured != "auto":
        chosen, reason = configured, f"set by autoencoders.input: {configured}"
    elif not scores:
        chosen, reason = (
            "photo",
            (
                "no train/val photos of two categories to compare the inputs on; "
                "the plain photo is the default"
            ),
        )
    else:
        chosen = "foreground" if scores["foreground"] > scores["photo"] else "photo"
        reason = (
            f"a linear probe tells the categories apart at validation accuracy "
            f"{scores['photo']:.3f} on photos and {scores['foreground']:.3f} on foreground maps; "
            f"the {chosen} input keeps more of what the photos show"
        )
    logger.info("Autoencoder input: %s (%s)", chosen, reason)
    decision = {
        "input": chosen,
        "configured": configured,
        "probe_val_accuracy": scores,
        "reason": reason,
    }
    return decision, single_step(
        {f"{kind}_probe_val_accuracy": value for kind, value in scores.items()}
    )


def category_inputs(
    images: np.ndarray,
    category_manifest: pd.DataFrame,
    input_choice: dict[str, Any],
    preprocessing: dict[str, Any],
) -> np.ndarray:
    """The category's autoencoder inputs (photos or foreground inputs, as chosen), in manifest
    order."""
    rows = category_manifest["store_index"].to_numpy()
    return autoencoder_inputs(
        images, rows, input_choice["input"], Preprocessing.from_config(preprocessing).foreground
    )


def _input_batches(inputs: np.ndarray, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Input batches, reshuffled every epoch in a seeded order when `seed` is given."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(inputs)
    if seed is not None:
        dataset = dataset.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)


def _autoencoder_callbacks(training: dict[str, Any]) -> list:
    """Early stopping (best weights kept) and learning-rate reduction on the validation loss."""
    import keras

    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(training["early_stopping_patience"]),
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=float(training["reduce_lr_factor"]),
            patience=int(training["reduce_lr_patience"]),
        ),
    ]


def train_autoencoder(
    inputs: np.ndarray, category_manifest: pd.DataFrame, autoencoders: dict[str, Any]
) -> tuple[KerasModel, KerasModel, dict[str, list[float]]]:
    """Train one category's autoencoder on reconstruction plus contrastive loss (Adam, early
    stopping, LR reduction).

    Returns the autoencoder, the encoder with its codes standardised on the training rows, and the
    loss history.
    """
    import keras

    from jewelry_pipeline.core.models.autoencoder import (
        ContrastiveAutoencoder,
        build_autoencoder,
        standardised_encoder,
        view_augmenter,
    )
    from jewelry_pipeline.core.models.data import (
        TrainingSize,
        eager_when_short,
        predict_arrays,
        seed_everything,
    )

    seed = int(autoencoders["seed"])
    seed_everything(seed)
    training, contrastive = autoencoders["training"], autoencoders["contrastive"]
    split = category_manifest["split"].to_numpy()
    train_inputs, val_inputs = inputs[split == "train"], inputs[split == "val"]
    autoencoder, encoder, decoder = build_autoencoder(
        inputs.shape[1], **autoencoders["architecture"], channels=inputs.shape[-1]
    )
    trainer = ContrastiveAutoencoder(
        encoder,
        decoder,
        view_augmenter(autoencoders["views"], seed, photo=inputs.shape[-1] == 3),
        projection_dim=int(contrastive["projection_dim"]),
        temperature=float(contrastive["temperature"]),
        contrastive_weight=float(contrastive["weight"]),
    )
    trainer.compile(optimizer=keras.optimizers.Adam(float(training["learning_rate"])))
    # Every variable made before `fit`: Keras's own build skips the projection head (not on the
    # model's call path), and an optimizer that makes slots inside the first step traces that step
    # twice (about 1.5 s of each autoencoder's training on 2 cores; the weights come out the same).
    trainer.projection.build((None, int(encoder.output.shape[-1])))
    trainer.optimizer.build(trainer.trainable_variables)
    batch_size, epochs = int(training["batch_size"]), int(training["epochs"])
    category = category_manifest["category"].iloc[0] if len(category_manifest) else "?"
    logger.info(
        "Training the '%s' autoencoder on %d inputs of %s (val %d)",
        category,
        len(train_inputs),
        "x".join(map(str, inputs.shape[1:])),
        len(val_inputs),
    )
    size = TrainingSize.of(len(train_inputs), len(val_inputs), batch_size, epochs, inputs.shape[1])
    with eager_when_short(trainer, size):
        fit = trainer.fit(
            _input_batches(train_inputs, batch_size, seed),
            validation_data=_input_batches(val_inputs, batch_size),
            epochs=epochs,
            shuffle=False,  # the tf.data input shuffles itself, seeded
            callbacks=_autoencoder_callbacks(training),
            verbose=2,
        )
    history = {
        name: [float(v) for v in values]
        for name, values in fit.history.items()
        if name != "learning_rate"
    }
    codes = predict_arrays(encoder, train_inputs)
    return autoencoder, standardised_encoder(encoder, codes), history


def reconstruction_check(
    autoencoder: KerasModel, inputs: np.ndarray, category_manifest: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """Held-out reconstruction error against the error of predicting the mean training input; warns
    when it is not lower."""
    split = category_manifest["split"].to_numpy()
    held_out = np.flatnonzero(np.isin(split, ["test", "val"]))
    train = split == "train"
    if len(held_out) == 0 or not train.any():
        return {}
    from jewelry_pipeline.core.models.data import predict_arrays

    truth = inputs[held_out].astype(np.float32) / 255.0
    reconstruction = predict_arrays(autoencoder, inputs[held_out])
    error = float(np.mean((reconstruction - truth) ** 2))
    mean_image_error = float(
        np.mean((inputs[train].astype(np.float32).mean(axis=0) / 255.0 - truth) ** 2)
    )
    category = str(category_manifest["category"].iloc[0])
    if error < mean_image_error:
        logger.info(
            "'%s' autoencoder: held-out reconstruction MSE %.5f < mean-image MSE %.5f",
            category,
            error,
            mean_image_error,
        )
    else:
        logger.warning(
            "'%s' autoencoder reconstructs held-out photos no better than their mean image "
            "(MSE %.5f >= %.5f)",
            category,
            error,
            mean_image_error,
        )
    return single_step(
        {
            "heldout_reconstruction_mse": error,
            "heldout_mean_image_mse": mean_image_error,
            "reconstruction_beats_mean": float(error < mean_image_error),
        }
    )


def encode_category(
    encoder: KerasModel, inputs: np.ndarray, category_manifest: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Latent codes of every item in the category."""
    from jewelry_pipeline.core.models.data import predict_arrays

    latents = predict_arrays(encoder, inputs)
    return {
        "item_id": category_manifest["item_id"].to_numpy().astype(str),
        "latents": latents.astype(np.float32),
    }


def plot_reconstructions(
    autoencoder: KerasModel,
    images: np.ndarray,
    inputs: np.ndarray,
    category_manifest: pd.DataFrame,
    autoencoders: dict[str, Any],
) -> Figure:
    """Montage of test photos, the autoencoder's input and its reconstruction."""
    from jewelry_pipeline.core.models.data import predict_arrays
    from jewelry_pipeline.core.plots import gallery_figure

    test = np.flatnonzero(category_manifest["split"].to_numpy() == "test")[
        : int(autoencoders["montage_size"])
    ]
    reconstructions = predict_arrays(autoencoder, inputs[test], batch_size=32)
    tiles, captions = [], []
    for position, reconstruction in zip(test, reconstructions):
        reconstructed = (np.clip(reconstruction, 0, 1) * 255).astype(np.uint8)
        tiles += [
            images[category_manifest["store_index"].iloc[position]],
            _rgb(inputs[position]),
            _rgb(reconstructed),
        ]
        captions += ["photo", "input", "reconstruction"]
    category = category_manifest["category"].iloc[0] if len(category_manifest) else ""
    return gallery_figure(
        tiles, captions, f"{category}: photo, autoencoder input and its reconstruction", columns=6
    )


def _rgb(image: np.ndarray) -> np.ndarray:
    """A one-channel map repeated to RGB; RGB stays as it is."""
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
