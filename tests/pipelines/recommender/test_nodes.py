"""Recommender nodes: sources, retrieval metrics with and without sub-style labels, catalog,
index."""

import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.core.answers import AnswerPolicy
from jewelry_pipeline.core.query import SOURCES, IndexSpec
from jewelry_pipeline.core.search import EmbeddingIndex
from jewelry_pipeline.pipelines.classifier.nodes import embed_backbone
from jewelry_pipeline.pipelines.recommender.nodes import (
    build_catalog,
    build_index,
    choose_answer_policy,
    choose_served_source,
    embedding_sources,
    evaluate_retrieval,
)

PARAMS = {
    "seed": 0,
    "k": 3,
    "embedding_source": "classifier",
    "index_backend": "exact",
    "cluster_method": "ae_kmeans",
    "pixel_size": 4,
    "pca_components": 4,
    "combined_autoencoder_weight": 0.5,
    "hnsw": {"m": 16, "ef_construction": 40, "ef_search": 64},
}


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
    embedded = np.array([codes[s] for s in substyle], np.float32) + 0.05 * rng.normal(
        size=(n, 4)
    ).astype(np.float32)
    probabilities = np.stack([category == "a", category == "b"], axis=1).astype(np.float32)
    descriptors = (
        np.abs(embedded[:, ::-1]) + 0.01
    )  # another view of the same sub-styles, non-negative like pooled activations
    classifier = {
        "item_id": manifest["item_id"].to_numpy(),
        "embeddings": embedded,
        "probabilities": probabilities,
        "descriptors": descriptors,
        "descriptor_layout": np.array([-2, 4]),
    }
    latents = [
        {
            "item_id": manifest.loc[category == c, "item_id"].to_numpy(),
            "latents": embedded[category == c] * 3,
        }
        for c in ("a", "b")
    ]
    labels = pd.DataFrame({"path": manifest["path"], "category": category, "substyle": substyle})
    return images, manifest, classifier, latents, labels


NO_FEATURES = {"item_id": np.array([], str), "features": np.zeros((0, 0), np.float32)}
PRETRAINED = {"backbone": "efficientnet_lite0", "input_size": 32}


def test_sources_and_retrieval_metrics(toy):
    images, manifest, classifier, latents, labels = toy
    sources = embedding_sources(images, manifest, classifier, NO_FEATURES, PARAMS, *latents)
    assert all(sources[s].shape[0] == len(manifest) for s in SOURCES if s != "backbone")
    assert "backbone" not in sources
    table, metrics = evaluate_retrieval(manifest, sources, ["a", "b"], labels, PARAMS)
    row = table.set_index("source").loc["classifier"]
    assert row["precision_at_3.category"] == pytest.approx(1.0)
    assert row["precision_at_3.substyle"] == pytest.approx(1.0)
    assert "classifier.map_at_3.substyle" in metrics and "pixels.precision_at_3.category" in metrics
    assert table.set_index("source").loc["descriptor", "precision_at_3.substyle"] == pytest.approx(
        1.0
    )


def test_a_category_smaller_than_k_counts_its_missing_answers_as_misses(toy):
    images, manifest, classifier, latents, labels = toy
    wide = {**PARAMS, "k": 20}  # each category has 16 gallery items: scoped searches return 16
    sources = embedding_sources(images, manifest, classifier, NO_FEATURES, wide, *latents)
    table, _ = evaluate_retrieval(manifest, sources, ["a", "b"], labels, wide)
    rows = table.set_index("source")
    # Searched within the predicted category: its 16 items are found, 4 answers are missing.
    assert rows.loc["descriptor", "precision_at_20.category"] == pytest.approx(16 / 20)
    assert rows.loc["descriptor", "precision_at_20.substyle"] == pytest.approx(8 / 20)
    # Searched over the whole gallery: all 8 items of the sub-style are among the 20 answers.
    assert rows.loc["classifier", "precision_at_20.substyle"] == pytest.approx(8 / 20)


@pytest.mark.parametrize(
    "autoencoder_input, served", [("foreground", "combined"), ("photo", "descriptor")]
)
def test_auto_serves_the_source_built_on_the_better_input(autoencoder_input, served):
    auto = {**PARAMS, "embedding_source": "auto"}
    for kept in ("cnn", "pretrained"):  # the kept classifier's own embedding or descriptor
        choice = choose_served_source({"input": autoencoder_input}, {"chosen": kept}, auto)
        assert choice["source"] == served and f"the kept {kept} classifier" in choice["reason"]
    assert choose_served_source({"input": autoencoder_input}, {"chosen": "cnn"}, PARAMS) == {
        "source": "classifier",
        "reason": "set by recommender.embedding_source: classifier",
    }
    backbone = {**PARAMS, "embedding_source": "backbone"}
    assert choose_served_source({"input": autoencoder_input}, {}, backbone)["source"] == "backbone"
    with pytest.raises(ValueError, match="embedding_source"):
        choose_served_source({"input": autoencoder_input}, {}, {**PARAMS, "embedding_source": "x"})


