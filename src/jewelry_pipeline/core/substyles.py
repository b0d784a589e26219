"""Sub-styles as a merchandiser sees and reshapes them: one category's partition of its index
vectors, its names, and the edits (rename, merge, split, move, set k) applied to a catalog.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.search import ClusterCentroids

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 40  # characters of a sub-style name
SPLIT_PARTS = (2, 4)  # a sub-style splits into this many, at least and at most
PREVIEW_K = (2, 12)  # the k a merchandiser may preview or set, at least and at most
SILHOUETTE_SAMPLE = 2_000  # items the criterion scores at most (exact silhouette is quadratic)
PREVIEW_SEED = 0  # KMeans seed of a preview: the same k shows the same sub-styles every time
STRIP_ITEMS = (8, 4)  # a sub-style's strip: its most typical items, then its edge cases
EDIT_OPERATIONS = ("rename", "merge", "split", "move", "set_k")


class EditRefused(ValueError):
    """An edit that cannot apply (an unknown sub-style or item, a bad name or k): the message says
    why."""


@dataclass(frozen=True)
class Partition:
    """One category's sub-styles: a cluster id per item (in catalog order) and the centroids."""

    clusters: np.ndarray
    centroids: dict[int, np.ndarray]

    @classmethod
    def of(cls, vectors: np.ndarray, clusters: np.ndarray) -> Partition:
        """The partition `clusters` of unit `vectors`, with each cluster's unit mean vector."""
        clusters = np.asarray(clusters).astype(int)
        one_category = np.zeros(len(clusters), str)  # the centroids the engine serves, for one
        found = ClusterCentroids.of(vectors, one_category, clusters).by_category.get("")
        ids, means = found if found is not None else ((), ())
        return cls(clusters, {int(c): mean for c, mean in zip(ids, means)})

    def sizes(self) -> dict[int, int]:
        """Items per sub-style."""
        ids, counts = np.unique(self.clusters[self.clusters >= 0], return_counts=True)
        return {int(c): int(n) for c, n in zip(ids, counts)}

    def typical_and_edge(
        self, vectors: np.ndarray, cluster: int, typical: int, edge: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the sub-style's `typical` items nearest its centroid (nearest first) and of
        its `edge` items farthest from it (farthest first), never the same item twice."""
        members = np.flatnonzero(self.clusters == cluster)
        if cluster not in self.centroids or not len(members):
            raise EditRefused(f"no sub-style {cluster} in this category")
        similarity = np.asarray(vectors, np.float32)[members] @ self.centroids[cluster]
        order = members[np.argsort(-similarity, kind="stable")]
        nearest = order[:typical]
        farthest = order[::-1][: max(0, min(edge, len(order) - len(nearest)))]
        return nearest, farthest


def check_preview_k(k: Any, items: int) -> int:
    """`k` as a category of `items` items may have it: `PREVIEW_K`, at most one per item (else
    `EditRefused`)."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise EditRefused("k is a whole number")
    highest = min(PREVIEW_K[1], items)
    if not PREVIEW_K[0] <= k <= highest:
        raise EditRefused(f"k is {PREVIEW_K[0]} to {highest} for a category of {items} items")
    return k


def kmeans(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """KMeans labels of unit `vectors` in `k` sub-styles, numbered by size (largest 0): the same
    vectors, k and seed give the same labels."""
    from sklearn.cluster import KMeans

    vectors = np.asarray(vectors, np.float32)
    if not 1 <= k <= len(vectors):
        raise EditRefused(f"k={k} needs between 1 and {len(vectors)} sub-styles for these items")
    if k == 1:
        return np.zeros(len(vectors), int)
    labels = KMeans(k, n_init=1, random_state=seed).fit_predict(vectors)  # one k-means++ start
    sizes = np.bincount(labels, minlength=k)
    by_size = np.argsort(-sizes, kind="stable")
    return np.argsort(by_size)[labels]


def criterion_by_k(vectors: np.ndarray, k_values: Iterable[int], seed: int) -> dict[int, float]:
    """The label-free criterion (silhouette, cosine) of each k's KMeans partition, scored on at
    most `SILHOUETTE_SAMPLE` items; a k the items cannot fill is left out."""
    from sklearn.metrics import silhouette_score

    vectors = np.asarray(vectors, np.float32)
    scores = {}
    for k in k_values:
        if not 2 <= k < len(vectors):
            continue
        labels = kmeans(vectors, k, seed)
        sample = min(SILHOUETTE_SAMPLE, len(vectors))
        scores[int(k)] = float(
            silhouette_score(
                vectors, labels, metric="cosine", sample_size=sample, random_state=seed
            )
        )
    return scores


def agreement_by_k(
    candidates: dict[int, np.ndarray], views: Iterable[np.ndarray]
) -> dict[int, float]:
    """Each candidate partition's mean adjusted mutual information with every partition of other
    views of the same items (Strehl and Ghosh's cluster-ensemble criterion, adjusted for chance so
    that more clusters earn nothing by chance): the k whose sub-styles the other views also draw
    scores highest. Empty without another view."""
    from sklearn.metrics import adjusted_mutual_info_score

    views = list(views)
    if not views:
        return {}
    return {
        int(k): float(np.mean([adjusted_mutual_info_score(view, labels) for view in views]))
        for k, labels in candidates.items()
    }


def clean_name(name: Any) -> str:
    """A sub-style name as stored: trimmed text of 1 to `MAX_NAME_LENGTH` characters, no control
    characters (else `EditRefused`)."""
    if not isinstance(name, str):
        raise EditRefused("a sub-style name is text")
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME_LENGTH:
        raise EditRefused(f"a sub-style name has 1 to {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise EditRefused("a sub-style name holds no control or unassigned characters")
    return name


def _int(edit: dict[str, Any], field: str) -> int:
    value = edit.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditRefused(f"'{field}' is a whole number")
    return value


@dataclass
class SubstyleCatalog:
    """A catalog's sub-styles being edited: the catalog's `cluster` column, the index vectors in
    catalog order, and the names ({category: {cluster: name}})."""

    catalog: pd.DataFrame
    vectors: np.ndarray
    names: dict[str, dict[int, str]]
    seed: int

    def apply(self, edits: list[dict[str, Any]]) -> SubstyleCatalog:
        """A new `SubstyleCatalog` with `edits` applied in order; this one is left as it was. Any
        edit refused refuses the whole set (`EditRefused` naming the edit)."""
        edited = SubstyleCatalog(
            self.catalog.copy(),
            self.vectors,
            {category: dict(names) for category, names in self.names.items()},
            self.seed,
        )
        for number, edit in enumerate(edits, 1):
            try:
                edited._apply_one(edit)
            except EditRefused as exc:
                raise EditRefused(f"edit {number} ({edit.get('op', '?')}): {exc}") from None
        return edited

    def _rows(self, category: Any) -> np.ndarray:
        if not isinstance(category, str) or category not in set(self.catalog["category"]):
            raise EditRefused(f"no category {category!r} in the catalog")
        return np.flatnonzero(self.catalog["category"].to_numpy() == category)

    def _cluster(self, rows: np.ndarray, edit: dict[str, Any], field: str = "cluster") -> int:
        cluster = _int(edit, field)
        if cluster < 0 or not (self.catalog["cluster"].to_numpy()[rows] == cluster).any():
            raise EditRefused(f"no sub-style {cluster} in '{edit['category']}'")
        return cluster

    def _apply_one(self, edit: dict[str, Any]) -> None:
        if not isinstance(edit, dict) or edit.get("op") not in EDIT_OPERATIONS:
            raise EditRefused(f"'op' is one of {', '.join(EDIT_OPERATIONS)}")
        category = edit.get("category")
        rows = self._rows(category)
        names = self.names.setdefault(category, {})
        clusters = self.catalog["cluster"].to_numpy().astype(int).copy()
        op = edit["op"]
        if op == "rename":
            names[self._cluster(rows, edit)] = clean_name(edit.get("name"))
            return
        if op == "merge":
            into, merged = self._cluster(rows, edit, "into"), self._cluster(rows, edit, "cluster")
            if into == merged:
                raise EditRefused("a sub-style is merged into another one")
            clusters[rows[clusters[rows] == merged]] = into
            names.pop(merged, None)
        elif op == "split":
            cluster, parts = self._cluster(rows, edit), _int(edit, "parts")
            members = rows[clusters[rows] == cluster]
            if not SPLIT_PARTS[0] <= parts <= min(SPLIT_PARTS[1], len(members)):
                raise EditRefused(
                    f"sub-style {cluster} ({len(members)} items) splits into "
                    f"{SPLIT_PARTS[0]} to {min(SPLIT_PARTS[1], len(members))} parts"
                )
            labels = kmeans(self.vectors[members], parts, self.seed)
            fresh = int(clusters[rows].max()) + np.arange(1, parts)  # part 0 keeps the id
            clusters[members] = np.r_[cluster, fresh][labels]
        elif op == "move":
            item, to = edit.get("item_id"), self._cluster(rows, edit, "to")
            found = rows[self.catalog["item_id"].astype(str).to_numpy()[rows] == str(item)]
            if not len(found):
                raise EditRefused(f"no item {item!r} in '{category}'")
            clusters[found] = to
        else:  # set_k
            k = check_preview_k(edit.get("k"), len(rows))
            clusters[rows] = kmeans(self.vectors[rows], k, self.seed)
            names.clear()
        self.catalog["cluster"] = clusters
        kept = set(clusters[rows].tolist())
        for gone in [c for c in names if c not in kept]:
            del names[gone]


def names_to_config(names: dict[str, dict[int, str]]) -> dict[str, dict[str, str]]:
    """Sub-style names as a bundle's config holds them (JSON: cluster ids as text)."""
    return {
        category: {str(cluster): name for cluster, name in sorted(by_cluster.items())}
        for category, by_cluster in sorted(names.items())
        if by_cluster
    }


def names_from_config(raw: Any) -> dict[str, dict[int, str]]:
    """A bundle config's sub-style names ({category: {cluster: name}}); a bad entry is a
    `ValueError` naming it (the bundle is refused, not served with a wrong name)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("substyles.names is a mapping of category to {cluster: name}")
    names = {}
    for category, by_cluster in raw.items():
        if not isinstance(by_cluster, dict):
            raise ValueError(f"substyles.names.{category} is a mapping of cluster to name")
        try:
            names[str(category)] = {int(c): clean_name(name) for c, name in by_cluster.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"substyles.names.{category}: {exc}") from None
    return names
