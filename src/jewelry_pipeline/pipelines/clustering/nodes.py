"""Sub-style clustering per category: KMeans on pixels, PCA+KMeans, KMeans on frozen pretrained
features, KMeans on autoencoder latents and KMeans on the embedding the index serves.

The baselines run on the plain photos, scaled as anyone would in a few lines of scikit-learn (and
on the frozen pretrained backbone's features, when it is on); `ae_kmeans` runs on the latents of
the autoencoders; `served_kmeans` on the served embedding, so a catalog cluster holds the items
"similar items" returns and a new photo's cluster (nearest centroid in index space) agrees. Each
method's k is label-free: the baselines take the best silhouette in their own space, as a few lines
of scikit-learn would; the served clusters take the k whose partition agrees most with every
partition of the other views (mean AMI), which a flat silhouette cannot tell apart. Each
partition is scored in its own space, in one common space (the classifier embedding, shared by all
methods so the figures compare), and against sub-style labels when a ground truth exists.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from jewelry_pipeline.core.hints import Figure  # matplotlib loads inside the node that draws
from jewelry_pipeline.core.images import downsized_pixels
from jewelry_pipeline.core.lookup import aligned, substyles_of
from jewelry_pipeline.core.metrics import single_step
from jewelry_pipeline.core.query import combined_vectors
from jewelry_pipeline.core.search import l2_normalise
from jewelry_pipeline.core.substyles import agreement_by_k

logger = logging.getLogger(__name__)

METHODS = ("kmeans_pixels", "pca_kmeans", "backbone_kmeans", "ae_kmeans", "served_kmeans")


class KPartition(NamedTuple):
    """One KMeans partition of a category and its silhouette in the space it was fitted in."""

    labels: np.ndarray
    silhouette: float


def _kmeans_by_k(features: np.ndarray, k_values: list[int], seed: int) -> dict[int, KPartition]:
    """KMeans for every k the items can fill, each partition with its silhouette in this space."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    partitions = {}
    for k in k_values:
        if k >= len(features):
            break
        labels = KMeans(k, n_init=10, random_state=seed).fit_predict(features)
        partitions[k] = KPartition(labels, float(silhouette_score(features, labels)))
    return partitions


def _choose_k(
    partitions: dict[int, KPartition], views: list[np.ndarray], items: int
) -> tuple[np.ndarray, int, dict[int, float]]:
    """The partition whose k the label-free criterion picks, and the criterion by k: agreement
    with the other `views` when there are any (the served clusters), else the partition's own
    silhouette (the baselines). No k the items can fill: one cluster."""
    if not partitions:
        return np.zeros(items, int), 1, {}
    by_k = agreement_by_k({k: part.labels for k, part in partitions.items()}, views) or {
        k: part.silhouette for k, part in partitions.items()
    }
    k = max(by_k, key=by_k.get)
    return partitions[k].labels, k, by_k


def _served_space(
    source: str,
    item_ids: np.ndarray,
    spaces: dict[str, np.ndarray],
    classifier_embeddings: dict[str, np.ndarray],
    combined_weight: float,
) -> np.ndarray:
    """This category's items in the served embedding, unit length, made from this category's own
    inputs as the recommender makes them (`pixels` and `pca`: the baselines' own spaces).

    Built here rather than read from the recommender's sources, which hold every category's latents:
    the per-category namespace stays uninterrupted."""
    if source == "combined":
        classifier = aligned(item_ids, classifier_embeddings, "embeddings")
        return l2_normalise(combined_vectors(classifier, spaces["ae_kmeans"], combined_weight))
    if source in ("classifier", "descriptor"):
        key = "embeddings" if source == "classifier" else "descriptors"
        return l2_normalise(aligned(item_ids, classifier_embeddings, key).astype(np.float32))
    by_source = {
        "autoencoder": "ae_kmeans",
        "backbone": "backbone_kmeans",
        "pixels": "kmeans_pixels",
        "pca": "pca_kmeans",
    }
    if by_source.get(source) not in spaces:
        raise ValueError(f"no '{source}' vectors to cluster on (served source)")
    return spaces[by_source[source]]


