"""Promotion decisions both ways, registration against a real MLflow registry under tmp_path, and
bundle assembly."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from jewelry_pipeline.core.models.autoencoder import build_autoencoder
from jewelry_pipeline.core.models.classifier import build_classifier
from jewelry_pipeline.core.search import EmbeddingIndex
from jewelry_pipeline.core.thumbnails import Thumbnails
from jewelry_pipeline.datasets import KerasModelDataset, MlflowChampionDataset
from jewelry_pipeline.pipelines.package.nodes import (
    assemble_bundle,
    catalog_title,
    decide_promotion,
    reconcile_champion,
    register_run_models,
)

PACKAGE = {
    "promotion_metric": "test_accuracy",
    "registry": {"classifier": "clf", "encoder_prefix": "enc-", "alias": "champion"},
}
NO_CHAMPION = {"exists": False, "version": None, "metric": None}
CHAMPION_V3 = {"exists": True, "version": 3, "metric": 0.8}


def test_decision_rules():
    first = decide_promotion({"test_accuracy": 0.8}, NO_CHAMPION, PACKAGE)
    assert first["promote"] and "no current champion" in first["reason"]
    assert decide_promotion({"test_accuracy": 0.8}, CHAMPION_V3, PACKAGE)["promote"]
    worse = decide_promotion({"test_accuracy": 0.7}, CHAMPION_V3, PACKAGE)
    assert not worse["promote"] and "< champion v3" in worse["reason"]


def _log_classifier(path) -> None:
    """A tiny classifier saved through the model dataset, so it is logged to the active run."""
    classifier = build_classifier(16, 2, filters=(4,), embedding_dim=4)
    KerasModelDataset(str(path), mlflow_name="classifier").save(classifier)


def _tracked_run(tmp_path, accuracy: float) -> str:
    """One MLflow run that logs a tiny classifier and its test accuracy, then the promotion gate."""
    with mlflow.start_run() as run:
        _log_classifier(tmp_path / f"clf_{accuracy}.keras")
        mlflow.log_metric("test_accuracy", accuracy)
        champion = MlflowChampionDataset("clf", "test_accuracy").load()
        decision = decide_promotion({"test_accuracy": accuracy}, champion, PACKAGE)
        record = register_run_models(decision, PACKAGE)
    client = MlflowClient()
    registered = len(client.search_model_versions("name='clf'"))
    champion = int(client.get_model_version_by_alias("clf", "champion").version)
    assert record == {
        **decision,
        "registered_versions": {"clf": registered},
        "champion_version": champion,
        "is_champion": champion == registered,
    }
    return run.info.run_id


def test_promotion_both_ways_in_a_real_registry(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("promotion-test")
    try:
        client = MlflowClient()
        good = _tracked_run(tmp_path, 0.9)
        assert client.get_model_version_by_alias("clf", "champion").run_id == good
        worse = _tracked_run(tmp_path, 0.6)
        assert (
            client.get_model_version_by_alias("clf", "champion").run_id == good
        )  # alias did not move
        assert (
            len(client.search_model_versions("name='clf'")) == 2
        )  # but the new model is registered
        assert client.get_run(worse).data.tags["promotion.decision"] == "kept_champion"
        assert "< champion v1" in client.get_run(worse).data.tags["promotion.reason"]
        better = _tracked_run(tmp_path, 0.95)
        assert client.get_model_version_by_alias("clf", "champion").run_id == better
    finally:
        mlflow.set_tracking_uri(None)


def test_assemble_bundle_orders_everything_by_the_index():
    rng = np.random.default_rng(0)
    catalog = pd.DataFrame(
        {
            "item_id": ["x", "y", "z"],
            "path": ["a/x", "b/y", "a/z"],
            "category": ["a", "b", "a"],
            "cluster": [0, 1, 0],
            "store_index": [2, 0, 1],
            "split": ["train", "test", "val"],
        }
    )
    embedded = {
        "item_id": np.array(["y", "x", "z"]),
        "embeddings": np.arange(6, dtype=np.float32).reshape(3, 2),
        "probabilities": np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]], np.float32),
    }
    index = EmbeddingIndex(["z", "x", "y"], rng.normal(size=(3, 4))).to_arrays()
    thumbnails = Thumbnails.from_jpegs([b"x-jpeg", b"y-jpeg", b"z-jpeg"])
    _, encoder, _ = build_autoencoder(16, (4,), 3)
    _, other, _ = build_autoencoder(16, (4,), 3)
    classifier = build_classifier(16, 2, filters=(4,))
    contents = assemble_bundle(
        {"promote": True},
        classifier,
        index,
        catalog,
        thumbnails,
        ["b", "a"],
        {"input": "photo"},
        {"min_confidence": 0.4, "min_familiarity": 0.2, "test": {}},
        {"vectors": np.eye(2, dtype=np.float16), "neighbours": np.array(1)},
        {"raw_dir": "/shop/photos/summer_rings"},
        embedded,
        catalog,
        {"image_size": 16},
        {"backbone": "efficientnet_lite0", "input_size": 32},
        {"title": None},
        {"reference_size": 10, "seed": 0},
        {"a": {"k": 2, "silhouette_by_k": {"2": 0.5, "3": 0.25}}},
        encoder,
        other,
        built=["a", "b"],
    )
    assert list(contents.catalog["item_id"]) == ["z", "x", "y"]
    # the catalog clustering's criterion by k, for the shop's sub-style view
    assert contents.substyles == {
        "criterion": {"a": {"k": 2, "silhouette_by_k": {"2": 0.5, "3": 0.25}}}
    }
    assert (contents.answers.min_confidence, contents.answers.min_familiarity) == (0.4, 0.2)
    assert contents.familiarity["vectors"].shape == (2, 2)  # the run's reference, carried along
    assert contents.title == "Summer rings"  # the photo folder's name, as no title is set
    # the drift reference: the held-out photos y (test) and z (val), each with its own figures
    reference = contents.drift_reference
    assert list(reference["category"]) == ["b", "a"]
    assert list(reference["predicted"]) == ["b", "b"]  # class order ["b", "a"]: argmax 0, 0
    np.testing.assert_allclose(reference["confidence"], [0.9, 0.5])
    np.testing.assert_allclose(reference["embeddings"], [[0, 1], [4, 5]])
    assert [contents.thumbnails.jpeg(r) for r in range(3)] == [b"z-jpeg", b"x-jpeg", b"y-jpeg"]
    assert list(contents.catalog["thumbnail_row"]) == [0, 1, 2]
    assert contents.encoders == {"a": encoder, "b": other} and contents.promoted is True
    assert contents.backbone is None  # a classifier index: no frozen backbone to carry
    assert (contents.preprocessing.image_size, contents.preprocessing.autoencoder_input) == (
        16,
        "photo",
    )
    with pytest.raises(
        ValueError, match=r"pair 2 encoders of \['a', 'b'\] with the categories \['a', 'b', 'c'\]"
    ):
        assemble_bundle(
            {"promote": True},
            classifier,
            index,
            catalog,
            thumbnails,
            ["a", "b", "c"],
            {"input": "photo"},
            {},
            {},
            {},
            {},
            {},
            {},
            {},
            {},
            {},
            {},
            encoder,
            other,
            built=["a", "b"],
        )


def test_registration_registers_the_encoders_under_their_category(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("encoders")
    try:
        client = MlflowClient()
        with mlflow.start_run() as run:
            _log_classifier(tmp_path / "clf.keras")
            _, encoder, _ = build_autoencoder(16, (4,), 3)
            rings = KerasModelDataset(str(tmp_path / "rings.keras"), mlflow_name="encoder_rings")
            rings.save(encoder)
            record = register_run_models({"promote": True, "reason": "first"}, PACKAGE)
        assert record["registered_versions"] == {"clf": 1, "enc-rings": 1}
        assert client.get_model_version_by_alias("enc-rings", "champion").run_id == run.info.run_id
        assert client.get_run(run.info.run_id).data.tags["promotion.decision"] == "promoted"
    finally:
        mlflow.set_tracking_uri(None)


def test_registration_without_a_logged_classifier_is_a_clear_error(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("empty")
    try:
        own_models_only = "logged no classifier model; promotion registers only the models of"
        with mlflow.start_run(), pytest.raises(RuntimeError, match=own_models_only):
            register_run_models({"promote": True, "reason": "x"}, PACKAGE)
        with pytest.raises(RuntimeError, match="needs an active MLflow run"):
            register_run_models({"promote": True, "reason": "x"}, PACKAGE)
    finally:
        mlflow.set_tracking_uri(None)


def test_overlapping_runs_each_register_their_own_models(tmp_path):
    """Run A logs its classifier, run B (another `kedro run` on the same store) logs one later, then
    A promotes: A registers its own model, not the experiment's newest. Broken on purpose once: with
    the experiment-wide "newest logged model" lookup, A's registered version came from B's run."""
    import threading

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("overlap")
    b_logged, a_registered = threading.Event(), threading.Event()
    run_ids, errors = {}, []

    def run(name: str, wait_for: threading.Event | None, then: threading.Event | None) -> None:
        try:
            with mlflow.start_run() as active:  # MLflow's active run is per thread
                run_ids[name] = active.info.run_id
                _log_classifier(tmp_path / f"{name}.keras")
                if then is not None and name == "b":
                    then.set()
                if wait_for is not None:
                    assert wait_for.wait(120)
                register_run_models({"promote": True, "reason": name}, PACKAGE)
                if name == "a":
                    a_registered.set()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    try:
        first = threading.Thread(target=run, args=("a", b_logged, None))
        first.start()
        while "a" not in run_ids and first.is_alive():
            first.join(0.05)
        second = threading.Thread(target=run, args=("b", a_registered, b_logged))
        second.start()
        first.join(300)
        second.join(300)
        assert not errors, errors
        client = MlflowClient()
        versions = {int(v.version): v for v in client.search_model_versions("name='clf'")}
        assert versions[1].run_id == run_ids["a"] and versions[2].run_id == run_ids["b"]
        assert versions[1].source.endswith(
            next(
                m.model_id
                for m in mlflow.search_logged_models(output_format="list")
                if m.source_run_id == run_ids["a"]
            )
        )
    finally:
        mlflow.set_tracking_uri(None)


def test_runs_that_decided_at_once_leave_the_alias_on_the_better_one(tmp_path):
    """Two runs read the registry before either registered (both see no champion, both decide to
    promote); the worse one registers last. Broken on purpose once: with "the alias moves to the
    run's own version when promoted", the alias ended on the worse run (0.5)."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("race")
    try:
        client = MlflowClient()
        decisions, run_ids = {}, {}
        for accuracy in (0.9, 0.5):  # both decide before either registers
            champion = MlflowChampionDataset("clf", "test_accuracy").load()
            decisions[accuracy] = decide_promotion({"test_accuracy": accuracy}, champion, PACKAGE)
        assert all(d["promote"] for d in decisions.values())
        records = {}
        for accuracy in (0.9, 0.5):  # the worse registers last
            with mlflow.start_run() as run:
                run_ids[accuracy] = run.info.run_id
                _log_classifier(tmp_path / f"race_{accuracy}.keras")
                records[accuracy] = register_run_models(decisions[accuracy], PACKAGE)
        assert client.get_model_version_by_alias("clf", "champion").run_id == run_ids[0.9]
        assert records[0.9]["is_champion"] and not records[0.5]["is_champion"]
        client.set_registered_model_alias("clf", "champion", "2")  # a stale write after both
        assert reconcile_champion(client, "clf", "champion") == 1
        assert client.get_model_version_by_alias("clf", "champion").run_id == run_ids[0.9]
    finally:
        mlflow.set_tracking_uri(None)


