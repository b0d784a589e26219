"""The category classifier: a small CNN (conv blocks with batch norm, ReLU, pooling, dropout)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

EMBEDDING_LAYER = "embedding"
PROBABILITIES_LAYER = "probabilities"


def build_classifier(
    image_size: int,
    n_classes: int,
    filters: Sequence[int] = (32, 64, 128),
    convs_per_block: int = 1,
    block_dropout: float = 0.1,
    embedding_dim: int = 128,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """Build the CNN; it takes raw 0-255 RGB pixels and returns class probabilities."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for block, width in enumerate(filters):
        for conv in range(convs_per_block):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
        x = layers.Dropout(block_dropout, name=f"block{block}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    embedding = layers.Dense(embedding_dim, activation="relu", name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(dropout, name="head_dropout")(embedding)
    outputs = layers.Dense(n_classes, activation="softmax", name=PROBABILITIES_LAYER)(x)
    return keras.Model(inputs, outputs, name="jewelry_classifier")


def embedding_model(classifier: keras.Model) -> keras.Model:
    """The classifier up to its penultimate (embedding) layer."""
    return keras.Model(classifier.inputs, classifier.get_layer(EMBEDDING_LAYER).output, name="classifier_embedding")


def features_model(classifier: keras.Model) -> keras.Model:
    """The classifier with two outputs: its embedding and its class probabilities."""
    return keras.Model(classifier.inputs, [classifier.get_layer(EMBEDDING_LAYER).output, classifier.output], name="classifier_features")


def probabilities_from_embeddings(classifier: keras.Model, embeddings: np.ndarray) -> np.ndarray:
    """Class probabilities from embeddings: the head alone, since dropout is off at inference."""
    return keras.ops.convert_to_numpy(classifier.get_layer(PROBABILITIES_LAYER)(embeddings))
