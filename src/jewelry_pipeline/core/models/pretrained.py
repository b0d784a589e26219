"""The pretrained classifier: a backbone plus a new head, warmed up with the backbone frozen, then
its top blocks fine-tuned at a small learning rate with batch norm frozen.

The blocks below the fine-tuned ones never change, so their outputs are computed once per photo
(and per flipped photo) and both phases train on that cache: an epoch costs a few top blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jewelry_pipeline.core.models.backbone import (
    BLOCKS,
    RESIZE_LAYER,
    STAGES,
    block_output_layer,
    build_efficientnet_lite0,
)
from jewelry_pipeline.core.models.classifier import (
    EMBEDDING_LAYER,
    PRETRAINED_NAME,
    PROBABILITIES_LAYER,
)
from jewelry_pipeline.core.models.data import EAGER_BATCH

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

STAGED_BACKBONE = (
    "backbone_stages"  # the nested backbone with its stage outputs beside its features
)


@dataclass(frozen=True)
class FineTuneSettings:
    """The `pretrained.training` parameters."""

    fine_tune_blocks: int = 3
    embedding_dim: int = 128
    dropout: float = 0.3
    batch_size: int = 64
    warmup_epochs: int = 5
    warmup_learning_rate: float = 1e-3
    fine_tune_epochs: int = 20
    fine_tune_learning_rate: float = 1e-4
    early_stopping_patience: int = 4
    reduce_lr_patience: int = 2
    flip: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FineTuneSettings:
        """Read the `pretrained.training` mapping (missing keys keep their defaults)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown pretrained.training settings {sorted(unknown)}")
        settings = cls(**config)
        if not 0 <= settings.fine_tune_blocks <= BLOCKS:
            raise ValueError(f"pretrained.training.fine_tune_blocks must be 0..{BLOCKS}")
        return settings


def is_efficientnet(backbone: keras.Model) -> bool:
    """Whether the backbone is this project's EfficientNet-Lite0 (its blocks can be fine-tuned)."""
    names = {layer.name for layer in backbone.layers}
    return {"stem_conv", "head_conv", f"block{BLOCKS - 1}_project_conv"} <= names


def _stage_ends() -> list[int]:
    """Index of the last block of every stage."""
    ends, total = [], 0
    for repeats, *_ in STAGES:
        total += repeats
        ends.append(total - 1)
    return ends


def build_pretrained_classifier(
    backbone: keras.Model, image_size: int, n_classes: int, embedding_dim: int, dropout: float
) -> keras.Model:
    """Store-size photos (raw 0-255 RGB) -> resized to the backbone's side -> backbone -> a new
    head with the CNN's layer names (`embedding`, `probabilities`); an EfficientNet backbone is
    nested with its stage outputs beside its features, for the mid-level descriptor."""
    import keras
    from keras import layers

    side = backbone.input_shape[1]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if side != image_size:
        x = layers.Resizing(side, side, interpolation="bilinear", name=RESIZE_LAYER)(x)
    if is_efficientnet(backbone):
        taps = [backbone.get_layer(block_output_layer(end)).output for end in _stage_ends()]
        staged = keras.Model(backbone.inputs, [backbone.output, *taps], name=STAGED_BACKBONE)
        features = staged(x)[0]
    else:
        features = backbone(x)
    embedding = layers.Dense(embedding_dim, activation="relu", name=EMBEDDING_LAYER)(features)
    x = layers.Dropout(dropout, name="head_dropout")(embedding)
    outputs = layers.Dense(n_classes, activation="softmax", name=PROBABILITIES_LAYER)(x)
    return keras.Model(inputs, outputs, name=PRETRAINED_NAME)


