"""The eager-or-traced choice of a Keras training: by its step count, and the model left traced."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from jewelry_pipeline.core.models.data import (
    EAGER_MAX_PIXELS,
    EAGER_MAX_STEPS,
    TrainingSize,
    eager_step_limit,
    eager_when_short,
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
