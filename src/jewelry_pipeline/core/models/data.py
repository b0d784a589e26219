"""tf.data input from the memory-mapped uint8 store, batched predictions, seeding, and the choice
between a traced and an eager Keras training loop."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import keras
import numpy as np
import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# A short training runs eagerly: tracing the train and test steps is a fixed cost (1-2 s on 2 cores)
# that a few steps do not pay back, while an eager step costs more than a traced one, the more the
# more pixels it carries. Short means at most EAGER_MAX_STEPS steps (train and validation batches
# over every epoch) carrying at most EAGER_MAX_PIXELS photo pixels in all. Measured by
# `benchmarks/eager_training.py` (docs/PERFORMANCE.md): eager is ahead up to 11-15 steps of 16
# photos of 32 px, 8-11 of 64 of 64 px, 3-4 of 32 of 128 px. Small categories and short runs gain.
EAGER_MAX_STEPS = 10
EAGER_MAX_PIXELS = 1_600_000


@dataclass(frozen=True)
class TrainingSize:
    """How much a `fit` can do: its steps (train and validation batches over every epoch) and the
    photo pixels they carry."""

    steps: int
    pixels: int

    @classmethod
    def of(cls, train: int, val: int, batch_size: int, epochs: int, side: int) -> TrainingSize:
        """The most a `fit` of `train` and `val` photos of `side` px can do in `epochs`."""
        epochs = max(int(epochs), 0)
        per_epoch = math.ceil(train / batch_size) + math.ceil(val / batch_size)
        return cls(per_epoch * epochs, (train + val) * epochs * side * side)

    @property
    def short(self) -> bool:
        """Whether it runs eagerly (see EAGER_MAX_STEPS)."""
        return self.steps <= EAGER_MAX_STEPS and self.pixels <= EAGER_MAX_PIXELS


def eager_step_limit(batch_size: int, side: int) -> int:
    """The most steps of full batches of `batch_size` photos of `side` px that run eagerly."""
    return min(EAGER_MAX_STEPS, EAGER_MAX_PIXELS // (batch_size * side * side))


@contextmanager
def eager_when_short(model: keras.Model, size: TrainingSize) -> Iterator[bool]:
    """Run `model`'s `fit` eagerly when its `size` is short, traced otherwise; afterwards the model
    runs as before (its setting back, the eager step functions dropped, so a later `fit` or
    `evaluate` makes its own). Yields whether it runs eagerly."""
    before = model.run_eagerly
    model.run_eagerly = eager = size.short
    try:
        yield eager
    finally:
        model.run_eagerly = before
        if eager:
            model.train_function = model.test_function = None


def augmenter(config: dict, seed: int) -> keras.Sequential | None:
    """Keras augmentation layers from params (flip, brightness, contrast), or None; rotation is
    `rotator`'s."""
    steps = []
    if config.get("flip", False):
        steps.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.get("brightness", 0):
        steps.append(
            keras.layers.RandomBrightness(
                float(config["brightness"]), value_range=(0, 255), seed=seed + 2
            )
        )
    if config.get("contrast", 0):
        steps.append(keras.layers.RandomContrast(float(config["contrast"]), seed=seed + 3))
    return keras.Sequential(steps, name="augmentation") if steps else None


def rotator(config: dict, seed: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """Random rotation of uint8 batches by up to `rotation` of a full turn, border repeated; None
    when off.

    Done with OpenCV on the uint8 batch in the input generator (about 40 ms for 1,400 64 px images);
    in the end-to-end default run no saving over Keras' RandomRotation was measured. Seeded: the
    same seed gives the same angles in the same order.
    """
    turn = float(config.get("rotation", 0))
    if not turn:
        return None
    rng = np.random.default_rng(seed + 1)

    def rotate(batch: np.ndarray) -> np.ndarray:
        out = np.empty_like(batch)
        height, width = batch.shape[1:3]
        for i, angle in enumerate(rng.uniform(-turn, turn, len(batch)) * 360.0):
            matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), float(angle), 1.0)
            out[i] = cv2.warpAffine(
                batch[i],
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            ).reshape(batch.shape[1:])
        return out

    return rotate


