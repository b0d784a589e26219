"""Recommender nodes: embedding sources, honest retrieval evaluation, the catalog and the index."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.answers import AnswerPolicy, answer_query
from jewelry_pipeline.core.familiarity import FamiliarityReference
from jewelry_pipeline.core.foreign import foreign_images
from jewelry_pipeline.core.images import Preprocessing, downsized_pixels
from jewelry_pipeline.core.ivfpq import IvfPqSettings
from jewelry_pipeline.core.lookup import aligned, substyles_of
from jewelry_pipeline.core.metrics import precision_and_ap_at_k, single_step
from jewelry_pipeline.core.query import (
    CATEGORY_SCOPED_SOURCES,
    MODEL_SOURCES,
    SOURCES,
    IndexSpec,
    QueryBatch,
    QueryEncoder,
    combined_vectors,
)
from jewelry_pipeline.core.search import EmbeddingIndex, l2_normalise
from jewelry_pipeline.core.thumbnails import thumbnail_url

logger = logging.getLogger(__name__)


def _latents_by_item(
    item_ids: np.ndarray, latents: tuple[dict[str, np.ndarray], ...]
) -> np.ndarray:
    """Unit-length autoencoder latents (already standardised by each encoder), aligned to
    `item_ids`."""
    merged = {
        "item_id": np.concatenate([arrays["item_id"] for arrays in latents]),
        "latents": np.concatenate([l2_normalise(arrays["latents"]) for arrays in latents]),
    }
    return aligned(item_ids, merged, "latents")


def embedding_sources(
    images: np.ndarray,
    manifest: pd.DataFrame,
    classifier_embeddings: dict[str, np.ndarray],
    backbone_features: dict[str, np.ndarray],
    recommender: dict[str, Any],
    *latents: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Every candidate embedding (rows follow the manifest) plus the classifier's predicted
    category; `backbone` only when the pretrained backbone is on."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    item_ids = manifest["item_id"].to_numpy().astype(str)
    rows = manifest["store_index"].to_numpy()
    pixels = downsized_pixels(images, rows, int(recommender["pixel_size"]))
    gallery = manifest["split"].isin(["train", "val"]).to_numpy()
    scaler = StandardScaler().fit(pixels[gallery])
    components = min(int(recommender["pca_components"]), int(gallery.sum()) - 1)
    pca = PCA(components, random_state=int(recommender["seed"])).fit(
        scaler.transform(pixels[gallery])
    )
    classifier = l2_normalise(aligned(item_ids, classifier_embeddings, "embeddings"))
    autoencoder = _latents_by_item(item_ids, latents)
    frozen = (
        {"backbone": l2_normalise(aligned(item_ids, backbone_features, "features"))}
        if len(backbone_features["features"])
        else {}
    )
    return {
        **frozen,
        "item_id": item_ids,
        "predicted_class": aligned(item_ids, classifier_embeddings, "probabilities").argmax(axis=1),
        "pixels": pixels,
        "pca": pca.transform(scaler.transform(pixels)).astype(np.float32),
        "autoencoder": autoencoder,
        "classifier": classifier,
        "descriptor": l2_normalise(aligned(item_ids, classifier_embeddings, "descriptors")),
        "descriptor_layout": np.asarray(classifier_embeddings["descriptor_layout"]),
        "combined": combined_vectors(
            classifier, autoencoder, float(recommender["combined_autoencoder_weight"])
        ),
    }


def evaluate_retrieval(
    manifest: pd.DataFrame,
    sources: dict[str, np.ndarray],
    categories: list[str],
    substyle_labels: pd.DataFrame,
    recommender: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Test items query the train+val gallery; precision@k and mAP@k by category and by
    sub-style."""
    k = int(recommender["k"])
    gallery = manifest["split"].isin(["train", "val"]).to_numpy()
    queries = (manifest["split"] == "test").to_numpy()
    category = manifest["category"].to_numpy()
    substyle = substyles_of(manifest, substyle_labels)
    levels = (
        {"category": category}
        if substyle is None
        else {"category": category, "substyle": substyle.to_numpy()}
    )
    query_rows = np.flatnonzero(queries)
    # How many gallery items are relevant to each query, per level: the same for every source.
    relevant_totals = {
        name: (labels[query_rows][:, None] == labels[gallery][None, :]).sum(axis=1)
        for name, labels in levels.items()
    }
    predicted = np.array(categories)[sources["predicted_class"]]
    rows = []
    for source in (name for name in SOURCES if name in sources):
        index = EmbeddingIndex(sources["item_id"][gallery], sources[source][gallery])
        query_vectors = sources[source][queries]
        # -1: no answer (a category with fewer than k gallery items); a miss for every level.
        positions = np.full((len(query_rows), k), -1)
        if source in CATEGORY_SCOPED_SOURCES:
            for name in np.unique(predicted[query_rows]):
                chosen = predicted[query_rows] == name
                found, _ = index.search(query_vectors[chosen], k, allowed=category[gallery] == name)
                positions[np.flatnonzero(chosen)[:, None], np.arange(found.shape[1])] = found
        else:
            found, _ = index.search(query_vectors, k)
            positions[:, : found.shape[1]] = found
        row = {"source": source}
        for level, labels in levels.items():
            hits = (labels[gallery][positions] == labels[query_rows][:, None]) & (positions >= 0)
            precision, average_precision = precision_and_ap_at_k(hits, relevant_totals[level], k)
            row[f"precision_at_{k}.{level}"] = precision
            row[f"map_at_{k}.{level}"] = average_precision
        rows.append(row)
        logger.info(
            "retrieval %s: %s",
            source,
            {key: round(v, 4) for key, v in row.items() if key != "source"},
        )
    table = pd.DataFrame(rows)
    metrics = {
        f"{r['source']}.{name}": value
        for r in rows
        for name, value in r.items()
        if name != "source"
    }
    return table, single_step(metrics)


