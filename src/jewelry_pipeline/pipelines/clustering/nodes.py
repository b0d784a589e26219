"""Sub-style clustering per category: KMeans on pixels, PCA+KMeans, KMeans on frozen pretrained
features, KMeans on autoencoder latents and KMeans on the embedding the index serves.

The baselines run on the plain photos, scaled as anyone would in a few lines of scikit-learn (and
on the frozen pretrained backbone's features, when it is on); `ae_kmeans` runs on the latents of
the autoencoders; `served_kmeans` on the served embedding, so a catalog cluster holds the items
"similar items" returns and a new photo's cluster (nearest centroid in index space) agrees. Each
partition is scored in its own space, in one common space (the classifier embedding, shared by all
methods so the figures compare), and against sub-style labels when a ground truth exists.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.hints import Figure  # matplotlib loads inside the node that draws
from jewelry_pipeline.core.images import downsized_pixels
from jewelry_pipeline.core.lookup import aligned, substyles_of
from jewelry_pipeline.core.metrics import single_step
from jewelry_pipeline.core.query import combined_vectors
from jewelry_pipeline.core.search import l2_normalise

logger = logging.getLogger(__name__)

METHODS = ("kmeans_pixels", "pca_kmeans", "backbone_kmeans", "ae_kmeans", "served_kmeans")


def _best_kmeans(
    features: np.ndarray, k_values: list[int], seed: int
) -> tuple[np.ndarray, int, float, dict[int, float]]:
    """KMeans for every k; keep the k with the best silhouette in this feature space, and return
    every k's silhouette too (the criterion the shop's sub-style view charts)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    best, scores = (np.zeros(len(features), int), 1, -1.0), {}
    for k in k_values:
        if k >= len(features):
            break
        labels = KMeans(k, n_init=10, random_state=seed).fit_predict(features)
        scores[k] = float(silhouette_score(features, labels))
        if scores[k] > best[2]:
            best = (labels, k, scores[k])
    return (*best, scores)


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
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
    from sklearn.preprocessing import StandardScaler

    seed = int(clustering["seed"])
    k_values = list(range(int(clustering["k_min"]), int(clustering["k_max"]) + 1))
    rows = category_manifest["store_index"].to_numpy()
    item_ids = category_manifest["item_id"].to_numpy().astype(str)
    category = str(category_manifest["category"].iloc[0])
    pixels = downsized_pixels(images, rows, int(clustering["pixel_size"]))
    components = min(int(clustering["pca_components"]), len(rows) - 1, pixels.shape[1])
    spaces = {
        "kmeans_pixels": pixels,
        "pca_kmeans": PCA(components, random_state=seed).fit_transform(
            StandardScaler().fit_transform(pixels)
        ),
        # Unit-length codes: the cosine geometry the contrastive loss trains and retrieval searches.
        "ae_kmeans": l2_normalise(aligned(item_ids, latents, "latents")),
    }
    if len(backbone_features["features"]):
        spaces["backbone_kmeans"] = l2_normalise(aligned(item_ids, backbone_features, "features"))
    spaces["served_kmeans"] = _served_space(
        served_source["source"],
        item_ids,
        spaces,
        classifier_embeddings,
        float(recommender["combined_autoencoder_weight"]),
    )
    spaces = {method: spaces[method] for method in METHODS if method in spaces}
    common = l2_normalise(aligned(item_ids, classifier_embeddings, "embeddings"))
    truth = substyles_of(category_manifest, substyle_labels)
    assignments, metric_rows, fitted = [], [], {}
    for method, features in spaces.items():
        # served_kmeans on another method's own space (autoencoder, backbone, ...) reuses its fit
        if id(features) not in fitted:
            fitted[id(features)] = _best_kmeans(features, k_values, seed)
        labels, k, own, by_k = fitted[id(features)]
        row = {"category": category, "method": method, "k": k, "silhouette": own}
        row["silhouette_by_k"] = json.dumps({str(n): round(v, 4) for n, v in by_k.items()})
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
        for metric in ("silhouette", "silhouette_common", "ari", "nmi", "k"):
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
    per category, the k the catalog's clustering (`recommender.cluster_method`) chose and its
    silhouette at every k."""
    assignments = pd.concat(tables[: len(tables) // 2], ignore_index=True)
    metrics = pd.concat(tables[len(tables) // 2 :], ignore_index=True)
    methods = [method for method in METHODS if method in set(metrics["method"])]
    table = (
        metrics.pivot(index="method", columns="category", values="silhouette")
        .reindex(methods)
        .reset_index()
    )
    served = metrics[metrics["method"] == recommender["cluster_method"]]
    criterion = {
        str(row.category): {"k": int(row.k), "silhouette_by_k": json.loads(row.silhouette_by_k)}
        for row in served.itertuples(index=False)
    }
    return assignments, metrics, table, criterion