def _category_spaces(
    images: np.ndarray,
    category_manifest: pd.DataFrame,
    latents: dict[str, np.ndarray],
    classifier_embeddings: dict[str, np.ndarray],
    backbone_features: dict[str, np.ndarray],
    source: str,
    clustering: dict[str, Any],
    combined_weight: float,
) -> dict[str, np.ndarray]:
    """Each method's vectors of this category's items, in `METHODS` order (without frozen features
    when the backbone is off)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rows = category_manifest["store_index"].to_numpy()
    item_ids = category_manifest["item_id"].to_numpy().astype(str)
    pixels = downsized_pixels(images, rows, int(clustering["pixel_size"]))
    components = min(int(clustering["pca_components"]), len(rows) - 1, pixels.shape[1])
    spaces = {
        "kmeans_pixels": pixels,
        "pca_kmeans": PCA(components, random_state=int(clustering["seed"])).fit_transform(
            StandardScaler().fit_transform(pixels)
        ),
        # Unit-length codes: the cosine geometry the contrastive loss trains and retrieval searches.
        "ae_kmeans": l2_normalise(aligned(item_ids, latents, "latents")),
    }
    if len(backbone_features["features"]):
        spaces["backbone_kmeans"] = l2_normalise(aligned(item_ids, backbone_features, "features"))
    spaces["served_kmeans"] = _served_space(
        source, item_ids, spaces, classifier_embeddings, combined_weight
    )
    return {method: spaces[method] for method in METHODS if method in spaces}


def cluster_category(
    images: np.ndarray,
    category_manifest: pd.DataFrame,
    latents: dict[str, np.ndarray],
    classifier_embeddings: dict[str, np.ndarray],
    backbone_features: dict[str, np.ndarray],
    served_source: dict[str, str],
    substyle_labels: pd.DataFrame,
    clustering: dict[str, Any],
    recommender: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster one category every way; return assignments and one metrics row per method."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    seed = int(clustering["seed"])
    k_values = list(range(int(clustering["k_min"]), int(clustering["k_max"]) + 1))
    item_ids = category_manifest["item_id"].to_numpy().astype(str)
    category = str(category_manifest["category"].iloc[0])
    spaces = _category_spaces(
        images,
        category_manifest,
        latents,
        classifier_embeddings,
        backbone_features,
        served_source["source"],
        clustering,
        float(recommender["combined_autoencoder_weight"]),
    )
    common = l2_normalise(aligned(item_ids, classifier_embeddings, "embeddings"))
    truth = substyles_of(category_manifest, substyle_labels)
    fitted = {}  # served_kmeans on another method's own space (autoencoder, ...) reuses its fit
    for features in spaces.values():
        if id(features) not in fitted:
            fitted[id(features)] = _kmeans_by_k(features, k_values, seed)
    assignments, metric_rows = [], []
    for method, features in spaces.items():
        partitions = fitted[id(features)]
        views = []
        if method == "served_kmeans":  # k: the one the other views of these items agree with most
            for other, other_partitions in fitted.items():
                if other != id(features):
                    views += [part.labels for part in other_partitions.values()]
        labels, k, by_k = _choose_k(partitions, views, len(features))
        row = {"category": category, "method": method, "k": k}
        row["silhouette"] = partitions[k].silhouette if k in partitions else -1.0
        row["silhouette_by_k"] = json.dumps(
            {str(n): round(part.silhouette, 4) for n, part in partitions.items()}
        )
        if views and k in by_k:
            row["agreement"] = by_k[k]
            row["agreement_by_k"] = json.dumps({str(n): round(v, 4) for n, v in by_k.items()})
        if method == "served_kmeans":
            row["space"] = served_source["source"]
        row["silhouette_common"] = (
            float(silhouette_score(common, labels)) if k > 1 else float("nan")
        )
        if truth is not None:
            row["ari"] = float(adjusted_rand_score(truth, labels))
            row["nmi"] = float(normalized_mutual_info_score(truth, labels))
        metric_rows.append(row)
        assignments.append(
            pd.DataFrame(
                {"item_id": item_ids, "category": category, "method": method, "cluster": labels}
            )
        )
        logger.info(
            "clustering %s/%s: %s",
            category,
            method,
            {
                key: round(v, 3) if isinstance(v, float) else v
                for key, v in row.items()
                if key not in ("category", "method")
            },
        )
    if truth is None:
        logger.info("No sub-style ground truth for '%s': ARI and NMI are not computed", category)
    return pd.concat(assignments, ignore_index=True), pd.DataFrame(metric_rows)


def clustering_mlflow_metrics(metric_rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """One category's figures named `<method>.<metric>` for MLflow (the catalog adds the prefix)."""
    values = {}
    for row in metric_rows.to_dict("records"):
        for metric in ("silhouette", "silhouette_common", "agreement", "ari", "nmi", "k"):
            if metric in row and pd.notna(row[metric]):
                values[f"{row['method']}.{metric}"] = row[metric]
    return single_step(values)


def plot_cluster_montage(
    images: np.ndarray,
    category_manifest: pd.DataFrame,
    assignments: pd.DataFrame,
    clustering: dict[str, Any],
) -> Figure:
    """Sample images of each autoencoder cluster, one row per cluster."""
    from jewelry_pipeline.core.plots import gallery_figure

    per_cluster = int(clustering["montage_per_cluster"])
    chosen = assignments[assignments["method"] == clustering["montage_method"]].merge(
        category_manifest[["item_id", "store_index"]], on="item_id"
    )
    tiles, captions = [], []
    for cluster, group in chosen.groupby("cluster"):
        sample = group.sample(min(per_cluster, len(group)), random_state=int(clustering["seed"]))
        for store_index in sample["store_index"]:
            tiles.append(images[store_index])
            captions.append(f"cluster {cluster}")
        tiles += [np.full_like(images[0], 255)] * (per_cluster - len(sample))
        captions += [""] * (per_cluster - len(sample))
    category = category_manifest["category"].iloc[0]
    return gallery_figure(
        tiles, captions, f"{category}: {clustering['montage_method']} clusters", columns=per_cluster
    )


def combine_clustering(
    recommender: dict[str, Any], *tables: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """All categories' assignments and metrics, the methods x categories silhouette table, and,
    per category, the k the catalog's clustering (`recommender.cluster_method`) chose with its
    silhouette (and, when it chose by agreement, its agreement) at every k."""
    assignments = pd.concat(tables[: len(tables) // 2], ignore_index=True)
    metrics = pd.concat(tables[len(tables) // 2 :], ignore_index=True)
    methods = [method for method in METHODS if method in set(metrics["method"])]
    table = (
        metrics.pivot(index="method", columns="category", values="silhouette")
        .reindex(methods)
        .reset_index()
    )
    served = metrics[metrics["method"] == recommender["cluster_method"]]
    criterion = {}
    for row in served.to_dict("records"):
        criterion[str(row["category"])] = {
            "k": int(row["k"]),
            "silhouette_by_k": json.loads(row["silhouette_by_k"]),
        }
        if pd.notna(row.get("agreement_by_k")):
            criterion[str(row["category"])]["agreement_by_k"] = json.loads(row["agreement_by_k"])
    return assignments, metrics, table, criterion