def build_catalog(
    manifest: pd.DataFrame,
    cluster_assignments: pd.DataFrame,
    item_details: pd.DataFrame,
    recommender: dict[str, Any],
) -> pd.DataFrame:
    """The served catalog: item_id, path, title, category, cluster, split and thumbnail URL.

    `title` comes from the user's optional `catalog.csv` (path, title); empty where it has none.
    """
    clusters = cluster_assignments[cluster_assignments["method"] == recommender["cluster_method"]][
        ["item_id", "cluster"]
    ]
    catalog = manifest[["item_id", "path", "category", "split", "store_index"]].merge(
        clusters, on="item_id", how="left"
    )
    catalog["cluster"] = catalog["cluster"].fillna(-1).astype(int)
    titles = (
        item_details.drop_duplicates("path").set_index("path")["title"] if len(item_details) else {}
    )
    catalog["title"] = catalog["path"].map(titles).fillna("").astype(str)
    catalog["thumbnail"] = catalog["item_id"].map(thumbnail_url)
    columns = ["item_id", "path", "title", "category", "cluster", "split", "store_index"]
    return catalog[[*columns, "thumbnail"]]


def choose_served_source(
    autoencoder_input: dict[str, Any],
    classifier_choice: dict[str, Any],
    recommender: dict[str, Any],
) -> dict[str, str]:
    """The source the index serves: `recommender.embedding_source`, or with `auto` the one built on
    the better input.

    The autoencoders' input was chosen on this run's photos (a linear probe of the known
    categories). When the foreground map wins, the photos' own pixels are mostly backdrop, and the
    autoencoder latent (beside the classifier embedding: `combined`) carries the item; when the
    plain photo wins, the kept classifier's mid-level `descriptor` of the photo is served (the
    fine-tuned pretrained network's when validation kept it). Measured in one `make quality` run,
    these beat the frozen `backbone` features on every labelled set (sub-style p@10 0.799 against
    0.765 on fmnist-groups, 0.427 against 0.411 on emojione, `combined` 0.949 against 0.871 on the
    built-in data), so `backbone` is served only when configured.
    """
    configured = str(recommender["embedding_source"])
    if configured != "auto" and configured not in SOURCES:
        raise ValueError(
            f"recommender.embedding_source '{configured}' is not 'auto' or one of {SOURCES}"
        )
    chosen = classifier_choice.get("chosen", "cnn")
    kept = (
        "the kept ensemble's pretrained network"
        if chosen == "ensemble"
        else f"the kept {chosen} classifier"
    )
    if configured != "auto":
        choice = {
            "source": configured,
            "reason": f"set by recommender.embedding_source: {configured}",
        }
    elif autoencoder_input["input"] == "foreground":
        choice = {
            "source": "combined",
            "reason": (
                "the autoencoders see foreground maps (they separate the categories better than "
                f"the photos), so their latents, beside the embedding of {kept}, are served"
            ),
        }
    else:
        choice = {
            "source": "descriptor",
            "reason": (
                "the plain photos separate the categories at least as well as foreground maps, so "
                f"the mid-level descriptor of {kept} is served"
            ),
        }
    logger.info("Served embedding source: %s (%s)", choice["source"], choice["reason"])
    return choice


