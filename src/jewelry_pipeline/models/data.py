"""tf.data input from the memory-mapped uint8 store, batched predictions, and seeding."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def augmenter(config: dict, seed: int) -> keras.Sequential | None:
    """Keras augmentation layers from params (flip, rotation, brightness, contrast), or None."""
    steps = []
    if config.get("flip", False):
        steps.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.get("rotation", 0):
        steps.append(keras.layers.RandomRotation(float(config["rotation"]), fill_mode="nearest", seed=seed + 1))
    if config.get("brightness", 0):
        steps.append(keras.layers.RandomBrightness(float(config["brightness"]), value_range=(0, 255), seed=seed + 2))
    if config.get("contrast", 0):
        steps.append(keras.layers.RandomContrast(float(config["contrast"]), seed=seed + 3))
    return keras.Sequential(steps, name="augmentation") if steps else None


def batches(
    images: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    augment: Callable | None = None,
) -> tf.data.Dataset:
    """A tf.data pipeline that reads batches straight from the (memory-mapped) uint8 store.

    Only one batch at a time is turned into floats; with `shuffle_seed` the order is reshuffled
    every epoch in a reproducible sequence.
    """
    indices = np.asarray(indices)
    size = images.shape[1:]
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None

    def generate():
        order = rng.permutation(len(indices)) if rng is not None else np.arange(len(indices))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            rows = indices[chosen]
            sort = np.argsort(rows)  # memmap reads are fastest in increasing order
            batch = images[rows[sort]]
            yield batch, targets[chosen][sort]

    image_spec = tf.TensorSpec((None, *size), tf.uint8)
    target_spec = tf.TensorSpec((None, *targets.shape[1:]), tf.as_dtype(targets.dtype))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(image_spec, target_spec))
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    return dataset.prefetch(2)


def predict_batches(model: keras.Model, images: np.ndarray, indices: np.ndarray, batch_size: int = 256) -> np.ndarray | tuple[np.ndarray, ...]:
    """Run `model` over the given store rows, converting one batch at a time to float32.

    A model with several outputs gives one array per output, in order.
    """
    outputs = []
    for start in range(0, len(indices), batch_size):
        batch = np.asarray(images[np.asarray(indices[start : start + batch_size])], dtype=np.float32)
        result = model(batch, training=False)
        outputs.append([r.numpy() for r in result] if isinstance(result, (list, tuple)) else [result.numpy()])
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    if outputs:
        arrays = tuple(np.concatenate(parts) for parts in zip(*outputs))
    else:
        arrays = tuple(np.empty((0, *shape[1:]), np.float32) for shape in shapes)
    return arrays if len(shapes) > 1 else arrays[0]
