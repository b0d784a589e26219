"""Convolutional autoencoder of an image (photo or foreground map).
Trained with an auxiliary contrastive loss.

The encoder is Conv+BatchNorm+MaxPool blocks and a dense bottleneck; the decoder mirrors it with
UpSampling+Conv. `ContrastiveAutoencoder` trains both on reconstruction of the item from each of two
augmented views plus NT-Xent between the views (SimCLR), so an item's code agrees across pose and
framing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

LATENT_LAYER = "latent"


def build_autoencoder(
    image_size: int,
    filters: Sequence[int] = (16, 32, 64, 128),
    latent_dim: int = 64,
    decoder_filters: Sequence[int] | None = None,
    channels: int = 1,
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Build (autoencoder, encoder, decoder).
    Input: 0-255 images (n, s, s, channels); output: reconstruction on a 0-1 scale.

    The decoder has one UpSampling+Conv block per encoder block, `decoder_filters` wide (default:
    the encoder's widths reversed).
    """
    if image_size % (2 ** len(filters)):
        raise ValueError(
            f"image_size {image_size} must be divisible by 2**{len(filters)} for this autoencoder"
        )
    decoder_filters = list(reversed(filters)) if decoder_filters is None else list(decoder_filters)
    if len(decoder_filters) != len(filters):
        raise ValueError(
            f"decoder_filters {decoder_filters} must have one width per encoder block "
            f"({len(filters)})"
        )
    inputs = keras.Input((image_size, image_size, channels), name="autoencoder_input")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"enc_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"enc_norm{i}")(x)
        x = layers.ReLU(name=f"enc_relu{i}")(x)
        x = layers.MaxPooling2D(name=f"enc_pool{i}")(x)
    bottleneck_shape = tuple(int(d) for d in x.shape[1:])
    latent = layers.Dense(latent_dim, name=LATENT_LAYER)(layers.Flatten(name="flatten")(x))
    encoder = keras.Model(inputs, latent, name="encoder")

    codes = keras.Input((latent_dim,), name="latent_code")
    x = layers.Dense(int(np.prod(bottleneck_shape)), activation="relu", name="dec_dense")(codes)
    x = layers.Reshape(bottleneck_shape, name="dec_reshape")(x)
    for i, width in enumerate(decoder_filters):
        x = layers.UpSampling2D(name=f"dec_up{i}")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"dec_conv{i}")(x)
    # Linear output: a sigmoid saturates on sparse maps and can leave the decoder stuck at black.
    outputs = layers.Conv2D(channels, 3, padding="same", name="reconstruction")(x)
    decoder = keras.Model(codes, outputs, name="decoder")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    return autoencoder, encoder, decoder


def standardised_encoder(encoder: keras.Model, codes: np.ndarray) -> keras.Model:
    """The encoder followed by a fixed standardisation of its codes (mean and variance of
    `codes`)."""
    inputs = keras.Input(encoder.input_shape[1:], name="autoencoder_input")
    mean, variance = codes.mean(axis=0), np.maximum(codes.var(axis=0), 1e-6)
    scaled = layers.Normalization(mean=mean, variance=variance, name="standardise")(encoder(inputs))
    return keras.Model(inputs, scaled, name="standardised_encoder")


def view_augmenter(
    views: dict[str, Any], seed: int, photo: bool = False
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Random views of a float 0-255 batch: crop-and-resize, flip, rotation, gain and smooth blotchy
    texture.

    For foreground maps a rotation brings in empty (0) corners and the blotches imitate leftover
    backdrop texture; for photos the corners repeat the photo's own border and no blotches are
    added.
    """
    min_area, gain, texture = (
        float(views["crop_min_area"]),
        float(views["gain"]),
        0.0 if photo else float(views["texture"]),
    )
    rotate = layers.RandomRotation(
        float(views["rotation"]), fill_mode="nearest" if photo else "constant", seed=seed
    )
    generator = tf.random.Generator.from_seed(seed)

    def view(maps: tf.Tensor) -> tf.Tensor:
        n, size = tf.shape(maps)[0], [int(maps.shape[1]), int(maps.shape[2])]
        side = tf.sqrt(generator.uniform([n], min_area, 1.0))
        top, left = generator.uniform([n]) * (1 - side), generator.uniform([n]) * (1 - side)
        x = tf.image.crop_and_resize(
            maps, tf.stack([top, left, top + side, left + side], 1), tf.range(n), size
        )
        x = tf.where(generator.uniform([n, 1, 1, 1]) < 0.5, x[:, :, ::-1, :], x)
        x = rotate(x, training=True)
        x = x * generator.uniform([n, 1, 1, 1], 1 - gain, 1 + gain)
        if (
            texture > 0
        ):  # smooth blotches, like the cloth and mottling a foreground floor leaves behind
            blotches = tf.abs(
                tf.image.resize(generator.normal([n, 8, 8, 1]), size, method="bicubic")
            )
            x = x + blotches * generator.uniform([n, 1, 1, 1], 0, texture)
        return tf.clip_by_value(x, 0, 255)

    return view


def nt_xent(first: tf.Tensor, second: tf.Tensor, temperature: float) -> tf.Tensor:
    """SimCLR's normalised-temperature cross-entropy: each view must pick its partner among
    2n - 1."""
    z = tf.math.l2_normalize(tf.concat([first, second], 0), axis=1)
    n = tf.shape(first)[0]
    similarity = tf.matmul(z, z, transpose_b=True) / temperature - 1e9 * tf.eye(2 * n)
    partners = tf.concat([tf.range(n) + n, tf.range(n)], 0)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(partners, similarity))


class ContrastiveAutoencoder(keras.Model):
    """Training wrapper: MSE of each view's reconstruction against the item, plus
    `contrastive_weight` x NT-Xent of the views' projected codes."""

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        view: Callable,
        projection_dim: int,
        temperature: float,
        contrastive_weight: float,
    ):
        super().__init__()
        self.encoder, self.decoder, self.random_view = encoder, decoder, view
        self.projection = keras.Sequential(
            [layers.Dense(2 * projection_dim, activation="relu"), layers.Dense(projection_dim)],
            name="projection",
        )
        self.temperature, self.contrastive_weight = float(temperature), float(contrastive_weight)
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "reconstruction_loss", "contrastive_loss")
        }

    @property
    def metrics(self) -> list:
        return list(self.trackers.values())

    def _view_losses(
        self, maps: tf.Tensor, training: bool
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        maps = tf.cast(maps, tf.float32)
        codes = self.encoder(
            tf.concat([self.random_view(maps), self.random_view(maps)], 0), training=training
        )
        # Each view's code decodes to the item itself, not to the view: the code is meant to ignore
        # the view.
        targets = tf.concat([maps, maps], 0) / 255.0
        reconstruction = tf.reduce_mean(tf.square(self.decoder(codes, training=training) - targets))
        first, second = tf.split(self.projection(codes, training=training), 2)
        contrastive = nt_xent(first, second, self.temperature)
        return reconstruction + self.contrastive_weight * contrastive, reconstruction, contrastive

    def _record(self, *values: tf.Tensor) -> dict:
        for tracker, value in zip(self.trackers.values(), values):
            tracker.update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self._view_losses(data, training=True)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(losses[0], variables), variables))
        return self._record(*losses)

    def test_step(self, data):
        return self._record(*self._view_losses(data, training=False))

    def call(self, maps, training: bool = False):
        return self.decoder(self.encoder(maps, training=training), training=training)