def build_index(
    images: np.ndarray,
    manifest: pd.DataFrame,
    categories: list[str],
    classifier: Any,
    sources: dict[str, np.ndarray],
    served_source: dict[str, str],
    autoencoder_input: dict[str, Any],
    preprocessing: dict[str, Any],
    pretrained: dict[str, Any],
    recommender: dict[str, Any],
    *encoders: Any,
    built: list[str],
) -> dict[str, np.ndarray]:
    """The served index over the whole catalog, made by the service's own query code.

    Model sources are embedded with `QueryEncoder`, the class the service embeds queries with, and
    the index records its `IndexSpec` (source, descriptor layout, combined weight), so catalog and
    query vectors are made the same way.
    """
    source = served_source["source"]
    spec = IndexSpec(
        source,
        descriptor_layout=tuple(int(v) for v in sources["descriptor_layout"])
        if source == "descriptor"
        else None,
        combined_autoencoder_weight=float(recommender["combined_autoencoder_weight"])
        if source == "combined"
        else None,
    )
    item_ids = manifest["item_id"].to_numpy().astype(str)
    if source in MODEL_SOURCES:
        encoder = _query_encoder(
            spec,
            classifier,
            encoders,
            built,
            categories,
            preprocessing,
            autoencoder_input,
            pretrained,
        )
        vectors = encoder.catalog_vectors(
            images, manifest["store_index"].to_numpy(), manifest["category"].to_numpy()
        )
    else:
        # an evaluation-only source (pixels, pca; rows follow the manifest): the service
        # refuses to serve it
        vectors = sources[source]
    hnsw = recommender["hnsw"]
    backend = recommender["index_backend"]
    index = EmbeddingIndex(
        item_ids,
        vectors,
        backend=backend,
        hnsw_m=int(hnsw["m"]),
        ef_construction=int(hnsw["ef_construction"]),
        ef_search=int(hnsw["ef_search"]),
        ivfpq=IvfPqSettings.from_config(recommender.get("ivfpq"), int(recommender["seed"])),
        # IVF-PQ: one index per category, the category filter's partition
        partitions=manifest["category"].to_numpy().astype(str) if backend == "ivfpq" else None,
    )
    logger.info(
        "Index: %d items, source '%s', %d dimensions, backend %s",
        len(index.item_ids),
        source,
        index.dimension,
        index.backend,
    )
    return {**index.to_arrays(), **spec.to_arrays()}


def _query_encoder(
    spec: IndexSpec,
    classifier: Any,
    encoders: tuple[Any, ...],
    built: list[str],
    categories: list[str],
    preprocessing: dict[str, Any],
    autoencoder_input: dict[str, Any],
    pretrained: dict[str, Any],
) -> QueryEncoder:
    """The service's query code over this run's models (encoders in the order of `built`; the
    frozen backbone for `backbone` vectors)."""
    from jewelry_pipeline.core.models.backbone import frozen_backbone

    settings = Preprocessing.from_config(preprocessing, autoencoder_input["input"])
    backbone = (
        frozen_backbone(pretrained, settings.image_size) if spec.source == "backbone" else None
    )
    return QueryEncoder(
        spec, classifier, dict(zip(built, encoders)), categories, settings, backbone
    )