def test_frozen_backbone_features_are_a_scoped_source(toy):
    images, manifest, classifier, latents, labels = toy
    # Stand-in frozen features that give the sub-style away, in reversed item order.
    truth = labels.set_index("path").loc[manifest["path"], "substyle"].to_numpy()
    codes = pd.factorize(truth)[0]
    frozen = {
        "item_id": manifest["item_id"].to_numpy()[::-1],
        "features": np.eye(codes.max() + 1, dtype=np.float32)[codes][::-1] * 5,
    }
    sources = embedding_sources(images, manifest, classifier, frozen, PARAMS, *latents)
    np.testing.assert_allclose(np.linalg.norm(sources["backbone"], axis=1), 1.0, atol=1e-6)
    table, metrics = evaluate_retrieval(manifest, sources, ["a", "b"], labels, PARAMS)
    assert list(table["source"]) == list(SOURCES)
    assert metrics["backbone.precision_at_3.substyle"]["value"] == pytest.approx(1.0)


def test_substyle_metrics_are_absent_without_labels(toy):
    images, manifest, classifier, latents, _ = toy
    sources = embedding_sources(images, manifest, classifier, NO_FEATURES, PARAMS, *latents)
    table, metrics = evaluate_retrieval(
        manifest,
        sources,
        ["a", "b"],
        pd.DataFrame(columns=["path", "category", "substyle"]),
        PARAMS,
    )
    assert not any(name.endswith(".substyle") for name in metrics)
    assert any(name.endswith(".category") for name in metrics)


def test_catalog_and_index(toy):
    images, manifest, classifier, latents, _ = toy
    assignments = pd.DataFrame(
        {
            "item_id": manifest["item_id"],
            "category": manifest["category"],
            "method": "ae_kmeans",
            "cluster": 1,
        }
    )
    details = pd.DataFrame(
        {"path": [manifest["path"].iloc[1], "elsewhere.png"], "title": ["Blue", "x"]}
    )
    catalog = build_catalog(manifest, assignments, details, PARAMS)
    assert list(catalog.columns[:5]) == ["item_id", "path", "title", "category", "cluster"]
    assert catalog["thumbnail"].iloc[0] == "/items/i000/thumbnail"
    assert catalog["title"].tolist()[:3] == ["", "Blue", ""]  # titles by path; none: empty
    no_details = build_catalog(
        manifest, assignments, pd.DataFrame(columns=["path", "title"]), PARAMS
    )
    assert (no_details["title"] == "").all()


