"""Package nodes: the promotion decision, the registry acting on it, and the serving bundle."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.answers import AnswerPolicy
from jewelry_pipeline.core.bundle import BundleContents
from jewelry_pipeline.core.images import DecodeLimits, ImageRejected, Preprocessing, decode_image
from jewelry_pipeline.core.thumbnails import Thumbnails, thumbnail_jpeg

if TYPE_CHECKING:  # heavy libraries load inside the nodes that use them
    import keras

    from jewelry_pipeline.datasets.image_folder import RawImageFolder

logger = logging.getLogger(__name__)


def decide_promotion(
    new_metrics: dict[str, float], champion: dict[str, Any], package: dict[str, Any]
) -> dict[str, Any]:
    """Promote when there is no champion or the new run's metric is at least the champion's."""
    metric = package["promotion_metric"]
    new_value = float(new_metrics[metric])
    if not champion["exists"] or champion["metric"] is None:
        promote, reason = True, f"no current champion; {metric}={new_value:.4f}"
    elif new_value >= float(champion["metric"]):
        promote, reason = (
            True,
            f"{metric} {new_value:.4f} >= champion v{champion['version']} {champion['metric']:.4f}",
        )
    else:
        promote, reason = (
            False,
            f"{metric} {new_value:.4f} < champion v{champion['version']} {champion['metric']:.4f}",
        )
    logger.info("Promotion decision: %s (%s)", "promote" if promote else "keep champion", reason)
    return {
        "promote": promote,
        "reason": reason,
        "metric": metric,
        "new_value": new_value,
        "champion_value": champion["metric"],
        "champion_version": champion["version"],
    }


def _models_logged_by(experiment_id: str, run_id: str) -> dict[str, Any]:
    """The models this run logged, by name: never another run's, even one that finished later."""
    import mlflow

    models = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_time", "ascending": True}],
        output_format="list",
    )
    return {model.name: model for model in models}