RATES = ("top_result_category_rate", "uncertain_rate", "no_close_match_rate")


def _answer_rate(
    queries: QueryBatch,
    truth: np.ndarray,
    index: EmbeddingIndex,
    item_categories: np.ndarray,
    class_names: list[str],
    spec: IndexSpec,
    policy: AnswerPolicy,
    gallery: np.ndarray,
) -> dict[str, Any]:
    """How the answers of `queries` (searching only `gallery`) turn out.

    The share whose top result is of the query's true category (a "not in our catalog" answer
    shows none), the share marked uncertain and the share not in the catalog (the `RATES`); per
    photo, whether its top result is of its category.
    """
    answers = [
        answer_query(
            queries, row, index, item_categories, class_names, spec, policy, 1, within=gallery
        )
        for row in range(len(truth))
    ]
    hits = np.array(
        [a.close_match and item_categories[a.positions[0]] == t for a, t in zip(answers, truth)]
    )
    return {
        "hits": hits,
        "top_result_category_rate": float(np.mean(hits)),
        "uncertain_rate": float(np.mean([a.uncertain for a in answers])),
        "no_close_match_rate": float(np.mean([not a.close_match for a in answers])),
    }


def _min_confidence(
    confidences: np.ndarray, in_category: dict[str, Any], across: dict[str, Any], configured: Any
) -> float:
    """The confidence under which every category is searched: the candidate (validation
    confidences' quantiles up to the median, and 0) under which the most validation answers have
    a top result of the right category, or the configured value."""
    if configured != "auto":
        return float(configured)
    candidates = np.unique(
        np.concatenate([[0.0], np.quantile(confidences, np.linspace(0, 0.5, 11))])
    )
    rates = [
        np.mean(np.where(confidences < c, across["hits"], in_category["hits"])) for c in candidates
    ]
    return float(candidates[int(np.argmax(rates))])  # the first best: the least doubting


def _min_familiarity(
    validation: np.ndarray, foreign: np.ndarray, settings: dict[str, Any]
) -> float:
    """The familiarity under which a photo is "not in our catalog": the lowest validation
    quantile, up to `max_refused_share`, that refuses `foreign_refused_target` of the made-up
    foreign images (else the quantile at `max_refused_share`)."""
    shares = np.linspace(0.0, float(settings["max_refused_share"]), 13)
    thresholds = np.quantile(validation, shares)
    target = float(settings["foreign_refused_target"])
    for threshold in thresholds:
        if len(foreign) and np.mean(foreign < threshold) >= target:
            return float(threshold)
    return float(thresholds[-1])


def _familiarity_reference(
    encoder: QueryEncoder,
    images: np.ndarray,
    rows: np.ndarray,
    categories: np.ndarray,
    settings: dict[str, Any],
    seed: int,
) -> FamiliarityReference:
    """The familiarity reference: a sample of the given (train) photos' pooled features."""
    if len(rows) == 0:
        raise ValueError("the familiarity reference needs train photos; the split made none")
    familiarity = settings["familiarity"]
    return FamiliarityReference.sample(
        encoder.classifier_outputs(images, rows)[2],
        categories,
        size=int(familiarity["reference_size"]),
        neighbours=int(familiarity["neighbours"]),
        seed=seed,
    )