@pytest.fixture(scope="module")
def modelled():
    """A small catalog with real (untrained) Keras models, embedded the way the pipelines embed
    it."""
    import keras

    from jewelry_pipeline.core.images import Foreground, autoencoder_inputs
    from jewelry_pipeline.core.models.autoencoder import build_autoencoder, standardised_encoder
    from jewelry_pipeline.core.models.classifier import build_classifier
    from jewelry_pipeline.pipelines.autoencoders.nodes import encode_category
    from jewelry_pipeline.pipelines.classifier.nodes import embed_catalog
    from tests.conftest import FOREGROUND, random_photo

    keras.utils.set_random_seed(0)
    n, size = 24, 32
    category = np.array(["a", "b"] * (n // 2))
    manifest = pd.DataFrame(
        {
            "item_id": [f"i{k:03d}" for k in range(n)],
            "path": [f"{c}/{k}.png" for k, c in enumerate(category)],
            "category": category,
            "store_index": range(n),
            "split": (["train"] * 4 + ["val", "val", "test", "test"]) * (n // 8),
        }
    )
    images = np.stack([random_photo(k, (size, size)) for k in range(n)])
    model = build_classifier(size, 2, filters=(4, 8), embedding_dim=8)
    embeddings = embed_catalog(model, images, manifest, {"descriptor": {"block": -1, "grid": 2}})
    maps = autoencoder_inputs(images, np.arange(n), "foreground", Foreground.from_block(FOREGROUND))
    encoders, latents = [], []
    for name in ("a", "b"):
        rows = category == name
        _, encoder, _ = build_autoencoder(size, (4, 8), 6, channels=1)
        encoders.append(standardised_encoder(encoder, encoder.predict(maps[rows], verbose=0)))
        latents.append(encode_category(encoders[-1], maps[rows], manifest[rows]))
    preprocessing = {"image_size": size, "foreground": FOREGROUND}
    return images, manifest, model, embeddings, encoders, latents, preprocessing


def _frozen(modelled) -> dict:
    """The frozen backbone's features of the modelled catalog, as the classifier pipeline makes
    them."""
    images, manifest = modelled[:2]
    return embed_backbone(images, manifest, PRETRAINED)


def _index(modelled, source: str, recommender: dict = PARAMS) -> dict:
    """`build_index` arrays of the modelled catalog for one source and recommender parameters."""
    images, manifest, model, embeddings, encoders, latents, preprocessing = modelled
    frozen = _frozen(modelled) if source == "backbone" else NO_FEATURES
    sources = embedding_sources(images, manifest, embeddings, frozen, recommender, *latents)
    return build_index(
        images,
        manifest,
        ["a", "b"],
        model,
        sources,
        {"source": source},
        {"input": "foreground"},
        preprocessing,
        PRETRAINED,
        recommender,
        *encoders,
        built=["a", "b"],
    )


@pytest.mark.parametrize(
    "source", ["classifier", "descriptor", "autoencoder", "combined", "backbone"]
)
def test_the_index_is_made_by_the_query_code_and_equals_the_pipelines_vectors(modelled, source):
    """The index comes from QueryEncoder (what the service queries with); it must equal the vectors
    the classifier and autoencoder pipelines made for the same photos (embedding_sources)."""
    images, manifest, model, embeddings, encoders, latents, preprocessing = modelled
    frozen = _frozen(modelled) if source == "backbone" else NO_FEATURES
    sources = embedding_sources(images, manifest, embeddings, frozen, PARAMS, *latents)
    arrays = _index(modelled, source)
    expected = sources[source] / np.linalg.norm(sources[source], axis=1, keepdims=True)
    np.testing.assert_allclose(arrays["vectors"], expected, atol=1e-4)
    spec = IndexSpec.from_arrays(arrays)
    assert spec.source == source and spec.category_scoped == (source != "classifier")
    assert (spec.descriptor_layout == (-1, 2)) == (source == "descriptor")
    assert (spec.combined_autoencoder_weight == PARAMS["combined_autoencoder_weight"]) == (
        source == "combined"
    )


def test_index_backend_and_evaluation_only_sources(modelled):
    images, manifest, model, embeddings, encoders, latents, preprocessing = modelled
    sources = embedding_sources(images, manifest, embeddings, NO_FEATURES, PARAMS, *latents)
    arguments = (images, manifest, ["a", "b"], model, sources)
    rest = ({"input": "foreground"}, preprocessing, PRETRAINED)
    arrays = build_index(
        *arguments, {"source": "classifier"}, *rest, PARAMS, *encoders, built=["a", "b"]
    )
    index = EmbeddingIndex.from_arrays(arrays)
    hnsw = EmbeddingIndex.from_arrays(
        build_index(
            *arguments,
            {"source": "classifier"},
            *rest,
            {**PARAMS, "index_backend": "hnsw"},
            *encoders,
            built=["a", "b"],
        )
    )
    assert (hnsw.backend, hnsw.hnsw_m, hnsw.ef_search) == ("hnsw", 16, 64)
    assert np.array_equal(hnsw.search(index.vectors[:3], 3)[0][:, 0], [0, 1, 2])
    pixels = build_index(
        *arguments, {"source": "pixels"}, *rest, PARAMS, *encoders, built=["a", "b"]
    )
    assert str(pixels["source"]) == "pixels" and pixels["vectors"].shape == sources["pixels"].shape
    with pytest.raises(ValueError, match="embedding source 'nope'"):
        build_index(*arguments, {"source": "nope"}, *rest, PARAMS, *encoders, built=["a", "b"])


ANSWERS = {
    "min_confidence": "auto",
    "min_familiarity": "auto",
    "max_refused_share": 0.25,
    "foreign_refused_target": 0.95,
    "foreign_images": 20,
    "familiarity": {"neighbours": 3, "reference_size": 1000},
}


@pytest.mark.parametrize("source", ["classifier", "combined", "backbone"])
def test_answer_thresholds_are_chosen_on_validation_and_measured_on_test(modelled, source):
    images, manifest, model, embeddings, encoders, latents, preprocessing = modelled
    params = {**PARAMS, "answers": ANSWERS}
    frozen = _frozen(modelled) if source == "backbone" else NO_FEATURES
    sources = embedding_sources(images, manifest, embeddings, frozen, params, *latents)
    rest = ({"input": "foreground"}, preprocessing, PRETRAINED, params, *encoders)
    index = build_index(
        images, manifest, ["a", "b"], model, sources, {"source": source}, *rest, built=["a", "b"]
    )
    policy, metrics, familiarity = choose_answer_policy(
        images, manifest, ["a", "b"], model, index, *rest, built=["a", "b"]
    )
    confidences = np.asarray(embeddings["probabilities"]).max(axis=1)[manifest["split"] == "val"]
    assert policy["min_confidence"] == 0.0 or confidences.min() <= policy[
        "min_confidence"
    ] <= np.median(confidences)
    assert -1.0 <= policy["min_familiarity"] <= 1.0
    assert set(policy["test"]) == {"before", "after"}
    before, after = policy["test"]["before"], policy["test"]["after"]
    assert before["uncertain_rate"] == 0.0 and before["no_close_match_rate"] == 0.0
    assert 0.0 <= after["top_result_category_rate"] <= 1.0
    assert {"after.top_result_category_rate", "min_confidence", "min_familiarity"} <= set(metrics)
    refused = policy["not_in_catalog"]
    assert refused["validation_share"] <= 0.25 + 1 / (manifest["split"] == "val").sum()
    assert 0.0 <= refused["foreign_share"] <= 1.0
    assert metrics["not_in_catalog.foreign_share"]["value"] == refused["foreign_share"]
    assert AnswerPolicy.from_config(policy) == AnswerPolicy(
        policy["min_confidence"], policy["min_familiarity"]
    )
    # The reference: every train photo's pooled features (fewer than reference_size), unit rows.
    assert len(familiarity["vectors"]) == (manifest["split"] == "train").sum()
    np.testing.assert_allclose(
        np.linalg.norm(familiarity["vectors"].astype(np.float32), axis=1), 1.0, atol=1e-3
    )
    assert int(familiarity["neighbours"]) == 3


def test_configured_answer_thresholds_are_kept(modelled):
    images, manifest, model, embeddings, encoders, latents, preprocessing = modelled
    params = {**PARAMS, "answers": {**ANSWERS, "min_confidence": 0.7, "min_familiarity": 0.2}}
    rest = ({"input": "foreground"}, preprocessing, PRETRAINED, params, *encoders)
    index = _index(modelled, "classifier", params)
    policy, _, _ = choose_answer_policy(
        images, manifest, ["a", "b"], model, index, *rest, built=["a", "b"]
    )
    assert (policy["min_confidence"], policy["min_familiarity"]) == (0.7, 0.2)
    test_confidence = np.asarray(embeddings["probabilities"]).max(axis=1)[
        manifest["split"] == "test"
    ]
    assert policy["test"]["after"]["uncertain_rate"] == pytest.approx(
        np.mean(test_confidence < 0.7)
    )


def test_an_ivfpq_index_is_built_per_category(modelled):
    manifest = modelled[1]
    params = {**PARAMS, "index_backend": "ivfpq", "ivfpq": {"lists": "auto", "rerank": 20}}
    index = EmbeddingIndex.from_arrays(_index(modelled, "classifier", params))
    assert index.backend == "ivfpq" and (index.ivfpq.rerank, index.ivfpq.seed) == (20, 0)
    assert list(index.partitions.labels()) == list(manifest["category"])
    found, _ = index.search(index.vectors[:4], 3, partition="b")
    assert (manifest["category"].to_numpy()[found] == "b").all()
    found, _ = index.search(index.vectors[:4], 3)
    assert found[:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown ivfpq parameters"):
        _index(modelled, "classifier", {**params, "ivfpq": {"nlist": 4}})


def test_not_in_catalog_takes_the_least_refusing_threshold_that_refuses_the_foreign_images():
    from jewelry_pipeline.pipelines.recommender.nodes import _min_familiarity

    validation = np.linspace(0.5, 1.0, 1001)  # quantile q of these is 0.5 + q / 2
    settings = {"max_refused_share": 0.06, "foreign_refused_target": 0.9}
    foreign = np.array([0.3] * 9 + [0.51])  # nine far below; one near the validation photos
    assert _min_familiarity(validation, foreign, settings) == pytest.approx(0.5)  # q = 0 is enough
    foreign = np.array([0.3] * 8 + [0.51, 0.512])  # the ninth refused from q = 0.025 on
    assert _min_familiarity(validation, foreign, settings) == pytest.approx(0.5 + 0.025 / 2)
    close = np.full(10, 0.9)  # no threshold within the budget refuses them: the budget's end
    assert _min_familiarity(validation, close, settings) == pytest.approx(0.5 + 0.06 / 2)
