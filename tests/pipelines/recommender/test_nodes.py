"""Recommender nodes: sources, retrieval metrics with and without sub-style labels, catalog, index."""

import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.pipelines.recommender.nodes import SOURCES, build_catalog, build_index, choose_served_source, embedding_sources, evaluate_retrieval
from jewelry_pipeline.search import EmbeddingIndex

PARAMS = {"seed": 0, "k": 3, "embedding_source": "classifier", "index_backend": "exact", "cluster_method": "ae_kmeans", "pixel_size": 4, "pca_components": 4, "combined_autoencoder_weight": 0.5, "hnsw": {"m": 16, "ef_construction": 40, "ef_search": 64}}


@pytest.fixture
def toy():
    rng = np.random.default_rng(3)
    n = 40
    category = np.array(["a", "b"] * (n // 2))
    substyle = np.array([f"{c}{k % 2}" for k, c in zip(np.arange(n) // 2, category)])
    manifest = pd.DataFrame(
        {
            "item_id": [f"i{k:03d}" for k in range(n)],
            "path": [f"{c}/{k}.png" for k, c in enumerate(category)],
            "category": category,
            "store_index": range(n),
            "split": (["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 4,
        }
    )
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    codes = {"a0": [1, 0, 0, 0], "a1": [0, 1, 0, 0], "b0": [0, 0, 1, 0], "b1": [0, 0, 0, 1]}
    embedded = np.array([codes[s] for s in substyle], np.float32) + 0.05 * rng.normal(size=(n, 4)).astype(np.float32)
    probabilities = np.stack([category == "a", category == "b"], axis=1).astype(np.float32)
    descriptors = np.abs(embedded[:, ::-1]) + 0.01  # another view of the same sub-styles, non-negative like pooled activations
    classifier = {"item_id": manifest["item_id"].to_numpy(), "embeddings": embedded, "probabilities": probabilities, "descriptors": descriptors, "descriptor_layout": np.array([-2, 4])}
    latents = [
        {"item_id": manifest.loc[category == c, "item_id"].to_numpy(), "latents": embedded[category == c] * 3}
        for c in ("a", "b")
    ]
    labels = pd.DataFrame({"path": manifest["path"], "category": category, "substyle": substyle})
    return images, manifest, classifier, latents, labels


def test_sources_and_retrieval_metrics(toy):
    images, manifest, classifier, latents, labels = toy
    sources = embedding_sources(images, manifest, classifier, PARAMS, *latents)
    assert all(sources[s].shape[0] == len(manifest) for s in SOURCES)
    table, metrics = evaluate_retrieval(manifest, sources, ["a", "b"], labels, PARAMS)
    row = table.set_index("source").loc["classifier"]
    assert row["precision_at_3.category"] == pytest.approx(1.0)
    assert row["precision_at_3.substyle"] == pytest.approx(1.0)
    assert "classifier.map_at_3.substyle" in metrics and "pixels.precision_at_3.category" in metrics
    assert table.set_index("source").loc["descriptor", "precision_at_3.substyle"] == pytest.approx(1.0)


@pytest.mark.parametrize("autoencoder_input, served", [("foreground", "combined"), ("photo", "descriptor")])
def test_auto_serves_the_source_built_on_the_better_input(autoencoder_input, served):
    choice = choose_served_source({"input": autoencoder_input}, {**PARAMS, "embedding_source": "auto"})
    assert choice["source"] == served and choice["reason"]
    assert choose_served_source({"input": autoencoder_input}, PARAMS) == {"source": "classifier", "reason": "set by recommender.embedding_source: classifier"}
    with pytest.raises(ValueError, match="embedding_source"):
        choose_served_source({"input": autoencoder_input}, {**PARAMS, "embedding_source": "nope"})


def test_substyle_metrics_are_absent_without_labels(toy):
    images, manifest, classifier, latents, _ = toy
    sources = embedding_sources(images, manifest, classifier, PARAMS, *latents)
    table, metrics = evaluate_retrieval(manifest, sources, ["a", "b"], pd.DataFrame(columns=["path", "category", "substyle"]), PARAMS)
    assert not any(name.endswith(".substyle") for name in metrics)
    assert any(name.endswith(".category") for name in metrics)


def test_catalog_and_index(toy):
    images, manifest, classifier, latents, _ = toy
    assignments = pd.DataFrame({"item_id": manifest["item_id"], "category": manifest["category"], "method": "ae_kmeans", "cluster": 1})
    catalog = build_catalog(manifest, assignments, PARAMS)
    assert list(catalog.columns[:4]) == ["item_id", "path", "category", "cluster"]
    assert catalog["thumbnail"].iloc[0] == "/items/i000/thumbnail"
    sources = embedding_sources(images, manifest, classifier, PARAMS, *latents)
    arrays = build_index(sources, {"source": "classifier"}, PARAMS)
    assert str(arrays["source"]) == "classifier" and not bool(arrays["category_scoped"])
    index = EmbeddingIndex.from_arrays(arrays)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-5)
    hnsw = EmbeddingIndex.from_arrays(build_index(sources, {"source": "classifier"}, {**PARAMS, "index_backend": "hnsw"}))
    assert (hnsw.backend, hnsw.hnsw_m, hnsw.ef_search) == ("hnsw", 16, 64)
    assert np.array_equal(hnsw.search(index.vectors[:3], 3)[0][:, 0], [0, 1, 2])
    with pytest.raises(ValueError, match="embedding source 'nope'"):
        build_index(sources, {"source": "nope"}, PARAMS)
    combined_params = {**PARAMS, "combined_autoencoder_weight": 0.7}
    combined = build_index(embedding_sources(images, manifest, classifier, combined_params, *latents), {"source": "combined"}, combined_params)
    assert bool(combined["category_scoped"]) and float(combined["combined_autoencoder_weight"]) == 0.7
    assert "combined_autoencoder_weight" not in arrays and "descriptor_layout" not in arrays
    descriptor = build_index(sources, {"source": "descriptor"}, PARAMS)
    assert bool(descriptor["category_scoped"]) and descriptor["descriptor_layout"].tolist() == [-2, 4]
