"""Package nodes: the promotion decision, the registry acting on it, and the serving bundle."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.answers import AnswerPolicy
from jewelry_pipeline.core.bundle import BundleContents
from jewelry_pipeline.core.drift import reference_sample
from jewelry_pipeline.core.folders import RawImageFolder
from jewelry_pipeline.core.hints import KerasModel  # Keras loads inside the nodes that use it
from jewelry_pipeline.core.images import Preprocessing
from jewelry_pipeline.core.thumbnails import Thumbnails, catalog_thumbnails

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


PROMOTED, KEPT = "promoted", "kept_champion"
PENDING_TAG = "promotion.pending"  # on a version until every model of its run is registered


def register_run_models(decision: dict[str, Any], package: dict[str, Any]) -> dict[str, Any]:
    """Register this run's own models, then point the champion alias at the best promoted run.

    The encoders register first (as `registry.encoder_prefix` + category), the classifier last (as
    `registry.classifier`), tagged with the decision, its metric value and the encoder versions: a
    classifier version exists only once its whole set does. The alias then follows
    `reconcile_champion`, which is safe when several runs register at once. The run is tagged with
    the decision; the returned record is logged as `promotion.json`.
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
    client = MlflowClient()
    _drop_abandoned_versions(client, registry, run.info.run_id)
    outcome = PROMOTED if decision["promote"] else KEPT
    versions: dict[str, int] = {}
    encoders = {
        registry["encoder_prefix"] + name.removeprefix("encoder_"): model
        for name, model in logged.items()
        if name.startswith("encoder_")
    }
    for registered_name, model in encoders.items():
        version = mlflow.register_model(
            model.model_uri, registered_name, tags={PENDING_TAG: run.info.run_id}
        )
        versions[registered_name] = int(version.version)
    classifier = mlflow.register_model(
        logged["classifier"].model_uri,
        registry["classifier"],
        tags={
            "promotion.decision": outcome,
            "promotion.value": repr(float(decision.get("new_value", 0.0))),
            "promotion.encoders": json.dumps(versions, sort_keys=True),
        },
    )
    for registered_name, number in versions.items():  # the set is complete
        client.delete_model_version_tag(registered_name, str(number), PENDING_TAG)
    versions = {registry["classifier"]: int(classifier.version), **versions}
    champion = reconcile_champion(client, registry["classifier"], registry["alias"])
    mlflow.set_tags({"promotion.decision": outcome, "promotion.reason": decision["reason"]})
    logger.info(
        "Promotion: %s (%s); champion is %s v%s",
        "promoted" if decision["promote"] else "champion kept",
        decision["reason"],
        registry["classifier"],
        champion,
    )
    return {
        **decision,
        "registered_versions": versions,
        "champion_version": champion,
        "is_champion": champion == int(classifier.version),
    }


ABANDONED_AFTER_SECONDS = 6 * 3600  # a run still "RUNNING" this long after it started is dead


def _listed_encoders(client: Any, classifier: str) -> set[tuple[str, int]]:
    """Every (encoder name, version) some classifier version lists as its set."""
    listed = set()
    for version in client.search_model_versions(f"name = '{classifier}'"):
        for name, number in json.loads(version.tags.get("promotion.encoders", "{}")).items():
            listed.add((name, int(number)))
    return listed


def _run_ended(client: Any, run_id: str) -> bool:
    """Whether a run is over: finished, failed, gone, or "running" for longer than any run does
    (a process killed with its server never closes its run)."""
    from mlflow.exceptions import MlflowException

    try:
        info = client.get_run(run_id).info
    except MlflowException:
        return True
    age = time.time() - (info.start_time or 0) / 1000
    return info.status != "RUNNING" or age > ABANDONED_AFTER_SECONDS


def _drop_abandoned_versions(client: Any, registry: dict[str, Any], run_id: str) -> None:
    """Delete encoder versions left pending by a run that ended while registering (its classifier
    version was never made). A pending version some classifier lists is complete: only its tag is
    removed."""
    listed = _listed_encoders(client, registry["classifier"])
    for model in client.search_registered_models(f"name LIKE '{registry['encoder_prefix']}%'"):
        for version in client.search_model_versions(f"name = '{model.name}'"):
            owner = version.tags.get(PENDING_TAG)
            if not owner or owner == run_id:
                continue
            if (model.name, int(version.version)) in listed:
                client.delete_model_version_tag(model.name, version.version, PENDING_TAG)
            elif _run_ended(client, owner):
                logger.warning(
                    "Deleting %s v%s: its run %s ended before registering its classifier",
                    model.name,
                    version.version,
                    owner,
                )
                client.delete_model_version(model.name, version.version)


def _complete(client: Any, version: Any) -> bool:
    """Whether every encoder version a classifier version lists still exists."""
    from mlflow.exceptions import MlflowException

    for name, number in json.loads(version.tags["promotion.encoders"]).items():
        try:
            client.get_model_version(name, str(number))
        except MlflowException:
            return False
    return True