def pretrained_features_model(
    classifier: keras.Model, descriptor: tuple[int, int] | None = None, pooled: bool = False
) -> keras.Model:
    """The pretrained classifier's embedding and probabilities, plus with `descriptor` (stage,
    grid) that backbone stage's activations averaged on a grid (a user's backbone: its features),
    plus last with `pooled` the backbone's pooled features."""
    import keras
    from keras import layers

    names = {layer.name for layer in classifier.layers}
    inputs = keras.Input(classifier.input_shape[1:], name="image")
    x = classifier.get_layer(RESIZE_LAYER)(inputs) if RESIZE_LAYER in names else inputs
    if STAGED_BACKBONE in names:
        features, *stages = classifier.get_layer(STAGED_BACKBONE)(x)
    else:
        features = classifier.get_layer("backbone")(x)
        stages = []
    embedding = classifier.get_layer(EMBEDDING_LAYER)(features)
    outputs = [embedding, classifier.get_layer(PROBABILITIES_LAYER)(embedding)]
    if descriptor is not None:
        stage, grid = descriptor
        if not stages:
            outputs.append(features)
        else:
            if not -len(stages) <= stage < len(stages):
                raise ValueError(f"the backbone has no stage {stage} (it has {len(stages)})")
            chosen = stages[stage]
            pool = max(1, int(chosen.shape[1]) // int(grid))
            stage_pooled = layers.AveragePooling2D(pool, name="descriptor_pool")(chosen)
            outputs.append(layers.Flatten(name="descriptor")(stage_pooled))
    if pooled:
        outputs.append(features)
    return keras.Model(inputs, outputs, name="pretrained_features")


def _split_backbone(backbone: keras.Model, fine_tune_blocks: int, image_size: int):
    """(lower, upper): store-size photos -> cached features, and cached features -> pooled
    features with the weights of `backbone`; upper is None when nothing is fine-tuned."""
    import keras
    from keras import layers

    side = backbone.input_shape[1]
    inputs = keras.Input((image_size, image_size, 3))
    resized = inputs if side == image_size else layers.Resizing(side, side)(inputs)
    if fine_tune_blocks == 0:
        return keras.Model(inputs, backbone(resized)), None
    first = BLOCKS - fine_tune_blocks
    cut = keras.Model(backbone.inputs, backbone.get_layer(block_output_layer(first - 1)).output)
    lower = keras.Model(inputs, cut(resized))
    upper = build_efficientnet_lite0(first_block=first, input_shape=tuple(cut.output_shape[1:]))
    copy_weights(backbone, upper)
    return lower, upper


def copy_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy the weights of every layer of `target` that `source` has by name; return how many."""
    by_name = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in target.layers:
        if layer.name in by_name and layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
            copied += 1
    return copied


def lower_features(
    lower: keras.Model,
    images: np.ndarray,
    rows: np.ndarray,
    flip: bool,
    batch_size: int = EAGER_BATCH,
) -> np.ndarray:
    """The frozen lower blocks' output for store `rows` (mirrored left-right with `flip`)."""
    parts = []
    for start in range(0, len(rows), batch_size):
        batch = np.asarray(images[np.asarray(rows[start : start + batch_size])], dtype=np.float32)
        if flip:
            batch = batch[:, :, ::-1]
        parts.append(lower(batch, training=False).numpy())
    return np.concatenate(parts) if parts else np.empty((0, *lower.output_shape[1:]), np.float32)


def _trainable_top(upper: keras.Model | None, input_shape: tuple, settings, n_classes: int):
    """The network trained on the cache: the top blocks (when fine-tuned) and the new head."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    features = upper(inputs) if upper is not None else inputs
    embedding = layers.Dense(settings.embedding_dim, activation="relu", name=EMBEDDING_LAYER)(
        features
    )
    x = layers.Dropout(settings.dropout, name="head_dropout")(embedding)
    outputs = layers.Dense(n_classes, activation="softmax", name=PROBABILITIES_LAYER)(x)
    return keras.Model(inputs, outputs)


def _set_fine_tunable(upper: keras.Model, trainable: bool) -> None:
    """Open (or close) the top blocks for training; batch norm stays frozen (inference mode)."""
    from keras import layers

    upper.trainable = trainable
    for layer in upper.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def _cached_training_views(
    lower: keras.Model,
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    settings: FineTuneSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """The frozen lower blocks' features of the training photos (and of their mirror images when
    `settings.flip`), with their labels."""
    cached = [lower_features(lower, images, rows, flip=False)]
    if settings.flip:
        cached.append(lower_features(lower, images, rows, flip=True))
    return np.concatenate(cached), np.concatenate([labels] * len(cached))


def _compiled_for_phase(top: keras.Model, learning_rate: float, settings: FineTuneSettings) -> list:
    """Compile `top` for one training phase at `learning_rate`; the phase's callbacks (early
    stopping with the best weights kept, learning-rate reduction)."""
    import keras

    top.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=settings.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=settings.reduce_lr_patience
        ),
    ]


def fine_tune(
    backbone: keras.Model,
    images: np.ndarray,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    settings: FineTuneSettings,
    class_weight: dict[int, float] | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train the pretrained classifier on store rows `train` and `val` ((rows, labels) each): the
    head warmed up with the backbone frozen, then the top blocks fine-tuned; return the full
    classifier (store-size photos in) and the per-epoch history of both phases."""

    from jewelry_pipeline.core.models.data import TrainingSize, eager_when_short

    blocks = settings.fine_tune_blocks if is_efficientnet(backbone) else 0
    if blocks != settings.fine_tune_blocks:
        logger.info("A user's backbone is used frozen: only the new head is trained")
    lower, upper = _split_backbone(backbone, blocks, images.shape[1])
    (train_rows, train_labels), (val_rows, val_labels) = train, val
    x_train, y_train = _cached_training_views(lower, images, train_rows, train_labels, settings)
    x_val = lower_features(lower, images, val_rows, flip=False)
    logger.info(
        "Pretrained classifier: %d cached training views of shape %s, %d fine-tuned blocks",
        len(x_train),
        x_train.shape[1:],
        blocks,
    )
    top = _trainable_top(upper, x_train.shape[1:], settings, n_classes)
    history: dict[str, list[float]] = {}
    phases = [("warmup", settings.warmup_epochs, settings.warmup_learning_rate, False)]
    if upper is not None:
        phases.append(
            ("fine_tune", settings.fine_tune_epochs, settings.fine_tune_learning_rate, True)
        )
    for phase, epochs, learning_rate, open_top in phases:
        if upper is not None:
            _set_fine_tunable(upper, open_top)
        callbacks = _compiled_for_phase(top, learning_rate, settings)
        logger.info(
            "Pretrained classifier, %s: up to %d epochs at %g", phase, epochs, learning_rate
        )
        # the top works on the lower blocks' features of photos at the backbone's input size
        side = int(backbone.input_shape[1])
        size = TrainingSize.of(len(x_train), len(x_val), settings.batch_size, epochs, side)
        with eager_when_short(top, size):
            fit = top.fit(
                x_train,
                y_train,
                validation_data=(x_val, val_labels),
                epochs=int(epochs),
                batch_size=settings.batch_size,
                callbacks=callbacks,
                class_weight=class_weight,
                verbose=2,
            )
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            history.setdefault(key, []).extend(float(v) for v in fit.history[key])
        history.setdefault("lr", []).extend(
            float(v) for v in fit.history.get("learning_rate", [learning_rate] * len(fit.epoch))
        )
    if upper is not None:
        copy_weights(upper, backbone)
    classifier = build_pretrained_classifier(
        backbone, images.shape[1], n_classes, settings.embedding_dim, settings.dropout
    )
    copy_weights(top, classifier)
    return classifier, history
