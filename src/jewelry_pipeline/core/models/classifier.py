"""The category classifier: a small CNN (conv blocks with batch norm, ReLU, pooling, dropout), and
the ensemble of it with the pretrained classifier; `features_model` is what every caller queries."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

EMBEDDING_LAYER = "embedding"
PROBABILITIES_LAYER = "probabilities"
CNN_NAME = "jewelry_classifier"
PRETRAINED_NAME = "pretrained_classifier"  # `core.models.pretrained.build_pretrained_classifier`
ENSEMBLE_NAME = "ensemble_classifier"


def build_classifier(
    image_size: int,
    n_classes: int,
    filters: Sequence[int] = (32, 64, 128),
    convs_per_block: int = 1,
    block_dropout: float = 0.1,
    embedding_dim: int = 128,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
    pooling: str = "average",
    working_size: int | None = None,
) -> keras.Model:
    """Build the CNN; it takes raw 0-255 RGB pixels and returns class probabilities.

    With `working_size` below `image_size`, the model first area-resizes its input to that side:
    small photos are not blown up for the convolutions, and every caller (training, embedding,
    serving) feeds the same input.

    `pooling` turns the last feature map into a vector: `average` (global average, position-free) or
    `flatten` (keeps where each feature is, which matters for aligned catalog photos).
    """
    if pooling not in ("average", "flatten"):
        raise ValueError(f"classifier pooling must be 'average' or 'flatten'; got '{pooling}'")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if working_size is not None and int(working_size) < image_size:
        x = layers.Resizing(
            int(working_size), int(working_size), interpolation="area", name="working_size"
        )(x)
    x = layers.Rescaling(1.0 / 255)(x)
    for block, width in enumerate(filters):
        for conv in range(convs_per_block):
            x = layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}"
            )(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
        x = layers.Dropout(block_dropout, name=f"block{block}_dropout")(x)
    x = (
        layers.GlobalAveragePooling2D(name="pool")(x)
        if pooling == "average"
        else layers.Flatten(name="pool")(x)
    )
    embedding = layers.Dense(embedding_dim, activation="relu", name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(dropout, name="head_dropout")(embedding)
    outputs = layers.Dense(n_classes, activation="softmax", name=PROBABILITIES_LAYER)(x)
    return keras.Model(inputs, outputs, name=CNN_NAME)


def embedding_model(classifier: keras.Model) -> keras.Model:
    """The classifier up to its penultimate (embedding) layer."""
    return keras.Model(
        classifier.inputs, classifier.get_layer(EMBEDDING_LAYER).output, name="classifier_embedding"
    )


def _descriptor_output(classifier: keras.Model, block: int, grid: int):
    """Block `block`'s last activation (negative: counted from the end) averaged over a `grid` x
    `grid` layout, flattened."""
    blocks = sum(
        1
        for layer in classifier.layers
        if layer.name.endswith("_pool") and layer.name.startswith("block")
    )
    index = block + blocks if block < 0 else block
    activations = [
        layer for layer in classifier.layers if layer.name.startswith(f"block{index}_relu")
    ]
    if not activations:
        raise ValueError(f"the classifier has no block {block} (it has {blocks})")
    x = activations[-1].output
    pool = max(1, int(x.shape[1]) // int(grid))
    x = layers.AveragePooling2D(pool, name="descriptor_pool")(x)
    return layers.Flatten(name="descriptor")(x)


def descriptor_model(classifier: keras.Model, block: int, grid: int) -> keras.Model:
    """The classifier's mid-level descriptor: where its block features fire, on a coarse grid (see
    `query.descriptor_vectors`)."""
    return keras.Model(
        classifier.inputs, _descriptor_output(classifier, block, grid), name="classifier_descriptor"
    )


def ensemble_classifier(pretrained: keras.Model, cnn: keras.Model) -> keras.Model:
    """One model of the pretrained classifier and the CNN that averages their class probabilities;
    its embedding, descriptor and pooled features are the pretrained member's."""
    if pretrained.name != PRETRAINED_NAME or cnn.name != CNN_NAME:
        raise ValueError(
            f"an ensemble takes a '{PRETRAINED_NAME}' and a '{CNN_NAME}' model; "
            f"got '{pretrained.name}' and '{cnn.name}'"
        )
    if pretrained.input_shape != cnn.input_shape:
        raise ValueError(
            f"ensemble members must take the same photos: {pretrained.input_shape} against "
            f"{cnn.input_shape}"
        )
    inputs = keras.Input(pretrained.input_shape[1:], name="image")
    outputs = layers.Average(name=PROBABILITIES_LAYER)([pretrained(inputs), cnn(inputs)])
    return keras.Model(inputs, outputs, name=ENSEMBLE_NAME)


def ensemble_members(classifier: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """(pretrained, cnn) of an ensemble classifier; None for a single network."""
    if classifier.name != ENSEMBLE_NAME:
        return None
    return classifier.get_layer(PRETRAINED_NAME), classifier.get_layer(CNN_NAME)


def is_pretrained(classifier: keras.Model) -> bool:
    """Whether the classifier stands on a pretrained backbone (`core.models.pretrained`)."""
    return any(layer.name.startswith("backbone") for layer in classifier.layers)


def features_model(
    classifier: keras.Model, descriptor: tuple[int, int] | None = None, pooled: bool = False
) -> keras.Model:
    """The classifier with its embedding and class probabilities as outputs, plus the pooled
    descriptor when asked (for a pretrained classifier, of its backbone's stages), plus last with
    `pooled` the features its embedding layer reads (for a pretrained one, its backbone's).

    For an ensemble, the probabilities are its members' mean and the rest the pretrained member's.
    """
    members = ensemble_members(classifier)
    if members is not None:
        pretrained, cnn = members
        inputs = keras.Input(classifier.input_shape[1:], name="image")
        outputs = list(features_model(pretrained, descriptor, pooled)(inputs))
        outputs[1] = layers.Average(name="ensemble_probabilities")([outputs[1], cnn(inputs)])
        return keras.Model(inputs, outputs, name="classifier_features")
    if is_pretrained(classifier):
        from jewelry_pipeline.core.models.pretrained import pretrained_features_model

        return pretrained_features_model(classifier, descriptor, pooled)
    outputs = [classifier.get_layer(EMBEDDING_LAYER).output, classifier.output]
    if descriptor is not None:
        outputs.append(_descriptor_output(classifier, *descriptor))
    if pooled:
        outputs.append(classifier.get_layer(EMBEDDING_LAYER).input)
    return keras.Model(classifier.inputs, outputs, name="classifier_features")
