"""Clustering nodes: every method, comparable metrics, and no label metrics without labels."""

import json

import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.pipelines.clustering.nodes import (
    METHODS,
    cluster_category,
    clustering_mlflow_metrics,
    combine_clustering,
    plot_cluster_montage,
)

PARAMS = {
    "seed": 0,
    "k_min": 2,
    "k_max": 4,
    "pixel_size": 8,
    "pca_components": 5,
    "montage_method": "ae_kmeans",
    "montage_per_cluster": 3,
}


@pytest.fixture
def toy():
    """Two sub-styles by shape (a dot, a bar) on backdrops of random colour; latents and embeddings
    that agree."""
    rng = np.random.default_rng(1)
    n = 30
    style = np.array(["dot", "bar"] * (n // 2))
    images = (
        np.repeat(rng.integers(0, 200, (n, 1, 1, 3)), 32, axis=1)
        .repeat(32, axis=2)
        .astype(np.uint8)
    )
    images[style == "dot", 14:18, 14:18] = 255
    images[style == "bar", 15:17, 4:28] = 255
    manifest = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "path": [f"ring/{k}.png" for k in range(n)],
            "category": "ring",
            "store_index": range(n),
        }
    )
    centre = np.where(style == "dot", -1.0, 1.0)[:, None]
    latents = {
        "item_id": manifest["item_id"].to_numpy(),
        "latents": (centre + 0.1 * rng.normal(size=(n, 4))).astype(np.float32),
    }
    embeddings = {
        "item_id": manifest["item_id"].to_numpy(),
        "embeddings": (np.hstack([centre, -centre]) + 0.1 * rng.normal(size=(n, 2))).astype(
            np.float32
        ),
    }
    labels = pd.DataFrame({"path": manifest["path"], "category": "ring", "substyle": style})
    return images, manifest, latents, embeddings, labels


NO_FEATURES = {"item_id": np.array([], str), "features": np.zeros((0, 0), np.float32)}
BASELINES = [method for method in METHODS if method != "backbone_kmeans"]


def _cluster(images, manifest, latents, embeddings, frozen, labels, served="classifier"):
    """`cluster_category` with the index serving `served` (classifier embeddings by default)."""
    return cluster_category(
        images,
        manifest,
        latents,
        embeddings,
        frozen,
        {"source": served, "reason": "test"},
        labels,
        PARAMS,
        {"combined_autoencoder_weight": 0.5},
    )


def _frozen(manifest, labels, informative: bool) -> dict[str, np.ndarray]:
    """Stand-in frozen features: the sub-style one-hot (informative) or noise, in reversed order."""
    ids = manifest["item_id"].to_numpy()[::-1]
    truth = labels.set_index("path").loc[manifest["path"], "substyle"].to_numpy()[::-1]
    rng = np.random.default_rng(0)
    if informative:
        codes = pd.factorize(truth)[0]
        features = np.eye(codes.max() + 1)[codes] + 0.05 * rng.normal(
            size=(len(ids), codes.max() + 1)
        )
    else:
        features = rng.normal(size=(len(ids), 8))
    return {"item_id": ids, "features": features.astype(np.float32)}


def test_every_method_with_labels(toy):
    images, manifest, latents, embeddings, labels = toy
    frozen = _frozen(manifest, labels, informative=True)
    assignments, rows = _cluster(images, manifest, latents, embeddings, frozen, labels)
    assert list(rows["method"]) == list(METHODS)
    assert set(assignments["method"]) == set(METHODS)
    assert len(assignments) == len(METHODS) * len(manifest)
    served = rows.set_index("method").loc["served_kmeans"]
    assert served["space"] == "classifier" and served["ari"] == pytest.approx(1.0)
    # Served pixels: the clusters follow the backdrop colour, as kmeans_pixels does.
    _, on_pixels = _cluster(images, manifest, latents, embeddings, frozen, labels, served="pixels")
    assert on_pixels.set_index("method").loc["served_kmeans", "ari"] < 0.5
    for source in ("combined", "autoencoder", "backbone"):
        _, rows_of = _cluster(images, manifest, latents, embeddings, frozen, labels, served=source)
        assert rows_of.set_index("method").loc["served_kmeans", "ari"] == pytest.approx(1.0)
    assert rows.set_index("method").loc["backbone_kmeans", "ari"] == pytest.approx(1.0)
    _, noisy = _cluster(
        images, manifest, latents, embeddings, _frozen(manifest, labels, False), labels
    )
    assert noisy.set_index("method").loc["backbone_kmeans", "ari"] < 0.5
    _, without = _cluster(images, manifest, latents, embeddings, NO_FEATURES, labels)
    assert list(without["method"]) == BASELINES
    ae = rows.set_index("method").loc["ae_kmeans"]
    assert ae["k"] == 2 and ae["ari"] == pytest.approx(1.0) and ae["nmi"] == pytest.approx(1.0)
    # The baselines see the plain photos, as a user's five lines of scikit-learn would: on backdrops
    # of random colour they follow the colour, not the shape.
    assert rows.set_index("method").loc["kmeans_pixels", "ari"] < 0.5
    assert -1 <= ae["silhouette_common"] <= 1
    metrics = clustering_mlflow_metrics(rows)
    assert metrics["ae_kmeans.ari"]["value"] == pytest.approx(1.0)
    assert plot_cluster_montage(images, manifest, assignments, PARAMS).axes


