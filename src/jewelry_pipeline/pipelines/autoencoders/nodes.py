"""Per-category autoencoder nodes: select the category, train, encode, show reconstructions."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from jewelry_pipeline.models.autoencoder import build_autoencoder
from jewelry_pipeline.models.data import batches, predict_batches, seed_everything
from jewelry_pipeline.plots import gallery_figure

logger = logging.getLogger(__name__)


def check_category_pipelines(categories: list[str], configured: list[str]) -> list[str]:
    """Fail clearly when the per-category pipelines (param `categories`) do not match the data."""
    missing, extra = sorted(set(categories) - set(configured)), sorted(set(configured) - set(categories))
    if missing or extra:
        raise ValueError(
            f"Parameter `categories` {sorted(configured)} does not match the categories found in the data "
            f"{sorted(categories)} (missing: {missing}, not in data: {extra}). Per-category pipelines are built "
            f"from it: set `categories: {sorted(categories)}` in conf/local/parameters.yml."
        )
    return sorted(categories)


def select_category(manifest: pd.DataFrame, category: str, checked_categories: list[str]) -> pd.DataFrame:
    """All manifest rows of one category, in store order."""
    if category not in checked_categories:
        raise ValueError(f"Category '{category}' is not one of {checked_categories}")
    return manifest[manifest["category"] == category].reset_index(drop=True)


def train_autoencoder(
    images: np.ndarray, category_manifest: pd.DataFrame, autoencoders: dict[str, Any]
) -> tuple[keras.Model, keras.Model, dict[str, list[float]]]:
    """Train one category's autoencoder (MSE, Adam, early stopping, learning-rate reduction)."""
    seed = int(autoencoders["seed"])
    seed_everything(seed)
    training = autoencoders["training"]
    train_rows = category_manifest.loc[category_manifest["split"] == "train", "store_index"].to_numpy()
    val_rows = category_manifest.loc[category_manifest["split"] == "val", "store_index"].to_numpy()
    autoencoder, encoder = build_autoencoder(images.shape[1], **autoencoders["architecture"])
    autoencoder.compile(optimizer=keras.optimizers.Adam(float(training["learning_rate"])), loss="mse")
    batch_size = int(training["batch_size"])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(training["early_stopping_patience"]), restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=float(training["reduce_lr_factor"]), patience=int(training["reduce_lr_patience"])),
    ]
    category = category_manifest["category"].iloc[0] if len(category_manifest) else "?"
    logger.info("Training the '%s' autoencoder on %d images (val %d)", category, len(train_rows), len(val_rows))
    fit = autoencoder.fit(
        batches(images, train_rows, None, batch_size, shuffle_seed=seed),
        validation_data=batches(images, val_rows, None, batch_size),
        epochs=int(training["epochs"]),
        callbacks=callbacks,
        verbose=2,
    )
    history = {"loss": [float(v) for v in fit.history["loss"]], "val_loss": [float(v) for v in fit.history["val_loss"]]}
    return autoencoder, encoder, history


def encode_category(encoder: keras.Model, images: np.ndarray, category_manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Latent codes of every item in the category."""
    latents = predict_batches(encoder, images, category_manifest["store_index"].to_numpy())
    return {"item_id": category_manifest["item_id"].to_numpy().astype(str), "latents": latents.astype(np.float32)}


def plot_reconstructions(autoencoder: keras.Model, images: np.ndarray, category_manifest: pd.DataFrame, autoencoders: dict[str, Any]) -> Figure:
    """Montage of test inputs next to their reconstructions."""
    test = category_manifest[category_manifest["split"] == "test"]
    rows = test["store_index"].to_numpy()[: int(autoencoders["montage_size"])]
    reconstructions = predict_batches(autoencoder, images, rows)
    tiles, captions = [], []
    for row, reconstruction in zip(rows, reconstructions):
        tiles += [images[row], (np.clip(reconstruction, 0, 1) * 255).astype(np.uint8)]
        captions += ["input", "reconstruction"]
    category = category_manifest["category"].iloc[0] if len(category_manifest) else ""
    return gallery_figure(tiles, captions, f"{category}: input vs reconstruction", columns=8)