def register_run_models(decision: dict[str, Any], package: dict[str, Any]) -> dict[str, Any]:
    """Register this run's own models; the champion alias moves to them only when promoted.

    The classifier registers as `registry.classifier` and each category's encoder as
    `registry.encoder_prefix` + category. The run is tagged with the decision and its reason; the
    returned record (the decision and the registered versions) is logged as `promotion.json`.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("Promotion needs an active MLflow run (run it through `kedro run`).")
    logged = _models_logged_by(run.info.experiment_id, run.info.run_id)
    if "classifier" not in logged:
        raise RuntimeError(
            f"This run ({run.info.run_id}) logged no classifier model; promotion registers only "
            "the models of its own run. Run the models and `package` together: `kedro run` (or "
            "`--pipelines classifier,autoencoders,clustering,recommender,package`)."
        )
    registry = package["registry"]
    to_register = {registry["classifier"]: logged["classifier"]}
    to_register |= {
        registry["encoder_prefix"] + name.removeprefix("encoder_"): model
        for name, model in logged.items()
        if name.startswith("encoder_")
    }
    client = MlflowClient()
    versions = {}
    for registered_name, model in to_register.items():
        version = mlflow.register_model(model.model_uri, registered_name)
        versions[registered_name] = int(version.version)
        if decision["promote"]:
            client.set_registered_model_alias(registered_name, registry["alias"], version.version)
    outcome = "promoted" if decision["promote"] else "kept_champion"
    mlflow.set_tags({"promotion.decision": outcome, "promotion.reason": decision["reason"]})
    logger.info(
        "Promotion: %s (%s)",
        "promoted" if decision["promote"] else "champion kept",
        decision["reason"],
    )
    return {**decision, "registered_versions": versions}


def catalog_title(configured: str | None, raw_dir: str) -> str:
    """The page's title: `package.title`, else the photo folder's name made readable."""
    if configured:
        return str(configured)
    name = Path(str(raw_dir)).name.replace("_", " ").replace("-", " ").strip()
    return name[:1].upper() + name[1:] if name else "Catalog"


def _original_thumbnail(
    raw_images: RawImageFolder, relpath: str, item_id: str, side: int, limits: DecodeLimits
) -> bytes | None:
    """The thumbnail of the original photo, or None when the file is gone or no longer the photo
    ingestion read (its sha256 no longer starts with the item id)."""
    try:
        data = raw_images.read(relpath)
        if not hashlib.sha256(data).hexdigest().startswith(item_id):
            return None
        return thumbnail_jpeg(decode_image(data, limits, draft_size=side), side)
    except (OSError, ImageRejected):
        return None


def make_thumbnails(
    catalog: pd.DataFrame,
    raw_images: RawImageFolder,
    images: np.ndarray,
    preprocessing: dict[str, Any],
    package: dict[str, Any],
    ingestion: dict[str, Any],
) -> Thumbnails:
    """One JPEG per catalog item from its original photo, `package.thumbnail_size` px on the longer
    side; a photo changed or gone since ingestion falls back to its model-size store row."""
    side, limits = int(package["thumbnail_size"]), DecodeLimits.from_config(preprocessing)
    rows = list(catalog[["path", "item_id", "store_index"]].itertuples(index=False))
    jpegs: list[bytes] = []
    fallbacks, started, last_log = 0, time.perf_counter(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=int(ingestion.get("workers", 4))) as pool:
        made = pool.map(
            lambda r: _original_thumbnail(raw_images, str(r.path), str(r.item_id), side, limits),
            rows,
        )
        for row, jpeg in zip(rows, made):
            if jpeg is None:
                fallbacks += 1
                jpeg = thumbnail_jpeg(np.asarray(images[int(row.store_index)]), side)
            jpegs.append(jpeg)
            now = time.perf_counter()
            if now - last_log > 10:
                last_log = now
                done = len(jpegs)
                logger.info("thumbnails: %d/%d (%.0f/s)", done, len(rows), done / (now - started))
    if fallbacks:
        logger.warning(
            "%d of %d photos changed or disappeared since ingestion; their thumbnails are made "
            "from the model-size copy (run the whole pipeline again for sharp ones)",
            fallbacks,
            len(rows),
        )
    thumbnails = Thumbnails.from_jpegs(jpegs)
    logger.info(
        "thumbnails: %d at %d px, %.1f MB", len(thumbnails), side, len(thumbnails.data) / 1e6
    )
    return thumbnails


def assemble_bundle(
    promotion: dict[str, Any],
    classifier: keras.Model,
    index: dict[str, np.ndarray],
    catalog: pd.DataFrame,
    thumbnails: Thumbnails,
    categories: list[str],
    autoencoder_input: dict[str, Any],
    answer_policy: dict[str, Any],
    ingestion_identity: dict[str, Any],
    preprocessing: dict[str, Any],
    package: dict[str, Any],
    *encoders: keras.Model,
    built: list[str],
) -> BundleContents:
    """Everything the service needs, in index order, for the serving-bundle dataset.

    `promotion` is the registry's record (the decision and the registered versions). `encoders`
    come from the namespaces `built` (sorted); they must be the categories ingestion found, so
    each encoder is named by the category it was trained on.
    """
    if sorted(built) != sorted(categories) or len(encoders) != len(built):
        raise ValueError(
            f"The bundle would pair {len(encoders)} encoders of {sorted(built)} with the "
            f"categories {sorted(categories)} found by ingestion; run the whole pipeline on one "
            "folder (`kedro run --params raw_dir=...`)."
        )
    order = pd.Series(range(len(catalog)), index=catalog["item_id"].astype(str))
    rows = order.loc[index["item_ids"].astype(str)].to_numpy()
    served = catalog.iloc[rows].reset_index(drop=True)
    served = served.assign(thumbnail_row=np.arange(len(served)))
    return BundleContents(
        classifier=classifier,
        encoders=dict(zip(sorted(built), encoders)),
        index=index,
        catalog=served,
        thumbnails=thumbnails.select(rows),
        class_names=list(categories),
        preprocessing=Preprocessing.from_config(preprocessing, autoencoder_input["input"]),
        answers=AnswerPolicy.from_config(answer_policy),
        title=catalog_title(package.get("title"), ingestion_identity.get("raw_dir", "")),
        version={"promotion": promotion},
    )