def test_label_metrics_are_absent_without_labels(toy):
    images, manifest, latents, embeddings, _ = toy
    no_labels = pd.DataFrame(columns=["path", "category", "substyle"])
    _, rows = _cluster(images, manifest, latents, embeddings, NO_FEATURES, no_labels)
    assert "ari" not in rows.columns and "nmi" not in rows.columns
    names = set(clustering_mlflow_metrics(rows))
    assert not any(name.endswith((".ari", ".nmi")) for name in names)
    assert {"ae_kmeans.silhouette", "pca_kmeans.silhouette_common", "kmeans_pixels.k"} <= names


def test_combine_builds_the_methods_by_categories_table(toy):
    images, manifest, latents, embeddings, labels = toy
    a1, r1 = _cluster(images, manifest, latents, embeddings, NO_FEATURES, labels)
    other = manifest.assign(category="earring")
    a2, r2 = _cluster(
        images, other, latents, embeddings, NO_FEATURES, labels.assign(category="earring")
    )
    assignments, metrics, table, criterion = combine_clustering(
        {"cluster_method": "served_kmeans"}, a1, a2, r1, r2
    )
    assert len(assignments) == len(a1) + len(a2) and len(metrics) == 2 * len(BASELINES)
    assert list(table["method"]) == BASELINES and {"ring", "earring"} <= set(table.columns)
    # The catalog's clustering, per category: the k it chose and its silhouettes by k (two clear
    # sub-styles: the best silhouette and the other views agree on 2).
    assert set(criterion) == {"ring", "earring"}
    served = r1.set_index("method").loc["served_kmeans"]
    ring = criterion["ring"]
    assert ring["k"] == served["k"] == 2 and set(ring["silhouette_by_k"]) == {"2", "3", "4"}
    assert max(ring["silhouette_by_k"], key=ring["silhouette_by_k"].get) == "2"
    assert ring["silhouette_by_k"]["2"] == pytest.approx(served["silhouette"], abs=1e-4)
    _, _, _, on_pixels = combine_clustering({"cluster_method": "pca_kmeans"}, a1, r1)
    assert on_pixels["ring"]["k"] == r1.set_index("method").loc["pca_kmeans", "k"]


def test_the_served_k_is_the_one_the_other_views_agree_with_not_its_own_silhouette(toy):
    """Four sub-styles that the served embedding draws as two tight pairs (its silhouette prefers 2)
    while the latents and frozen features draw all four: the served clusters take k=4 and find the
    sub-styles; each baseline keeps its own best silhouette."""
    images, manifest, _, _, _ = toy
    ids = manifest["item_id"].to_numpy()
    style = np.arange(len(ids)) % 4  # 7 or 8 items each
    labels = pd.DataFrame({"path": manifest["path"], "category": "ring", "substyle": style})
    rng = np.random.default_rng(2)
    pair = np.where(style < 2, -1.0, 1.0)[:, None]
    within = np.where(style % 2 == 0, -1.0, 1.0)[:, None]
    embeddings = {
        "item_id": ids,
        "embeddings": np.hstack([pair, 0.15 * within]) + 0.03 * rng.normal(size=(len(ids), 2)),
    }
    four = np.eye(4)[style] + 0.05 * rng.normal(size=(len(ids), 4))
    latents = {"item_id": ids, "latents": four.astype(np.float32)}
    frozen = {"item_id": ids, "features": four[:, ::-1].astype(np.float32)}
    _, rows = _cluster(images, manifest, latents, embeddings, frozen, labels)
    rows = rows.set_index("method")
    served = rows.loc["served_kmeans"]
    silhouettes = json.loads(served["silhouette_by_k"])
    agreement = json.loads(served["agreement_by_k"])
    assert max(silhouettes, key=silhouettes.get) == "2"
    assert max(agreement, key=agreement.get) == "4" == str(served["k"])
    assert served["ari"] == pytest.approx(1.0)
    assert served["agreement"] == pytest.approx(agreement["4"], abs=1e-4)
    for method in ("kmeans_pixels", "pca_kmeans", "backbone_kmeans", "ae_kmeans"):
        own = json.loads(rows.loc[method, "silhouette_by_k"])
        assert str(rows.loc[method, "k"]) == max(own, key=own.get)
        assert pd.isna(rows.loc[method, "agreement_by_k"])
    _, _, _, criterion = combine_clustering(
        {"cluster_method": "served_kmeans"}, pd.DataFrame(), rows.reset_index()
    )
    assert criterion["ring"]["k"] == 4 and criterion["ring"]["agreement_by_k"] == agreement


def test_served_on_a_baselines_space_reuses_its_fit(toy, monkeypatch):
    from jewelry_pipeline.pipelines.clustering import nodes

    images, manifest, latents, embeddings, labels = toy
    fitted = []
    fit = nodes._kmeans_by_k
    monkeypatch.setattr(nodes, "_kmeans_by_k", lambda f, *a: fitted.append(f.shape) or fit(f, *a))
    frozen = _frozen(manifest, labels, informative=True)
    _, rows = _cluster(images, manifest, latents, embeddings, frozen, labels, served="autoencoder")
    assert len(fitted) == len(METHODS) - 1  # pixels, PCA, frozen features, latents: once each
    rows = rows.set_index("method")
    assert rows.loc["served_kmeans", "ari"] == pytest.approx(1.0)
