"""Catalog-update nodes: decode and vet new photos, embed them with the bundle's models, and write a
new bundle version with the grown catalog, index and thumbnails (same models)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.bulk import embed_in_chunks
from jewelry_pipeline.core.bundle import BundleContents, ServingBundle, catalog_rows
from jewelry_pipeline.core.drift import (
    DriftThresholds,
    classifier_view,
    drift_report,
    sample_rows,
)
from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.folders import RawImageFolder
from jewelry_pipeline.core.ingest import REJECT_COLUMNS, IngestSettings, ingest_folder
from jewelry_pipeline.core.query import QueryEncoder
from jewelry_pipeline.core.search import ClusterCentroids, EmbeddingIndex
from jewelry_pipeline.core.thumbnails import Thumbnails, catalog_thumbnails

logger = logging.getLogger(__name__)


def decode_new_photos(
    new_images: RawImageFolder, bundle: ServingBundle, ingestion: dict[str, Any]
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Decode the new photos with the safe decoder at the bundle's own preprocessing; refuse photos
    of a category the models do not know and photos already in the catalog (reported, not added)."""
    settings = IngestSettings.from_config(bundle.preprocessing, ingestion)
    store, manifest, rejects, _ = ingest_folder(new_images, {}, settings)
    known = set(bundle.class_names)
    in_catalog = dict(zip(bundle.catalog["item_id"].astype(str), bundle.catalog["path"]))
    refused = []
    for row in manifest.itertuples(index=False):
        if row.category not in known:
            refused.append(
                (row, "unknown_category", f"the models know {sorted(known)}; retrain to add one")
            )
        elif row.item_id in in_catalog:
            refused.append(
                (row, "duplicate", f"already in the catalog as {in_catalog[row.item_id]}")
            )
    if refused:
        extra = pd.DataFrame(
            [
                {"path": r.path, "category": r.category, "reason": why, "detail": detail}
                for r, why, detail in refused
            ],
            columns=REJECT_COLUMNS,
        )
        rejects = pd.concat([rejects, extra], ignore_index=True)
        manifest = manifest[~manifest["item_id"].isin({r.item_id for r, _, _ in refused})]
    manifest = manifest.reset_index(drop=True)
    if manifest.empty:
        raise UserInputError(
            f"No new photo can be added from {new_images.root}: {len(rejects)} refused "
            "(see data/08_reporting/catalog_update_rejects.csv). Nothing was changed."
        )
    logger.info("catalog update: %d new photos to add, %d refused", len(manifest), len(rejects))
    return store, manifest, rejects