def _best_promoted(client: Any, classifier: str) -> Any | None:
    """The promoted classifier version with the highest metric value (ties: the newer one), among
    those whose encoder set is whole."""
    promoted = [
        v
        for v in client.search_model_versions(f"name = '{classifier}'")
        if v.tags.get("promotion.decision") == PROMOTED and "promotion.encoders" in v.tags
    ]
    ranked = sorted(
        promoted, key=lambda v: (float(v.tags["promotion.value"]), int(v.version)), reverse=True
    )
    return next((v for v in ranked if _complete(client, v)), None)


def reconcile_champion(client: Any, classifier: str, alias: str, rounds: int = 20) -> int | None:
    """Point `alias` at the best promoted classifier version and its run's encoders; return it.

    Several runs may do this at once, each reading the registry and then writing the aliases. Each
    repeats until a read after its own last write agrees, so the run that finishes last leaves
    the aliases on the best version registered so far, whatever order the writes interleaved in.
    """
    from mlflow.exceptions import MlflowException

    for _ in range(rounds):
        best = _best_promoted(client, classifier)
        if best is None:
            return None
        wanted = {classifier: int(best.version)} | {
            name: int(number)
            for name, number in json.loads(best.tags["promotion.encoders"]).items()
        }
        current = {}
        for name in wanted:
            try:
                current[name] = int(client.get_model_version_by_alias(name, alias).version)
            except MlflowException:
                current[name] = None
        if current == wanted:
            return int(best.version)
        for name, number in sorted(wanted.items(), key=lambda item: item[0] == classifier):
            if current[name] != number:
                client.set_registered_model_alias(name, alias, str(number))
        time.sleep(0.2)
    raise RuntimeError(
        f"The alias '{alias}' of {classifier} kept changing under this run ({rounds} rounds); "
        "another process is moving it. Check the registry and run `package` again."
    )


def catalog_title(configured: str | None, raw_dir: str) -> str:
    """The page's title: `package.title`, else the photo folder's name made readable."""
    if configured:
        return str(configured)
    name = Path(str(raw_dir)).name.replace("_", " ").replace("-", " ").strip()
    return name[:1].upper() + name[1:] if name else "Catalog"


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
    return catalog_thumbnails(
        catalog,
        raw_images,
        images,
        side=int(package["thumbnail_size"]),
        limits=Preprocessing.from_config(preprocessing).limits,
        workers=int(ingestion.get("workers", 4)),
    )


def assemble_bundle(
    promotion: dict[str, Any],
    classifier: KerasModel,
    index: dict[str, np.ndarray],
    catalog: pd.DataFrame,
    thumbnails: Thumbnails,
    categories: list[str],
    autoencoder_input: dict[str, Any],
    answer_policy: dict[str, Any],
    familiarity_reference: dict[str, np.ndarray],
    ingestion_identity: dict[str, Any],
    classifier_embeddings: dict[str, np.ndarray],
    manifest: pd.DataFrame,
    preprocessing: dict[str, Any],
    pretrained: dict[str, Any],
    package: dict[str, Any],
    drift: dict[str, Any],
    substyle_criterion: dict[str, Any],
    *encoders: KerasModel,
    built: list[str],
) -> BundleContents:
    """Everything the service needs, in index order, for the serving-bundle dataset.

    `promotion` is the registry's record (the decision and the registered versions). `encoders`
    come from the namespaces `built` (sorted); they must be the categories ingestion found, so
    each encoder is named by the category it was trained on. An index of frozen `backbone`
    features brings the frozen backbone along (rebuilt from its pinned weights).
    """
    from jewelry_pipeline.core.models.backbone import frozen_backbone

    if sorted(built) != sorted(categories) or len(encoders) != len(built):
        raise ValueError(
            f"The bundle would pair {len(encoders)} encoders of {sorted(built)} with the "
            f"categories {sorted(categories)} found by ingestion; run the whole pipeline on one "
            "folder (`kedro run --params raw_dir=...`)."
        )
    settings = Preprocessing.from_config(preprocessing, autoencoder_input["input"])
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
        preprocessing=settings,
        answers=AnswerPolicy.from_config(answer_policy),
        title=catalog_title(package.get("title"), ingestion_identity.get("raw_dir", "")),
        version={"promotion": promotion},
        drift_reference=held_out_reference(classifier_embeddings, manifest, categories, drift),
        backbone=frozen_backbone(pretrained, settings.image_size)
        if str(index.get("source", "")) == "backbone"
        else None,
        familiarity=familiarity_reference or None,  # none for an evaluation-only index source
        substyles={"criterion": substyle_criterion} if substyle_criterion else None,
    )


def held_out_reference(
    embedded: dict[str, np.ndarray],
    manifest: pd.DataFrame,
    class_names: list[str],
    drift: dict[str, Any],
) -> dict[str, np.ndarray]:
    """The drift reference: a sample of the held-out (validation and test) photos, unseen in
    training as new photos are, with the classifier's confidence and embeddings of each."""
    held_out = manifest[manifest["split"] != "train"]
    if held_out.empty:
        held_out = manifest
    position = pd.Series(range(len(embedded["item_id"])), index=embedded["item_id"].astype(str))
    rows = position.loc[held_out["item_id"].astype(str)].to_numpy()
    return reference_sample(
        held_out["category"].to_numpy(),
        embedded["probabilities"][rows],
        embedded["embeddings"][rows],
        class_names,
        size=int(drift["reference_size"]),
        seed=int(drift["seed"]),
    )
