"""The query contract, written once: the embedding sources, what an index records about its vectors,
and how a batch of model inputs becomes unit query vectors (the recommender builds the index with
it, the service queries with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jewelry_pipeline.core.familiarity import FamiliarityReference
from jewelry_pipeline.core.images import Preprocessing, autoencoder_inputs
from jewelry_pipeline.core.search import l2_normalise

# Every source the retrieval evaluation compares; the first three are baselines (pixels, PCA and the
# frozen pretrained backbone's features: ten lines of scikit-learn each).
SOURCES = ("pixels", "pca", "backbone", "autoencoder", "classifier", "descriptor", "combined")
# Sources a bundle's models compute from a photo: the ones an index can serve (`backbone`: the
# frozen pretrained backbone, which the bundle then carries).
MODEL_SOURCES = ("classifier", "descriptor", "autoencoder", "combined", "backbone")
# Sources whose vectors live in per-category autoencoder spaces: built from every category's
# encoder.
ENCODED_SOURCES = ("autoencoder", "combined")
# Sources searched only within one (the given or predicted) category.
CATEGORY_SCOPED_SOURCES = (*ENCODED_SOURCES, "descriptor", "backbone")


def descriptor_vectors(pooled: np.ndarray) -> np.ndarray:
    """`descriptor` vectors from pooled classifier activations: square-rooted, so strong features do
    not dominate."""
    return np.sqrt(np.maximum(np.asarray(pooled, dtype=np.float32), 0))


def combined_vectors(classifier: np.ndarray, autoencoder: np.ndarray, weight: float) -> np.ndarray:
    """`combined` vectors: unit classifier embeddings beside unit latents times `weight`."""
    return np.hstack([l2_normalise(classifier), float(weight) * l2_normalise(autoencoder)])


@dataclass(frozen=True)
class IndexSpec:
    """How an index's vectors were made, stored beside them, so queries are made the same way."""

    source: str
    descriptor_layout: tuple[int, int] | None = None  # (block, grid) of the `descriptor` source
    combined_autoencoder_weight: float | None = None  # weight of the latents in `combined`

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"embedding source '{self.source}' is not one of {SOURCES}")
        if self.source == "descriptor" and self.descriptor_layout is None:
            raise ValueError("a descriptor index must record descriptor_layout")
        if self.source == "combined" and self.combined_autoencoder_weight is None:
            raise ValueError("a combined index must record combined_autoencoder_weight")

    @property
    def category_scoped(self) -> bool:
        """Whether a query searches only its own (given or predicted) category."""
        return self.source in CATEGORY_SCOPED_SOURCES

    @property
    def encoded(self) -> bool:
        """Whether the vectors come from the per-category encoders."""
        return self.source in ENCODED_SOURCES

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The spec as `.npz` entries (no pickles), stored beside the index vectors."""
        arrays = {
            "source": np.array(self.source),
            "category_scoped": np.array(self.category_scoped),
        }
        if self.descriptor_layout is not None:
            arrays["descriptor_layout"] = np.asarray(self.descriptor_layout, dtype=np.int64)
        if self.combined_autoencoder_weight is not None:
            arrays["combined_autoencoder_weight"] = np.array(
                float(self.combined_autoencoder_weight)
            )
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> IndexSpec:
        """`to_arrays` reversed (an index without a source is a `classifier` index, as the first
        bundles were); an inconsistent entry is a ValueError."""
        layout = arrays.get("descriptor_layout")
        weight = arrays.get("combined_autoencoder_weight")
        return cls(
            source=str(arrays.get("source", "classifier")),
            descriptor_layout=None if layout is None else (int(layout[0]), int(layout[1])),
            combined_autoencoder_weight=None if weight is None else float(weight),
        )


@dataclass(frozen=True)
class QueryBatch:
    """Class probabilities and unit query vectors of a batch of photos.

    `vectors` is (n, spaces, d): one space per category for encoded sources (in class-name order),
    else one. `familiarity` (n,) is each photo's `core.familiarity` score, None without a
    reference.
    """

    probabilities: np.ndarray
    vectors: np.ndarray
    familiarity: np.ndarray | None = None

    def vector(self, row: int, space: int) -> np.ndarray:
        """Row `row`'s unit query vector in space `space` (0 for sources with one space)."""
        return self.vectors[row, space if self.vectors.shape[1] > 1 else 0]

    def photos(self) -> list[QueryBatch]:
        """The batch cut into one batch per photo."""
        return [
            QueryBatch(
                self.probabilities[i : i + 1],
                self.vectors[i : i + 1],
                None if self.familiarity is None else self.familiarity[i : i + 1],
            )
            for i in range(len(self.probabilities))
        ]


