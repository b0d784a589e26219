"""No stale data: a failed ingestion keeps the previous outputs whole; later pipelines refuse
outputs of another folder."""

from __future__ import annotations

import shutil

import numpy as np

from .test_nodes import _kedro


def _primary_bytes(project) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((project / "data" / "03_primary").iterdir())}


def _other_folder(tiny_dataset, tmp_path, drop: str | None = None):
    """A copy of the tiny dataset with one photo fewer, so its manifest differs."""
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    sorted((other / "ring").iterdir())[0].unlink()
    if drop:
        for path in list((other / drop).iterdir())[2:]:
            path.unlink()
    return other


def test_a_failed_ingestion_leaves_the_previous_outputs_whole(
    kedro_project, tiny_dataset, tmp_path
):
    """Broken on purpose once: with decode_images writing image_store itself, the store changed
    after the failure."""
    assert (
        _kedro(
            kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"
        ).returncode
        == 0
    )
    before = _primary_bytes(kedro_project)
    assert set(before) == {"categories.json", "image_store.npy", "ingestion.json", "manifest.csv"}
    short = _other_folder(
        tiny_dataset, tmp_path, drop="earring"
    )  # 2 earrings < min_images_per_category
    failed = _kedro(kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={short}")
    assert failed.returncode != 0 and "'earring' has 2" in failed.stdout + failed.stderr
    assert _primary_bytes(kedro_project) == before


def test_split_refuses_the_ingestion_of_another_folder_and_names_the_command(
    kedro_project, tiny_dataset, tmp_path
):
    assert (
        _kedro(
            kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"
        ).returncode
        == 0
    )
    other = _other_folder(tiny_dataset, tmp_path)
    refused = _kedro(kedro_project, "--pipelines", "split", "--params", f"raw_dir={other}")
    assert refused.returncode != 0
    assert (
        f"kedro run --pipelines ingestion --params raw_dir={other.resolve()}"
        in refused.stdout + refused.stderr
    )
    assert not (kedro_project / "data" / "05_model_input" / "manifest.csv").exists()


def test_split_refuses_a_store_that_does_not_match_its_manifest(kedro_project, tiny_dataset):
    assert (
        _kedro(
            kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"
        ).returncode
        == 0
    )
    store = kedro_project / "data" / "03_primary" / "image_store.npy"
    np.save(store, np.load(store)[:5])  # what an interrupted or mixed run leaves behind
    refused = _kedro(kedro_project, "--pipelines", "split", "--params", f"raw_dir={tiny_dataset}")
    assert refused.returncode != 0 and "do not match each other" in refused.stdout + refused.stderr


def test_training_refuses_a_split_of_an_earlier_ingestion(kedro_project, tiny_dataset, tmp_path):
    for pipeline in ("ingestion", "split"):
        assert (
            _kedro(
                kedro_project, "--pipelines", pipeline, "--params", f"raw_dir={tiny_dataset}"
            ).returncode
            == 0
        )
    other = _other_folder(tiny_dataset, tmp_path)
    assert (
        _kedro(kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={other}").returncode
        == 0
    )
    refused = _kedro(kedro_project, "--pipelines", "classifier", "--params", f"raw_dir={other}")
    assert refused.returncode != 0
    assert (
        f"kedro run --pipelines split --params raw_dir={other.resolve()}"
        in refused.stdout + refused.stderr
    )
    assert not (kedro_project / "data" / "06_models" / "classifier.keras").exists()
