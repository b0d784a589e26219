"""Recommender nodes: embedding sources, honest retrieval evaluation, the catalog and the index."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from jewelry_pipeline.images import downsized_pixels
from jewelry_pipeline.metrics import precision_and_ap_at_k, single_step
from jewelry_pipeline.pipelines.clustering.nodes import aligned
from jewelry_pipeline.search import EmbeddingIndex, l2_normalise

logger = logging.getLogger(__name__)

# Sources whose vectors live in per-category spaces: search only within the (predicted) category.
CATEGORY_SCOPED = {"autoencoder", "combined"}
SOURCES = ("pixels", "pca", "autoencoder", "classifier", "combined")


def _latents_by_item(manifest: pd.DataFrame, latents: tuple[dict[str, np.ndarray], ...]) -> np.ndarray:
    """Per-category standardised, unit-length autoencoder latents, aligned to the manifest."""
    position = {item: i for i, item in enumerate(manifest["item_id"].astype(str))}
    out = None
    for arrays in latents:
        scaled = l2_normalise(StandardScaler().fit_transform(arrays["latents"]))
        if out is None:
            out = np.zeros((len(position), scaled.shape[1]), np.float32)
        out[[position[i] for i in arrays["item_id"]]] = scaled
    return out


def embedding_sources(
    images: np.ndarray, manifest: pd.DataFrame, classifier_embeddings: dict[str, np.ndarray], recommender: dict[str, Any], *latents: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every candidate embedding (rows follow the manifest) plus the classifier's predicted category."""
    item_ids = manifest["item_id"].to_numpy().astype(str)
    rows = manifest["store_index"].to_numpy()
    pixels = downsized_pixels(images, rows, int(recommender["pixel_size"]))
    gallery = manifest["split"].isin(["train", "val"]).to_numpy()
    scaler = StandardScaler().fit(pixels[gallery])
    components = min(int(recommender["pca_components"]), int(gallery.sum()) - 1)
    pca = PCA(components, random_state=int(recommender["seed"])).fit(scaler.transform(pixels[gallery]))
    classifier = l2_normalise(aligned(item_ids, classifier_embeddings, "embeddings"))
    autoencoder = _latents_by_item(manifest, latents)
    weight = float(recommender["combined_autoencoder_weight"])
    return {
        "item_id": item_ids,
        "predicted_class": aligned(item_ids, classifier_embeddings, "probabilities").argmax(axis=1),
        "pixels": pixels,
        "pca": pca.transform(scaler.transform(pixels)).astype(np.float32),
        "autoencoder": autoencoder,
        "classifier": classifier,
        "combined": np.hstack([classifier, weight * autoencoder]),
    }


def evaluate_retrieval(
    manifest: pd.DataFrame, sources: dict[str, np.ndarray], categories: list[str], substyle_labels: pd.DataFrame, recommender: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Test items query the train+val gallery; precision@k and mAP@k by category and by sub-style."""
    k = int(recommender["k"])
    gallery = manifest["split"].isin(["train", "val"]).to_numpy()
    queries = (manifest["split"] == "test").to_numpy()
    category = manifest["category"].to_numpy()
    substyle = manifest[["path"]].merge(substyle_labels[["path", "substyle"]], on="path", how="left")["substyle"].to_numpy()
    has_substyles = len(substyle_labels) > 0 and not pd.isna(substyle).any()
    predicted = np.array(categories)[sources["predicted_class"]]
    rows = []
    for source in SOURCES:
        index = EmbeddingIndex(sources["item_id"][gallery], sources[source][gallery])
        query_vectors, query_rows = sources[source][queries], np.flatnonzero(queries)
        positions = np.zeros((len(query_rows), k), int)
        if source in CATEGORY_SCOPED:
            for name in np.unique(predicted[query_rows]):
                chosen = predicted[query_rows] == name
                found, _ = index.search(query_vectors[chosen], k, allowed=category[gallery] == name)
                positions[chosen] = found
        else:
            positions, _ = index.search(query_vectors, k)
        gallery_category, gallery_substyle = category[gallery], substyle[gallery]
        row = {"source": source}
        relevance = {"category": (gallery_category[positions] == category[query_rows][:, None], category[query_rows][:, None] == gallery_category[None, :])}
        if has_substyles:
            relevance["substyle"] = (gallery_substyle[positions] == substyle[query_rows][:, None], substyle[query_rows][:, None] == gallery_substyle[None, :])
        for level, (hits, all_relevant) in relevance.items():
            precision, average_precision = precision_and_ap_at_k(hits, all_relevant.sum(axis=1), k)
            row[f"precision_at_{k}.{level}"] = precision
            row[f"map_at_{k}.{level}"] = average_precision
        rows.append(row)
        logger.info("retrieval %s: %s", source, {key: round(v, 4) for key, v in row.items() if key != "source"})
    table = pd.DataFrame(rows)
    metrics = {f"{r['source']}.{name}": value for r in rows for name, value in r.items() if name != "source"}
    return table, single_step(metrics)


def build_catalog(manifest: pd.DataFrame, cluster_assignments: pd.DataFrame, recommender: dict[str, Any]) -> pd.DataFrame:
    """The served catalog: item_id, path, category, cluster, split and thumbnail URL."""
    clusters = cluster_assignments[cluster_assignments["method"] == recommender["cluster_method"]][["item_id", "cluster"]]
    catalog = manifest[["item_id", "path", "category", "split", "store_index"]].merge(clusters, on="item_id", how="left")
    catalog["cluster"] = catalog["cluster"].fillna(-1).astype(int)
    catalog["thumbnail"] = "/items/" + catalog["item_id"] + "/thumbnail"
    return catalog[["item_id", "path", "category", "cluster", "split", "store_index", "thumbnail"]]


def build_index(sources: dict[str, np.ndarray], recommender: dict[str, Any]) -> dict[str, np.ndarray]:
    """The served index over the whole catalog, from the configured embedding source."""
    source = recommender["embedding_source"]
    if source not in SOURCES:
        raise ValueError(f"recommender.embedding_source '{source}' is not one of {SOURCES}")
    hnsw = recommender["hnsw"]
    index = EmbeddingIndex(
        sources["item_id"],
        sources[source],
        backend=recommender["index_backend"],
        hnsw_m=int(hnsw["m"]),
        ef_construction=int(hnsw["ef_construction"]),
        ef_search=int(hnsw["ef_search"]),
    )
    arrays = index.to_arrays()
    arrays["source"] = np.array(source)
    arrays["category_scoped"] = np.array(source in CATEGORY_SCOPED)
    logger.info("Index: %d items, source '%s', %d dimensions, backend %s", len(index.item_ids), source, index.dimension, index.backend)
    return arrays