def test_the_catalog_title_is_the_setting_else_the_folder_name():
    assert catalog_title("Maison Dupont", "/data/x") == "Maison Dupont"
    assert catalog_title(None, "/data/01_raw/jewelry") == "Jewelry"
    assert catalog_title(None, "") == "Catalog"


def test_a_registration_cut_short_is_cleaned_without_breaking_a_listed_set(tmp_path):
    """Run A registered its whole set but kept a pending tag (its tag removal failed); run B
    registered an encoder and failed before its classifier. The next run removes A's tag and
    keeps A's encoder (a classifier lists it), and deletes B's. Broken on purpose once: with "delete
    every pending version of an ended run", A's encoder went and the champion's set broke."""
    from jewelry_pipeline.pipelines.package.nodes import PENDING_TAG

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("cut-short")
    try:
        client = MlflowClient()
        _, encoder, _ = build_autoencoder(16, (4,), 3)
        with mlflow.start_run() as a:
            _log_classifier(tmp_path / "a.keras")
            KerasModelDataset(str(tmp_path / "ra.keras"), mlflow_name="encoder_rings").save(encoder)
            register_run_models({"promote": True, "reason": "a", "new_value": 0.9}, PACKAGE)
        client.set_model_version_tag("enc-rings", "1", PENDING_TAG, a.info.run_id)
        with pytest.raises(RuntimeError), mlflow.start_run() as b:  # ends FAILED
            KerasModelDataset(str(tmp_path / "rb.keras"), mlflow_name="encoder_rings").save(encoder)
            logged = mlflow.search_logged_models(
                filter_string=f"source_run_id = '{b.info.run_id}'", output_format="list"
            )
            mlflow.register_model(logged[0].model_uri, "enc-rings", tags={PENDING_TAG: "x"})
            client.set_model_version_tag("enc-rings", "2", PENDING_TAG, b.info.run_id)
            raise RuntimeError("the server went away")
        with mlflow.start_run():
            _log_classifier(tmp_path / "c.keras")
            KerasModelDataset(str(tmp_path / "rc.keras"), mlflow_name="encoder_rings").save(encoder)
            register_run_models({"promote": False, "reason": "c", "new_value": 0.5}, PACKAGE)
        left = {int(v.version): v for v in client.search_model_versions("name = 'enc-rings'")}
        assert set(left) == {1, 3} and PENDING_TAG not in left[1].tags
        assert int(client.get_model_version_by_alias("enc-rings", "champion").version) == 1
    finally:
        mlflow.set_tracking_uri(None)