def batches(
    images: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    augment: Callable | None = None,
    rotate: Callable[[np.ndarray], np.ndarray] | None = None,
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
            yield (rotate(batch) if rotate is not None else batch), targets[chosen][sort]

    image_spec = tf.TensorSpec((None, *size), tf.uint8)
    target_spec = tf.TensorSpec((None, *targets.shape[1:]), tf.as_dtype(targets.dtype))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(image_spec, target_spec))
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    return dataset.prefetch(2)


@contextmanager
def unknown_length_epochs() -> Iterator[None]:
    """Fits on `batches` without Keras's warning that the input "ran out of data": its length is
    unknown to Keras, so the first epoch ends when the generator does, as it should.

    Declaring the length instead (`assert_cardinality`) makes Keras open one more iterator per
    epoch, which draws the seeded shuffle once more and so changes every trained model.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
        yield


def _inference(model: keras.Model, batch: tf.Tensor) -> tf.Tensor | list[tf.Tensor]:
    """`model` in inference mode on a batch, cast to float32."""
    return model(tf.cast(batch, tf.float32), training=False)


def inference_function(
    model: keras.Model, input_signature: list[tf.TensorSpec] | None = None
) -> Callable:
    """`model` in inference mode as a traced function of its own, as Keras's `predict` runs it.

    TensorFlow counts traces per Python function: models built alike (one per category) traced
    through one shared function (Keras's predict step, or one lambda) read to it as "excessive
    retracing", and it warns. Each model here gets its own function object.
    """
    return tf.function(
        functools.partial(_inference, model), input_signature=input_signature, reduce_retracing=True
    )


def predict_arrays(model: keras.Model, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Keras's `predict` of a single-output model on an in-memory array (the same numbers), through
    `inference_function`. Each call traces afresh: callers predict a few times per model."""
    if len(inputs) == 0:
        return np.empty((0, *model.output_shape[1:]), np.float32)
    infer = inference_function(model)
    return np.concatenate(
        [
            infer(inputs[start : start + batch_size]).numpy()
            for start in range(0, len(inputs), batch_size)
        ]
    )


# Photos per eager inference call. An eager call holds every layer's output for the whole batch
# until it returns: the frozen EfficientNet-Lite0 at 128 px on 256 photos peaked at 7.5 GB of
# memory, on 32 at 1.6 GB, with bit-identical features (a default run peaked at 9.97 GB before).
EAGER_BATCH = 32


def predict_batches(
    model: keras.Model, images: np.ndarray, indices: np.ndarray, batch_size: int = EAGER_BATCH
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Run `model` over the given store rows, converting one batch at a time to float32.

    A model with several outputs gives one array per output, in order.
    """
    outputs = []
    for start in range(0, len(indices), batch_size):
        batch = np.asarray(
            images[np.asarray(indices[start : start + batch_size])], dtype=np.float32
        )
        result = model(batch, training=False)
        outputs.append(
            [r.numpy() for r in result] if isinstance(result, (list, tuple)) else [result.numpy()]
        )
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    if outputs:
        arrays = tuple(np.concatenate(parts) for parts in zip(*outputs))
    else:
        arrays = tuple(np.empty((0, *shape[1:]), np.float32) for shape in shapes)
    return arrays if len(shapes) > 1 else arrays[0]


class LearningRateLog(keras.callbacks.Callback):
    """Records the optimizer's learning rate at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.rates: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class ReduceLROnPlateauAfterWarmup(keras.callbacks.ReduceLROnPlateau):
    """Keras' `ReduceLROnPlateau` that starts watching after `start_from_epoch` epochs, like
    `EarlyStopping`."""

    def __init__(self, start_from_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_from_epoch = start_from_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.start_from_epoch:
            super().on_epoch_end(epoch, logs)