class QueryEncoder:
    """Model inputs (letterboxed uint8 photos) -> class probabilities and unit query vectors.

    Built from the classifier and, for encoded sources, every category's encoder (for `backbone`,
    the frozen backbone taking store-size photos); with a familiarity reference, each photo's
    familiarity too. TensorFlow loads here.
    """

    def __init__(
        self,
        spec: IndexSpec,
        classifier: Any,
        encoders: dict[str, Any],
        class_names: list[str],
        preprocessing: Preprocessing,
        backbone: Any = None,
        familiarity: FamiliarityReference | None = None,
    ):
        import tensorflow as tf

        from jewelry_pipeline.core.models.classifier import features_model
        from jewelry_pipeline.core.models.data import inference_function

        if spec.source not in MODEL_SOURCES:
            raise ValueError(
                f"'{spec.source}' vectors are not made by the models; choose one of {MODEL_SOURCES}"
            )
        self.spec, self.class_names, self.preprocessing = spec, list(class_names), preprocessing
        self.familiarity = familiarity
        side = preprocessing.image_size
        both = features_model(
            classifier, spec.descriptor_layout if spec.source == "descriptor" else None, pooled=True
        )
        photos = [tf.TensorSpec((None, side, side, 3), tf.uint8)]
        self._forward = inference_function(both, photos)
        self._backbone = None
        if spec.source == "backbone":
            if backbone is None:
                raise ValueError("'backbone' vectors need the frozen backbone model")
            self._backbone = inference_function(backbone, photos)
        self._encoders = None
        if spec.encoded:
            missing = [name for name in self.class_names if name not in encoders]
            if missing:
                raise ValueError(f"'{spec.source}' vectors need the encoders of {missing}")
            if preprocessing.foreground is None and preprocessing.autoencoder_input == "foreground":
                raise ValueError("'foreground' autoencoder input needs preprocessing.foreground")
            ordered = [encoders[name] for name in self.class_names]
            channels = 3 if preprocessing.autoencoder_input == "photo" else 1
            signature = [tf.TensorSpec((None, side, side, channels), tf.uint8)]
            self._encoders = [inference_function(encoder, signature) for encoder in ordered]

    @classmethod
    def of_bundle(cls, bundle: Any) -> QueryEncoder:
        """The encoder of a serving bundle's models, for the vectors its index holds."""
        return cls(
            IndexSpec.from_arrays(bundle.index),
            bundle.classifier,
            bundle.encoders,
            bundle.class_names,
            bundle.preprocessing,
            bundle.backbone,
            None
            if bundle.familiarity is None
            else FamiliarityReference.from_arrays(bundle.familiarity),
        )

    def encode(
        self, images: np.ndarray, only: str | None = None, familiar: bool = True
    ) -> QueryBatch:
        """Probabilities and query vectors of a batch; `only` computes one category's space, and
        `familiar=False` skips the familiarity scores (catalog use)."""
        images = np.asarray(images, dtype=np.uint8)
        side = self.preprocessing.image_size
        if images.ndim != 4 or images.shape[1:] != (side, side, 3):
            raise ValueError(f"images must have shape (n, {side}, {side}, 3); got {images.shape}")
        outputs = self._forward(images)
        embeddings, probabilities = outputs[0].numpy(), outputs[1].numpy()
        familiarity = (
            self.familiarity.score(outputs[-1].numpy())
            if familiar and self.familiarity is not None
            else None
        )
        if self.spec.source == "classifier":
            return QueryBatch(probabilities, l2_normalise(embeddings)[:, None, :], familiarity)
        if self.spec.source == "descriptor":
            vectors = l2_normalise(descriptor_vectors(outputs[2].numpy()))
            return QueryBatch(probabilities, vectors[:, None, :], familiarity)
        if self.spec.source == "backbone":
            vectors = l2_normalise(self._backbone(images).numpy())
            return QueryBatch(probabilities, vectors[:, None, :], familiarity)
        inputs = autoencoder_inputs(
            images,
            np.arange(len(images)),
            self.preprocessing.autoencoder_input,
            self.preprocessing.foreground,
        )
        names = self.class_names if only is None else [only]
        spaces = []
        for name in names:
            codes = self._encoders[self.class_names.index(name)](inputs).numpy()
            if self.spec.source == "combined":
                codes = combined_vectors(embeddings, codes, self.spec.combined_autoencoder_weight)
            spaces.append(l2_normalise(codes))
        return QueryBatch(probabilities, np.stack(spaces, axis=1), familiarity)

    def encode_rows(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        only: str | None = None,
        batch_size: int = 256,
        familiar: bool = True,
    ) -> QueryBatch:
        """`encode` of the given store rows, in chunks of `batch_size` (bounded memory), joined."""
        rows = np.asarray(rows)
        if len(rows) == 0:
            raise ValueError("no photos to encode")
        batches = [
            self.encode(np.asarray(images[rows[start : start + batch_size]]), only, familiar)
            for start in range(0, len(rows), batch_size)
        ]
        return QueryBatch(
            np.concatenate([batch.probabilities for batch in batches]),
            np.concatenate([batch.vectors for batch in batches]),
            None
            if batches[0].familiarity is None
            else np.concatenate([batch.familiarity for batch in batches]),
        )

    def classifier_outputs(
        self, images: np.ndarray, rows: np.ndarray, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The classifier's embeddings (penultimate layer), class probabilities and pooled features
        (what its embedding layer reads: the familiarity space) of store `rows`, in chunks of
        `batch_size`."""
        rows = np.asarray(rows)
        embeddings, probabilities, pooled = [], [], []
        for start in range(0, len(rows), batch_size):
            batch = np.asarray(images[rows[start : start + batch_size]], dtype=np.uint8)
            outputs = self._forward(batch)
            embeddings.append(outputs[0].numpy())
            probabilities.append(outputs[1].numpy())
            pooled.append(outputs[-1].numpy())
        if not embeddings:
            raise ValueError("no photos to encode")
        return np.concatenate(embeddings), np.concatenate(probabilities), np.concatenate(pooled)

    def catalog_vectors(
        self, images: np.ndarray, rows: np.ndarray, categories: np.ndarray, batch_size: int = 256
    ) -> np.ndarray:
        """The index rows: each catalog photo (store row), a unit vector in its category's space."""
        categories = np.asarray(categories).astype(str)
        if len(categories) == 0:
            raise ValueError("an index needs at least one catalog photo")
        vectors = None
        for name in np.unique(categories):
            members = np.flatnonzero(categories == name)
            only = name if self.spec.encoded else None
            batch = self.encode_rows(
                images, np.asarray(rows)[members], only, batch_size, familiar=False
            )
            if vectors is None:
                vectors = np.zeros((len(categories), batch.vectors.shape[2]), np.float32)
            vectors[members] = batch.vectors[:, 0]
        return vectors