def embed_new_photos(
    store: np.ndarray, manifest: pd.DataFrame, bundle: ServingBundle, update: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Index vectors of the new photos (each in its category's space, as the catalog's rows) and
    their nearest cluster. Embedded in chunks kept in `catalog_update.work_dir`, so an update killed
    half-way resumes from its last finished chunk."""
    encoder = QueryEncoder.of_bundle(bundle)
    vectors = embed_in_chunks(
        encoder,
        store,
        manifest["store_index"].to_numpy(),
        manifest["category"].to_numpy(),
        update["work_dir"],
        identity=bundle.digest + ",".join(manifest["item_id"].astype(str)),
        chunk_rows=int(update.get("chunk_rows", 2048)),
        batch_size=int(update.get("batch_size", 256)),
    )
    centroids = ClusterCentroids.of(
        bundle.index["vectors"], bundle.catalog["category"], bundle.catalog["cluster"]
    )
    clusters = np.array(
        [
            -1 if (c := centroids.nearest(v, cat)) is None else c
            for v, cat in zip(vectors, manifest["category"].astype(str))
        ]
    )
    return {"vectors": vectors, "clusters": clusters}


def check_drift(
    store: np.ndarray, manifest: pd.DataFrame, bundle: ServingBundle, update: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The new photos against the training run's held-out photos (category shares, classifier
    confidence, embeddings): Evidently's HTML report, its figures, a log warning per threshold
    crossed."""
    drift = update["drift"]
    if bundle.drift_reference is None:
        reason = "the bundle holds no drift reference (packaged before drift reports); retrain"
        logger.warning("catalog update: no drift report: %s", reason)
        return f"<html><body><p>No drift report: {reason}.</p></body></html>", {"skipped": reason}
    thresholds, seed = DriftThresholds.from_config(drift), int(drift.get("seed", 0))
    chosen = sample_rows(len(manifest), thresholds.max_new_photos, seed)  # before the model runs
    embeddings, probabilities, _ = QueryEncoder.of_bundle(bundle).classifier_outputs(
        store, manifest["store_index"].to_numpy()[chosen], int(update.get("batch_size", 256))
    )
    current = classifier_view(
        manifest["category"].to_numpy()[chosen], probabilities, embeddings, bundle.class_names
    )
    html, figures = drift_report(
        bundle.drift_reference, current, thresholds, seed=seed, new_photos=len(manifest)
    )
    where = "see data/08_reporting/catalog_update_drift.html"
    for warning in figures["warnings"]:
        logger.warning(
            "DRIFT: the new photos are unlike the training photos: %s; %s", warning, where
        )
    if figures["too_few_new_photos"]:
        logger.info(
            "drift: %d new photos are too few to warn on (min_new_photos); figures: %s",
            figures["new_photos"],
            "; ".join(figures["crossed"]) or "no threshold crossed",
        )
    elif not figures["warnings"]:
        logger.info(
            "drift: the %d new photos look like the training photos (no threshold crossed); %s",
            figures["new_photos"],
            where,
        )
    return html, figures


def _grown_index(
    index: dict[str, np.ndarray], added: pd.DataFrame, vectors: np.ndarray
) -> dict[str, np.ndarray]:
    """The bundle's index arrays with the `added` rows' vectors appended."""
    old = EmbeddingIndex.from_arrays(index)
    # The grown index is built anew (an IVF-PQ index retrains its lists; its vectors are read into
    # memory to be joined); partitioned indexes label the new rows with their categories.
    grown = replace(
        old,
        item_ids=np.concatenate([old.item_ids, added["item_id"].to_numpy()]),
        vectors=np.concatenate([np.asarray(old.vectors), vectors]),
        partitions=None
        if old.partitions is None
        else np.concatenate([old.partitions.labels(), added["category"].to_numpy()]),
    )
    grown_arrays = grown.to_arrays()  # IVF-PQ: trains its lists once
    spec_arrays = {k: v for k, v in index.items() if k not in grown_arrays}
    return {**grown_arrays, **spec_arrays}


def grow_bundle(
    bundle: ServingBundle,
    manifest: pd.DataFrame,
    embedded: dict[str, np.ndarray],
    new_images: RawImageFolder,
    store: np.ndarray,
    rejects: pd.DataFrame,
    package: dict[str, Any],
    ingestion: dict[str, Any],
) -> tuple[BundleContents, dict[str, Any]]:
    """The bundle's next version: same models, catalog, index and thumbnails grown by the new
    photos; and the update's summary (reason, counts) for MLflow and the report."""
    added = catalog_rows(manifest, embedded["clusters"], first_thumbnail_row=len(bundle.catalog))
    catalog = pd.concat([bundle.catalog, added], ignore_index=True)
    if "title" in catalog:
        catalog["title"] = catalog["title"].fillna("")
    new_thumbnails = catalog_thumbnails(
        manifest,
        new_images,
        store,
        side=int(package["thumbnail_size"]),
        limits=bundle.preprocessing.limits,
        workers=int(ingestion.get("workers", 4)),
    )
    thumbnails = Thumbnails.from_jpegs(
        [bundle.thumbnails.jpeg(i) for i in range(len(bundle.thumbnails))]
        + [new_thumbnails.jpeg(i) for i in range(len(new_thumbnails))]
    )
    summary = {
        "reason": "catalog update",
        "added": int(len(added)),
        "refused": int(len(rejects)),
        "catalog_size": int(len(catalog)),
        "added_by_category": added["category"].value_counts().sort_index().to_dict(),
        "base_bundle": bundle.digest[:16],
    }
    version = {**bundle.version, "catalog_update": summary}
    contents = BundleContents(
        classifier=bundle.classifier,
        encoders=bundle.encoders,
        index=_grown_index(bundle.index, added, embedded["vectors"]),
        catalog=catalog,
        thumbnails=thumbnails,
        class_names=bundle.class_names,
        preprocessing=bundle.preprocessing,
        version=version,
        answers=bundle.answers,
        title=bundle.title,
        drift_reference=bundle.drift_reference,  # still the training run's photos
        backbone=bundle.backbone,
        familiarity=bundle.familiarity,  # still the training run's photos
        substyles=bundle.substyles,  # the shop's names for its sub-styles
    )
    logger.info(
        "catalog update: %d added (%s), %d refused; the catalog now holds %d items",
        summary["added"],
        summary["added_by_category"],
        summary["refused"],
        summary["catalog_size"],
    )
    return contents, summary


def record_catalog_update(summary: dict[str, Any], drift: dict[str, Any]) -> None:
    """The update's reason as an MLflow tag, its counts and drift figures as metrics of this run."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.set_tags({"catalog_update.reason": summary["reason"]})
    metrics = {
        "catalog_update.added": float(summary["added"]),
        "catalog_update.refused": float(summary["refused"]),
        "catalog_update.catalog_size": float(summary["catalog_size"]),
    }
    if "skipped" not in drift:
        figures = {
            "drift.agreement_p_value": drift["agreement"]["p_value"],
            "drift.agreement": drift["agreement"]["new"],
            "drift.reference_agreement": drift["agreement"]["reference"],
            "drift.confidence_p_value": drift["confidence"]["p_value"],
            "drift.confidence_median": drift["confidence"]["new_median"],
            "drift.reference_confidence_median": drift["confidence"]["reference_median"],
            "drift.embedding_roc_auc": drift["embeddings"]["roc_auc"],
            "drift.warnings": float(len(drift["warnings"])),
            "drift.new_photos": float(drift["new_photos"]),
        }
        metrics |= {name: value for name, value in figures.items() if value is not None}
    mlflow.log_metrics(metrics)
