"""The recommendation engine: classify, embed and search a verified serving bundle (no HTTP here).

TensorFlow is imported when an engine is built, so importing this module (as the service's
start-up check does) stays light.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from jewelry_pipeline.bundle import BundleError, ServingBundle
from jewelry_pipeline.images import AUTOENCODER_INPUTS, DecodeLimits, Foreground, autoencoder_inputs, model_input
from jewelry_pipeline.search import ENCODED_SOURCES, EmbeddingIndex, combined_vectors, descriptor_vectors, l2_normalise

logger = logging.getLogger(__name__)

# Index sources whose query vector the bundle can compute from a photo.
SERVABLE_SOURCES = ("classifier", "descriptor", "autoencoder", "combined")


class NotFound(LookupError):
    """An item id or category the catalog does not hold."""


class UnknownItem(NotFound):
    """An item id the catalog does not hold."""


class UnknownCategory(NotFound):
    """A category the bundle's classifier does not know."""


@dataclass(frozen=True)
class Features:
    """One photo's query vector(s) and class probabilities.

    For a category-scoped source the embedding holds one vector per category, side by side.
    """

    embedding: np.ndarray
    probabilities: np.ndarray


class RecommendationEngine:
    """Everything a request needs, built once from a bundle: the model, the index and the catalog."""

    def __init__(self, bundle: ServingBundle, label: str = ""):
        import tensorflow as tf

        from jewelry_pipeline.models.classifier import features_model

        config = bundle.config
        self.class_names = bundle.class_names
        preprocessing = config["preprocessing"]
        self.image_size = int(preprocessing["image_size"])
        self.pad_value = int(preprocessing.get("pad_value", 255))
        self.limits = DecodeLimits.from_config(preprocessing)
        self.source = str(bundle.index.get("source", "classifier"))
        if self.source not in SERVABLE_SOURCES:
            raise BundleError(f"serving bundle '{bundle.path}' indexes '{self.source}' vectors; the service can embed queries only for {SERVABLE_SOURCES}")
        self.category_scoped = bool(bundle.index.get("category_scoped", False))
        self.index = EmbeddingIndex.from_arrays(bundle.index).build()
        self.catalog = bundle.catalog.reset_index(drop=True)
        if not np.array_equal(self.catalog["item_id"].to_numpy().astype(str), self.index.item_ids):
            raise BundleError(f"serving bundle '{bundle.path}' has a catalog that is not in index order")
        self.thumbnails = bundle.thumbnails
        self.position_of = {item_id: i for i, item_id in enumerate(self.index.item_ids)}
        # Public identity only: no file path, store tag or tracking run id leaves the server (the log names them).
        self.version = {"bundle_digest": bundle.digest[:16], "created_at": config["version"].get("created_at"), "index_source": self.source}
        logger.info("Bundle %s is %s (digest %s)", label or bundle.path, config["version"], bundle.digest[:16])
        self._categories = self.catalog["category"].to_numpy().astype(str)
        self._clusters = self.catalog["cluster"].to_numpy().astype(int)
        self._centroids = self._cluster_centroids()
        self._descriptor = self._descriptor_layout(bundle) if self.source == "descriptor" else None
        both = features_model(bundle.classifier, self._descriptor)
        self._forward = tf.function(
            lambda images: both(tf.cast(images, tf.float32), training=False),
            input_signature=[tf.TensorSpec((None, self.image_size, self.image_size, 3), tf.uint8)],
            reduce_retracing=True,
        )
        self._encode = self._encoders(bundle, preprocessing) if self.source in ENCODED_SOURCES else None
        self._autoencoder_weight = self._combined_weight(bundle) if self.source == "combined" else None
        blank = self.features(np.full((1, self.image_size, self.image_size, 3), self.pad_value, np.uint8))  # trace once now
        width = len(self._query_vector(self.split(blank[0]), self.class_names[0]))
        if width != self.index.dimension:
            raise BundleError(f"serving bundle '{bundle.path}' builds {width}-d query vectors for a {self.index.dimension}-d '{self.source}' index")
        logger.info("Engine ready: %d items, %d categories, index %s", len(self.catalog), len(self.class_names), self.index.backend)

    def _encoders(self, bundle: ServingBundle, preprocessing: dict[str, Any]):
        """One traced call of every category's encoder on its input (photo or foreground map), in class-name order."""
        import tensorflow as tf

        missing = [name for name in self.class_names if name not in bundle.encoders]
        if missing:
            raise BundleError(f"serving bundle '{bundle.path}' indexes {self.source} vectors but lacks the encoders of {missing}")
        self._autoencoder_input = str(preprocessing.get("autoencoder_input", "foreground"))
        if self._autoencoder_input not in AUTOENCODER_INPUTS:
            raise BundleError(f"serving bundle '{bundle.path}' names autoencoder input '{self._autoencoder_input}', not one of {AUTOENCODER_INPUTS}")
        try:
            self._foreground = Foreground.from_config(preprocessing)
        except ValueError as exc:
            raise BundleError(f"serving bundle '{bundle.path}' indexes {self.source} vectors but its {exc}") from None
        encoders = [bundle.encoders[name] for name in self.class_names]
        channels = 3 if self._autoencoder_input == "photo" else 1
        return tf.function(
            lambda batch: [encoder(tf.cast(batch, tf.float32), training=False) for encoder in encoders],
            input_signature=[tf.TensorSpec((None, self.image_size, self.image_size, channels), tf.uint8)],
            reduce_retracing=True,
        )

    @staticmethod
    def _descriptor_layout(bundle: ServingBundle) -> tuple[int, int]:
        """The classifier block and grid the `descriptor` index was built with."""
        if "descriptor_layout" not in bundle.index:
            raise BundleError(f"serving bundle '{bundle.path}' indexes descriptor vectors but does not record descriptor_layout")
        block, grid = (int(v) for v in bundle.index["descriptor_layout"])
        return block, grid

    @staticmethod
    def _combined_weight(bundle: ServingBundle) -> float:
        """The autoencoder weight the `combined` index was built with."""
        if "combined_autoencoder_weight" not in bundle.index:
            raise BundleError(f"serving bundle '{bundle.path}' indexes combined vectors but does not record combined_autoencoder_weight")
        return float(bundle.index["combined_autoencoder_weight"])

    def _cluster_centroids(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per category: cluster ids and their unit-length mean vectors in index space."""
        centroids = {}
        for category in np.unique(self._categories):
            rows = (self._categories == category) & (self._clusters >= 0)
            ids = np.unique(self._clusters[rows])
            if len(ids):
                means = np.stack([self.index.vectors[rows & (self._clusters == c)].mean(axis=0) for c in ids])
                centroids[category] = (ids, l2_normalise(means))
        return centroids

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode an upload with the shared safe decoder and letterbox it to the model's input."""
        return model_input(data, self.image_size, self.limits, self.pad_value)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Embeddings and probabilities for a batch of prepared images, side by side in one array."""
        images = np.asarray(images, dtype=np.uint8)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must have shape (n, {', '.join(map(str, expected))}); got {images.shape}")
        outputs = self._forward(images)
        embeddings, probabilities = outputs[0].numpy(), outputs[1]
        if self._descriptor is not None:
            embeddings = descriptor_vectors(outputs[2].numpy())
        if self._encode is not None:
            inputs = autoencoder_inputs(images, np.arange(len(images)), self._autoencoder_input, self._foreground)
            codes = [codes.numpy() for codes in self._encode(inputs)]
            if self._autoencoder_weight is None:
                embeddings = np.hstack([l2_normalise(c) for c in codes])
            else:
                embeddings = np.hstack([combined_vectors(embeddings, c, self._autoencoder_weight) for c in codes])
        return np.hstack([embeddings, probabilities.numpy()]).astype(np.float32)

    def pack(self, image: np.ndarray) -> str:
        """A prepared image as compact text (base64 of its uint8 pixels) for the batched model call."""
        return base64.b64encode(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).decode("ascii")

    def unpack(self, packed: list[str]) -> np.ndarray:
        """`pack` reversed for a batch; anything of the wrong size is a ValueError."""
        side, expected = self.image_size, self.image_size * self.image_size * 3
        images = np.empty((len(packed), side, side, 3), np.uint8)
        for i, text in enumerate(packed):
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise ValueError(f"image {i} is not base64 text") from None
            if len(raw) != expected:
                raise ValueError(f"image {i} has {len(raw)} bytes; expected {expected} ({side}x{side}x3 uint8)")
            images[i] = np.frombuffer(raw, np.uint8).reshape(side, side, 3)
        return images

    def split(self, row: np.ndarray) -> Features:
        """Cut one `features` row back into embedding and probabilities."""
        n_classes = len(self.class_names)
        return Features(np.asarray(row[:-n_classes]), np.asarray(row[-n_classes:]))

    def classify(self, features: Features) -> dict[str, Any]:
        """Predicted category and every class probability."""
        probabilities = {name: round(float(p), 6) for name, p in zip(self.class_names, features.probabilities)}
        return {"category": self.class_names[int(np.argmax(features.probabilities))], "probabilities": probabilities, "model_version": self.version}

    def check_category(self, category: str | None) -> str | None:
        """The category filter itself, or NotFound naming the valid ones."""
        if category and category not in self.class_names:
            raise UnknownCategory(f"unknown category '{category}'; choose one of {self.class_names}")
        return category or None

    def recommend(self, features: Features, k: int, category: str | None = None) -> dict[str, Any]:
        """Predicted category and cluster, and the k most similar catalog items (optionally one category)."""
        category = self.check_category(category)
        result = self.classify(features)
        scope = category or (result["category"] if self.category_scoped else None)
        vector = self._query_vector(features, scope or result["category"])
        allowed = self._categories == scope if scope else None
        positions, scores = self.index.search(vector[None, :], k, allowed=allowed)
        result["cluster"] = self._nearest_cluster(self._query_vector(features, result["category"]), result["category"])
        result["items"] = self._items(positions[0], scores[0])
        return result

    def _query_vector(self, features: Features, category: str) -> np.ndarray:
        """The unit query vector in the index space of `category` (the only space for unscoped sources)."""
        if self._encode is None:
            return l2_normalise(features.embedding[None, :])[0]
        width = len(features.embedding) // len(self.class_names)
        start = self.class_names.index(category) * width
        return l2_normalise(features.embedding[None, start : start + width])[0]

    def recommend_by_id(self, item_id: str, k: int) -> dict[str, Any]:
        """The k items most similar to a catalog item (within its category for scoped sources), excluding itself."""
        position = self.position_of.get(str(item_id))
        if position is None:
            raise UnknownItem(f"unknown item_id '{item_id}'")
        vector = self.index.vectors[position]
        allowed = self._categories == self._categories[position] if self.category_scoped else None
        positions, scores = self.index.search(vector[None, :], min(k + 1, len(self.index.item_ids)), allowed=allowed)
        keep = positions[0] != position
        item = self._items(np.array([position]), np.array([1.0]))[0]
        return {"item": item, "items": self._items(positions[0][keep][:k], scores[0][keep][:k]), "model_version": self.version}

    def _nearest_cluster(self, vector: np.ndarray, category: str) -> int | None:
        """The cluster of `category` whose centroid is closest to the query."""
        if category not in self._centroids:
            return None
        ids, means = self._centroids[category]
        return int(ids[int(np.argmax(means @ vector))])

    def _items(self, positions: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        """Catalog rows as response items."""
        rows = self.catalog.iloc[positions]
        return [
            {"item_id": str(r.item_id), "score": round(float(s), 6), "category": str(r.category), "cluster": int(r.cluster), "thumbnail": f"/items/{r.item_id}/thumbnail"}
            for r, s in zip(rows.itertuples(index=False), scores)
        ]

    def catalog_summary(self) -> dict[str, Any]:
        """Categories with their item counts and cluster sizes."""
        counts = self.catalog.groupby(["category", "cluster"]).size()
        categories = []
        for name in self.class_names:
            clusters = counts.get(name, pd.Series(dtype=int))
            categories.append(
                {
                    "name": name,
                    "count": int(clusters.sum()),
                    "clusters": [{"cluster": int(c), "count": int(n)} for c, n in clusters.items()],
                }
            )
        return {"total": len(self.catalog), "categories": categories, "model_version": self.version}

    def catalog_items(self, category: str | None, cluster: int | None, offset: int, limit: int) -> dict[str, Any]:
        """One page of catalog items, optionally one category and one cluster."""
        chosen = np.ones(len(self.catalog), bool)
        if self.check_category(category):
            chosen &= self._categories == category
        if cluster is not None:
            chosen &= self._clusters == cluster
        positions = np.flatnonzero(chosen)
        page = positions[offset : offset + limit]
        return {"total": int(len(positions)), "offset": offset, "items": self._items(page, np.ones(len(page)))}

    def thumbnail_png(self, item_id: str) -> bytes:
        """The item's stored thumbnail as PNG bytes."""
        position = self.position_of.get(str(item_id))
        if position is None:
            raise UnknownItem(f"unknown item_id '{item_id}'")
        row = int(self.catalog.at[position, "thumbnail_row"])
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.asarray(self.thumbnails[row]), cv2.COLOR_RGB2BGR))
        if not ok:
            raise BundleError(f"thumbnail of '{item_id}' could not be encoded")
        return encoded.tobytes()
