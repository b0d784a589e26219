"""Per-category autoencoder nodes: select the category, map its foregrounds, train, encode, show reconstructions."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.figure import Figure

from jewelry_pipeline.images import Foreground, foreground_maps
from jewelry_pipeline.models.autoencoder import ContrastiveAutoencoder, build_autoencoder, standardised_encoder, view_augmenter
from jewelry_pipeline.models.data import seed_everything
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


def category_maps(images: np.ndarray, category_manifest: pd.DataFrame, preprocessing: dict[str, Any]) -> np.ndarray:
    """Foreground maps of the category's images, in manifest order (the autoencoder's input)."""
    return foreground_maps(images, category_manifest["store_index"].to_numpy(), Foreground.from_config(preprocessing))


def _map_batches(maps: np.ndarray, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Map batches, reshuffled every epoch in a seeded order when `seed` is given."""
    dataset = tf.data.Dataset.from_tensor_slices(maps)
    if seed is not None:
        dataset = dataset.shuffle(len(maps), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)


def train_autoencoder(
    maps: np.ndarray, category_manifest: pd.DataFrame, autoencoders: dict[str, Any]
) -> tuple[keras.Model, keras.Model, dict[str, list[float]]]:
    """Train one category's autoencoder on reconstruction plus contrastive loss (Adam, early stopping, LR reduction).

    Returns the autoencoder, the encoder with its codes standardised on the training rows, and the loss history.
    """
    seed = int(autoencoders["seed"])
    seed_everything(seed)
    training, contrastive = autoencoders["training"], autoencoders["contrastive"]
    split = category_manifest["split"].to_numpy()
    train_maps, val_maps = maps[split == "train"], maps[split == "val"]
    autoencoder, encoder, decoder = build_autoencoder(maps.shape[1], **autoencoders["architecture"])
    trainer = ContrastiveAutoencoder(
        encoder,
        decoder,
        view_augmenter(autoencoders["views"], seed),
        projection_dim=int(contrastive["projection_dim"]),
        temperature=float(contrastive["temperature"]),
        contrastive_weight=float(contrastive["weight"]),
    )
    trainer.compile(optimizer=keras.optimizers.Adam(float(training["learning_rate"])))
    batch_size = int(training["batch_size"])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(training["early_stopping_patience"]), restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=float(training["reduce_lr_factor"]), patience=int(training["reduce_lr_patience"])),
    ]
    category = category_manifest["category"].iloc[0] if len(category_manifest) else "?"
    logger.info("Training the '%s' autoencoder on %d foreground maps (val %d)", category, len(train_maps), len(val_maps))
    fit = trainer.fit(
        _map_batches(train_maps, batch_size, seed),
        validation_data=_map_batches(val_maps, batch_size),
        epochs=int(training["epochs"]),
        shuffle=False,  # the tf.data input shuffles itself, seeded
        callbacks=callbacks,
        verbose=2,
    )
    history = {name: [float(v) for v in values] for name, values in fit.history.items() if name != "learning_rate"}
    codes = encoder.predict(train_maps, batch_size=256, verbose=0)
    return autoencoder, standardised_encoder(encoder, codes), history


def encode_category(encoder: keras.Model, maps: np.ndarray, category_manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Latent codes of every item in the category."""
    latents = encoder.predict(maps, batch_size=256, verbose=0)
    return {"item_id": category_manifest["item_id"].to_numpy().astype(str), "latents": latents.astype(np.float32)}


def plot_reconstructions(
    autoencoder: keras.Model, images: np.ndarray, maps: np.ndarray, category_manifest: pd.DataFrame, autoencoders: dict[str, Any]
) -> Figure:
    """Montage of test photos, their foreground maps and the maps' reconstructions."""
    test = np.flatnonzero(category_manifest["split"].to_numpy() == "test")[: int(autoencoders["montage_size"])]
    reconstructions = autoencoder.predict(maps[test], verbose=0) if len(test) else []
    tiles, captions = [], []
    for position, reconstruction in zip(test, reconstructions):
        reconstructed = (np.clip(reconstruction, 0, 1) * 255).astype(np.uint8)
        tiles += [images[category_manifest["store_index"].iloc[position]], np.repeat(maps[position], 3, axis=-1), np.repeat(reconstructed, 3, axis=-1)]
        captions += ["photo", "foreground", "reconstruction"]
    category = category_manifest["category"].iloc[0] if len(category_manifest) else ""
    return gallery_figure(tiles, captions, f"{category}: photo, foreground map and its reconstruction", columns=6)
