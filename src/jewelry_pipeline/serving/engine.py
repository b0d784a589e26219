"""The recommendation engine: classify, embed and search a verified serving bundle (no HTTP here).

TensorFlow is imported when an engine is built, so importing this module (as the service's
start-up check does) stays light.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.answers import answer_query
from jewelry_pipeline.core.bundle import BundleError, ServingBundle
from jewelry_pipeline.core.query import IndexSpec, QueryBatch, QueryEncoder
from jewelry_pipeline.core.search import ClusterCentroids, EmbeddingIndex
from jewelry_pipeline.core.substyles import (
    PREVIEW_SEED,
    STRIP_ITEMS,
    Partition,
    check_preview_k,
    kmeans,
    names_from_config,
)
from jewelry_pipeline.core.thumbnails import thumbnail_url
from jewelry_pipeline.serving.json_answers import quoted

logger = logging.getLogger(__name__)


class NotFound(LookupError):
    """An item id or category the catalog does not hold."""


class UnknownItem(NotFound):
    """An item id the catalog does not hold."""


class UnknownCategory(NotFound):
    """A category the bundle's classifier does not know."""


class RecommendationEngine:
    """Everything a request needs, built once from a bundle: the model, the index and the
    catalog."""

    def __init__(self, bundle: ServingBundle, label: str = ""):
        self.class_names = bundle.class_names
        try:
            self.preprocessing = bundle.preprocessing
            self.spec = IndexSpec.from_arrays(bundle.index)
            self.answers = bundle.answers
            self.substyle_names = names_from_config((bundle.substyles or {}).get("names"))
            # The label-free criterion by k, per category, when the run stored it.
            self.substyle_criterion = (bundle.substyles or {}).get("criterion")
        except (KeyError, ValueError) as exc:
            raise BundleError(
                f"serving bundle '{bundle.path}' has an unusable config or index: {exc}"
            ) from None
        self.limits = self.preprocessing.limits
        self.index = EmbeddingIndex.from_arrays(bundle.index).build()
        self.catalog = bundle.catalog.reset_index(drop=True)
        if not np.array_equal(self.catalog["item_id"].to_numpy().astype(str), self.index.item_ids):
            raise BundleError(
                f"serving bundle '{bundle.path}' has a catalog that is not in index order"
            )
        self._categories = self.catalog["category"].to_numpy().astype(str)
        # The category filter is the index's partition: labelled here unless the index was built
        # per category (IVF-PQ), in which case its labels must be the catalog's.
        if self.index.partitions is None:
            self.index.with_partitions(self._categories)
        elif not np.array_equal(self.index.partitions.labels(), self._categories):
            raise BundleError(
                f"serving bundle '{bundle.path}' has index partitions that are not its categories"
            )
        self.thumbnails = bundle.thumbnails
        self.position_of = {item_id: i for i, item_id in enumerate(self.index.item_ids)}
        # Public identity only: no file path, store tag or tracking run id leaves the server (the
        # log names them).
        self.version = {
            "bundle_digest": bundle.digest[:16],
            "created_at": bundle.version.get("created_at"),
            "index_source": self.spec.source,
        }
        logger.info(
            "Bundle %s is %s (digest %s)",
            label or bundle.path,
            bundle.version,
            bundle.digest[:16],
        )
        self.title = bundle.title
        # What a person reads for an item: the catalog's title when it has one, else the file name.
        names = self.catalog["path"].astype(str).map(lambda p: PurePosixPath(p).name)
        if "title" in self.catalog:
            names = self.catalog["title"].fillna("").astype(str).where(lambda t: t != "", names)
        self._titles = names.to_numpy()
        self._clusters = self.catalog["cluster"].to_numpy().astype(int)
        self._centroids = ClusterCentroids.of(self.index.vectors, self._categories, self._clusters)
        try:
            self.encoder = QueryEncoder.of_bundle(bundle)
        except (ValueError, KeyError) as exc:
            raise BundleError(
                f"serving bundle '{bundle.path}' cannot embed queries: {exc}"
            ) from None
        side = self.preprocessing.image_size
        blank = self.features(
            np.full((1, side, side, 3), self.preprocessing.pad_value, np.uint8)
        )  # trace once now
        if blank.vectors.shape[2] != self.index.dimension:
            raise BundleError(
                f"serving bundle '{bundle.path}' builds {blank.vectors.shape[2]}-d query vectors "
                f"for a {self.index.dimension}-d '{self.spec.source}' index"
            )
        logger.info(
            "Engine ready: %d items, %d categories, index %s",
            len(self.catalog),
            len(self.class_names),
            self.index.backend,
        )

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode an upload with the shared safe decoder and letterbox it to the model's input."""
        return self.preprocessing.prepare(data)

    def features(self, images: np.ndarray) -> QueryBatch:
        """Class probabilities and query vectors of a batch of prepared images (the batched model
        call)."""
        return self.encoder.encode(images)

    def classify(self, query: QueryBatch) -> dict[str, Any]:
        """Predicted category and every class probability of a one-photo query."""
        scores = query.probabilities[0]
        probabilities = {name: round(float(p), 6) for name, p in zip(self.class_names, scores)}
        return {
            "category": self.class_names[int(np.argmax(scores))],
            "probabilities": probabilities,
            "model_version": self.version,
        }

    def check_category(self, category: str | None) -> str | None:
        """The category filter itself, or NotFound naming the valid ones."""
        if category and category not in self.class_names:
            raise UnknownCategory(
                f"unknown category {quoted(category)}; choose one of {self.class_names}"
            )
        return category or None

    def recommend(self, query: QueryBatch, k: int, category: str | None = None) -> dict[str, Any]:
        """Predicted category and cluster, and the k most similar catalog items (optionally one
        category).

        `category` is checked by the caller (`check_category`) before the model runs.
        """
        result = self.classify(query)
        answer = answer_query(
            query,
            0,
            self.index,
            self._categories,
            self.class_names,
            self.spec,
            self.answers,
            k,
            category,
        )
        result["confidence"] = round(answer.confidence, 6)
        result["category_uncertain"] = answer.uncertain
        result["close_match"] = answer.close_match
        own = query.vector(0, answer.predicted)
        result["cluster"] = self._centroids.nearest(own, result["category"])
        result["cluster_name"] = self.cluster_name(result["category"], result["cluster"])
        # No close match: nothing in the catalog resembles the photo, so no item is forced on it.
        chosen = slice(None) if answer.close_match else slice(0)
        result["items"] = self._items(answer.positions[chosen], answer.scores[chosen])
        return result

    def recommend_by_id(self, item_id: str, k: int) -> dict[str, Any]:
        """The k items most similar to a catalog item (within its category for scoped sources),
        excluding itself."""
        position = self.position_of.get(str(item_id))
        if position is None:
            raise UnknownItem(f"unknown item_id {quoted(item_id)}")
        vector = self.index.rows([position])[0]
        category = self._categories[position] if self.spec.category_scoped else None
        positions, scores = self.index.search(
            vector[None, :], min(k + 1, len(self.index.item_ids)), partition=category
        )
        keep = positions[0] != position
        item = self._items(np.array([position]), np.array([1.0]))[0]
        return {
            "item": item,
            "items": self._items(positions[0][keep][:k], scores[0][keep][:k]),
            "model_version": self.version,
        }

    def _items(self, positions: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        """Catalog rows as response items."""
        rows = self.catalog.iloc[positions]
        return [
            {
                "item_id": str(r.item_id),
                "title": self._titles[position],
                "score": round(float(s), 6),
                "category": str(r.category),
                "cluster": int(r.cluster),
                "cluster_name": self.cluster_name(str(r.category), int(r.cluster)),
                "thumbnail": thumbnail_url(str(r.item_id)),
            }
            for position, r, s in zip(positions, rows.itertuples(index=False), scores)
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
                    "clusters": [
                        {"cluster": c, "name": self.cluster_name(name, c), "count": int(n)}
                        for c, n in ((int(c), n) for c, n in clusters.items())
                    ],
                }
            )
        return {
            "title": self.title,
            "total": len(self.catalog),
            "categories": categories,
            "model_version": self.version,
        }

    def cluster_name(self, category: str, cluster: int | None) -> str | None:
        """The name the shop gave a sub-style (None: unnamed, or no sub-style)."""
        return self.substyle_names.get(category, {}).get(cluster) if cluster is not None else None

    def substyles(self, category: str, k: int | None = None) -> dict[str, Any]:
        """One category's sub-styles as served, or with `k` a preview of k new ones (KMeans on the
        stored vectors, not saved): each one's id, name, size, most typical items and edge cases
        (scored by cosine to its centroid), and the criterion by k when the bundle has it."""
        if not self.check_category(category):
            raise UnknownCategory(f"a category is needed; choose one of {self.class_names}")
        positions = np.flatnonzero(self._categories == category)
        vectors = self.index.rows(positions)
        if k is None:
            labels, names = self._clusters[positions], self.substyle_names.get(category, {})
        else:
            labels = kmeans(vectors, check_preview_k(k, len(positions)), PREVIEW_SEED)
            names = {}
        partition = Partition.of(vectors, labels)
        groups = []
        for cluster, count in partition.sizes().items():
            typical, edge = partition.typical_and_edge(vectors, cluster, *STRIP_ITEMS)
            strip = {}
            for name, chosen in (("typical", typical), ("edge", edge)):
                scores = vectors[chosen] @ partition.centroids[cluster]
                strip[name] = self._items(positions[chosen], scores)
            groups.append({"cluster": cluster, "name": names.get(cluster), "count": count, **strip})
        criterion = (self.substyle_criterion or {}).get(category)
        return {
            "category": category,
            "preview": k is not None,
            "k": len(groups),
            "substyles": groups,
            "criterion": criterion,
            "model_version": self.version,
        }

    def catalog_items(
        self, category: str | None, cluster: int | None, offset: int, limit: int
    ) -> dict[str, Any]:
        """One page of catalog items, optionally one category and one cluster."""
        chosen = np.ones(len(self.catalog), bool)
        if self.check_category(category):
            chosen &= self._categories == category
        if cluster is not None:
            chosen &= self._clusters == cluster
        positions = np.flatnonzero(chosen)
        page = positions[offset : offset + limit]
        return {
            "total": int(len(positions)),
            "offset": offset,
            "items": self._items(page, np.ones(len(page))),
        }

    def thumbnail_jpeg(self, item_id: str) -> bytes:
        """The item's stored thumbnail (JPEG bytes)."""
        position = self.position_of.get(str(item_id))
        if position is None:
            raise UnknownItem(f"unknown item_id {quoted(item_id)}")
        return self.thumbnails.jpeg(int(self.catalog.at[position, "thumbnail_row"]))
