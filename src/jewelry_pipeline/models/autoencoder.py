"""Convolutional autoencoder: Conv+MaxPool encoder, dense bottleneck, UpSampling+Conv decoder."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

LATENT_LAYER = "latent"


def build_autoencoder(
    image_size: int, filters: Sequence[int] = (32, 64, 128), latent_dim: int = 32
) -> tuple[keras.Model, keras.Model]:
    """Build (autoencoder, encoder). Input: raw 0-255 RGB pixels; output: reconstruction in [0, 1]."""
    if image_size % (2 ** len(filters)):
        raise ValueError(f"image_size {image_size} must be divisible by 2**{len(filters)} for this autoencoder")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"enc_conv{i}")(x)
        x = layers.MaxPooling2D(name=f"enc_pool{i}")(x)
    bottleneck_shape = tuple(int(d) for d in x.shape[1:])
    x = layers.Flatten(name="flatten")(x)
    latent = layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    x = layers.Dense(bottleneck_shape[0] * bottleneck_shape[1] * bottleneck_shape[2], activation="relu", name="dec_dense")(latent)
    x = layers.Reshape(bottleneck_shape, name="dec_reshape")(x)
    for i, width in enumerate(reversed(filters)):
        x = layers.UpSampling2D(name=f"dec_up{i}")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"dec_conv{i}")(x)
    outputs = layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="reconstruction")(x)
    autoencoder = keras.Model(inputs, outputs, name="autoencoder")
    encoder = keras.Model(inputs, latent, name="encoder")
    return autoencoder, encoder