def choose_answer_policy(
    images: np.ndarray,
    manifest: pd.DataFrame,
    categories: list[str],
    classifier: Any,
    index_arrays: dict[str, np.ndarray],
    autoencoder_input: dict[str, Any],
    preprocessing: dict[str, Any],
    pretrained: dict[str, Any],
    recommender: dict[str, Any],
    *encoders: Any,
    built: list[str],
) -> tuple[dict[str, Any], dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The answer thresholds, chosen on validation photos and made-up foreign images, test
    answers without and with them, and the familiarity reference (for the bundle).

    Validation photos search the train photos; test photos search train and validation photos.
    `min_confidence` follows `_min_confidence`, `min_familiarity` ("not in our catalog") follows
    `_min_familiarity` on the familiarity (`core.familiarity`, against train photos) of validation
    photos and made-up images (`core.foreign`), whose refused shares are reported. Either
    threshold may be set in the parameters instead.
    """
    settings = recommender["answers"]
    spec = IndexSpec.from_arrays(index_arrays)
    if spec.source not in MODEL_SOURCES:
        logger.warning(
            "The index serves '%s' vectors, which the service cannot make from a photo: "
            "no answer thresholds",
            spec.source,
        )
        return {**AnswerPolicy().to_config(), "test": {}}, single_step({}), {}
    index = EmbeddingIndex.from_arrays(index_arrays).build()
    in_index = manifest.set_index(manifest["item_id"].astype(str)).loc[index.item_ids]
    item_categories = in_index["category"].to_numpy().astype(str)
    splits, rows = in_index["split"].to_numpy(), in_index["store_index"].to_numpy()
    encoder = _query_encoder(
        spec, classifier, encoders, built, categories, preprocessing, autoencoder_input, pretrained
    )
    val, test = np.flatnonzero(splits == "val"), np.flatnonzero(splits == "test")
    if len(val) == 0:
        raise ValueError("choosing the answer thresholds needs validation photos; none were made")
    train = np.flatnonzero(splits == "train")
    encoder.familiarity = _familiarity_reference(
        encoder, images, rows[train], item_categories[train], settings, int(recommender["seed"])
    )
    val_queries = encoder.encode_rows(images, rows[val])
    measure = partial(
        _answer_rate,
        index=index,
        item_categories=item_categories,
        class_names=list(categories),
        spec=spec,
    )

    # Each validation photo answered both ways once: in its predicted category, and (as when not
    # sure) across every category. Under threshold c a photo is answered the second way exactly
    # when its confidence is below c, so every candidate is scored from these two answers.
    truth, train_gallery = item_categories[val], splits == "train"
    in_category = measure(val_queries, truth, policy=AnswerPolicy(0.0), gallery=train_gallery)
    across = measure(val_queries, truth, policy=AnswerPolicy(1.0), gallery=train_gallery)
    confidences = val_queries.probabilities.max(axis=1)
    min_confidence = _min_confidence(confidences, in_category, across, settings["min_confidence"])
    foreign = encoder.encode(foreign_images(int(settings["foreign_images"]), images.shape[1]))
    configured = settings["min_familiarity"]
    policy = AnswerPolicy(
        min_confidence,
        _min_familiarity(val_queries.familiarity, foreign.familiarity, settings)
        if configured == "auto"
        else float(configured),
    )
    report: dict[str, dict[str, float]] = {}
    if len(test):
        test_queries = encoder.encode_rows(images, rows[test])
        gallery = splits != "test"
        for name, chosen in (("before", AnswerPolicy()), ("after", policy)):
            rates = measure(test_queries, item_categories[test], policy=chosen, gallery=gallery)
            report[name] = {key: rates[key] for key in RATES}
    stored, metrics = _answer_outputs(policy, report, val_queries.familiarity, foreign.familiarity)
    return stored, metrics, encoder.familiarity.to_arrays()


def _answer_outputs(
    policy: AnswerPolicy,
    report: dict[str, dict[str, float]],
    validation: np.ndarray,
    foreign: np.ndarray,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The answer policy as stored (with its test report and the shares of validation photos and
    foreign images it refuses, by their familiarity), and its metrics."""
    refused = {
        "validation_share": float(np.mean(validation < policy.min_familiarity)),
        "foreign_share": float(np.mean(foreign < policy.min_familiarity)),
    }
    logger.info(
        "Answer thresholds: %s; test answers without and with them: %s", policy.to_config(), report
    )
    logger.info(
        "Not in our catalog below familiarity %.3f: %.1f%% of validation photos, %.1f%% of %d "
        "made-up foreign images",
        policy.min_familiarity,
        100 * refused["validation_share"],
        100 * refused["foreign_share"],
        len(foreign),
    )
    metrics = {
        f"{when}.{key}": value for when, rates in report.items() for key, value in rates.items()
    }
    metrics.update(policy.to_config())
    metrics.update({f"not_in_catalog.{key}": value for key, value in refused.items()})
    return {**policy.to_config(), "test": report, "not_in_catalog": refused}, single_step(metrics)
