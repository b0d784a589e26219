"""The eager-or-traced choice of a Keras training: by its step count, and the model left traced;
store batches of a known length, and per-model inference without TensorFlow's retracing warnings."""

from __future__ import annotations

import contextlib
import logging
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from jewelry_pipeline.core.models.data import (
    EAGER_MAX_PIXELS,
    EAGER_MAX_STEPS,
    TrainingSize,
    batches,
    eager_step_limit,
    eager_when_short,
    predict_arrays,
    predict_batches,
    unknown_length_epochs,
)


def test_a_size_counts_every_batch_and_photo_of_every_epoch():
    size = TrainingSize.of(train=65, val=10, batch_size=32, epochs=3, side=8)
    assert size.steps == (3 + 1) * 3 and size.pixels == 75 * 3 * 64
    assert TrainingSize.of(train=8, val=0, batch_size=16, epochs=1, side=2).steps == 1


def test_short_means_few_steps_carrying_few_pixels():
    assert TrainingSize(EAGER_MAX_STEPS, EAGER_MAX_PIXELS).short
    assert not TrainingSize(EAGER_MAX_STEPS + 1, 1).short
    assert not TrainingSize(1, EAGER_MAX_PIXELS + 1).short
    # the limit for full batches, as the benchmark judges it, falls as a step carries more pixels
    assert eager_step_limit(batch_size=16, side=32) == EAGER_MAX_STEPS
    assert eager_step_limit(batch_size=32, side=128) == EAGER_MAX_PIXELS // (32 * 128 * 128)
    assert eager_step_limit(batch_size=64, side=512) == 0  # even one step runs traced


class ModeProbe(keras.layers.Layer):
    """Passes its input on and records whether each call ran eagerly (False while traced)."""

    def __init__(self):
        super().__init__()
        self.eager_calls: list[bool] = []

    def call(self, x):
        self.eager_calls.append(tf.executing_eagerly())
        return x


def _tiny_model(probe: ModeProbe) -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(probe(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    ("steps", "eager"), [(1, True), (EAGER_MAX_STEPS, True), (EAGER_MAX_STEPS + 1, False)]
)
def test_a_short_fit_runs_eagerly_a_long_one_traced_and_the_model_is_left_traced(steps, eager):
    probe = ModeProbe()
    model = _tiny_model(probe)
    probe.eager_calls.clear()  # the functional model's own build call
    x, y = np.ones((4, 4), np.float32), np.array([0, 1, 0, 1])
    with eager_when_short(model, TrainingSize(steps, pixels=steps * 4)) as chosen:
        model.fit(x, y, epochs=1, verbose=0)
    assert chosen is eager
    assert probe.eager_calls and set(probe.eager_calls) == {eager}
    if eager:  # the eager step functions are dropped: a later fit or evaluate makes its own
        assert model.train_function is None and model.test_function is None
    assert model.run_eagerly is False
    assert model.get_compile_config()["run_eagerly"] is False


def test_the_models_own_setting_comes_back_afterwards():
    model = _tiny_model(ModeProbe())
    model.run_eagerly = True  # a caller's choice, kept
    with eager_when_short(model, TrainingSize(EAGER_MAX_STEPS + 1, 1)) as eager:
        assert eager is False and model.run_eagerly is False
    assert model.run_eagerly is True


def _small_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )


def test_predict_arrays_gives_keras_predict_numbers_without_retracing_warnings(caplog):
    """Models built alike (one per category) each get their own traced function: the numbers are
    Keras's `predict`'s, and TensorFlow finds no "excessive retracing" to warn about."""
    inputs = np.random.default_rng(0).integers(0, 256, (300, 8, 8, 1), dtype=np.uint8)
    models = [_small_model(seed) for seed in range(7)]
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        ours = [predict_arrays(model, inputs) for model in models]
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    for model, vectors in zip(models, ours):
        np.testing.assert_array_equal(vectors, model.predict(inputs, batch_size=256, verbose=0))
    assert predict_arrays(models[0], inputs[:0]).shape == (0, 3)


def test_a_fit_on_store_batches_ends_its_first_epoch_without_keras_warning():
    """The generator's length is unknown to Keras, which warns when it ends; the fit's context
    drops that one warning (and only it)."""
    images = np.random.default_rng(1).integers(0, 256, (50, 8, 8, 1), dtype=np.uint8)
    data = batches(images, np.arange(50), np.arange(50) % 3, 16, shuffle_seed=0)
    assert sum(len(y) for _, y in data) == 50

    def warned(quiet: bool) -> list[str]:
        model = keras.Sequential([_small_model(0), keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with unknown_length_epochs() if quiet else contextlib.nullcontext():
                model.fit(data, epochs=2, verbose=0)
                warnings.warn("another warning", UserWarning)
        return [str(w.message) for w in caught]

    assert any("ran out of data" in message for message in warned(quiet=False))
    messages = warned(quiet=True)
    assert not any("ran out of data" in m for m in messages) and "another warning" in messages


def test_eager_predictions_do_not_depend_on_the_batch_size():
    """`predict_batches` runs small batches (an eager call holds every layer's output of its batch):
    each photo's outputs are the same bits in any batch."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Conv2D(6, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    images = np.random.default_rng(2).integers(0, 256, (90, 12, 12, 3), dtype=np.uint8)
    rows = np.random.default_rng(3).permutation(90)[:70]
    whole = predict_batches(model, images, rows, batch_size=256)
    for batch_size in (1, 7, 32):
        np.testing.assert_array_equal(predict_batches(model, images, rows, batch_size), whole)
    np.testing.assert_array_equal(predict_batches(model, images, rows), whole)
