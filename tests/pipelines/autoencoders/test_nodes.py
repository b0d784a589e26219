"""Autoencoder nodes on tiny data, the category check, and distinct per-namespace artifacts."""

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from jewelry_pipeline.models.autoencoder import build_autoencoder
from jewelry_pipeline.pipelines.autoencoders.nodes import check_category_pipelines, encode_category, plot_reconstructions, select_category, train_autoencoder
from jewelry_pipeline.pipelines.autoencoders.pipeline import SHARED_INPUTS, category_pipeline

PARAMS = {
    "seed": 2,
    "architecture": {"filters": [4, 8], "latent_dim": 6},
    "training": {"epochs": 2, "batch_size": 8, "learning_rate": 0.01, "early_stopping_patience": 2, "reduce_lr_patience": 1, "reduce_lr_factor": 0.5},
    "montage_size": 3,
}


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    manifest = pd.DataFrame(
        {
            "item_id": [f"{i:016x}" for i in range(40)],
            "category": ["x", "y"] * 20,
            "store_index": range(40),
            "split": (["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 4,
        }
    )
    return images, manifest


def test_shapes():
    autoencoder, encoder = build_autoencoder(32, (8, 16), 5)
    assert autoencoder.output_shape == (None, 32, 32, 3)
    assert encoder.output_shape == (None, 5)
    with pytest.raises(ValueError, match="divisible"):
        build_autoencoder(30, (8, 16), 5)


def test_category_check_names_the_mismatch():
    assert check_category_pipelines(["b", "a"], ["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match=r"missing: \['c'\].*not in data: \['z'\]"):
        check_category_pipelines(["a", "c"], ["a", "z"])


def test_train_encode_and_montage(toy):
    images, manifest = toy
    rows = select_category(manifest, "x", ["x", "y"])
    assert set(rows["category"]) == {"x"} and len(rows) == 20
    autoencoder, encoder, history = train_autoencoder(images, rows, PARAMS)
    assert len(history["loss"]) == len(history["val_loss"]) >= 1
    codes = encode_category(encoder, images, rows)
    assert codes["latents"].shape == (20, 6) and list(codes["item_id"]) == list(rows["item_id"])
    assert plot_reconstructions(autoencoder, images, rows, PARAMS).axes


def test_namespaces_write_distinct_artifacts(toy, tmp_path):
    from kedro.pipeline import Pipeline

    from jewelry_pipeline.datasets import KerasModelDataset, NpzDataset

    images, manifest = toy
    base = category_pipeline()
    pipe = sum((Pipeline(base, namespace=c, inputs=SHARED_INPUTS, parameters={"params:autoencoders"}) for c in ("x", "y")), Pipeline([]))
    catalog = DataCatalog(
        {
            "image_store": MemoryDataset(images),
            "model_input_manifest": MemoryDataset(manifest),
            "checked_categories": MemoryDataset(["x", "y"]),
            "params:autoencoders": MemoryDataset(PARAMS),
            **{f"{c}.category_name": MemoryDataset(c) for c in ("x", "y")},
            **{f"{c}.encoder": KerasModelDataset(str(tmp_path / c / "encoder.keras")) for c in ("x", "y")},
            **{f"{c}.latents": NpzDataset(str(tmp_path / c / "latents.npz")) for c in ("x", "y")},
        }
    )
    SequentialRunner().run(pipe, catalog)
    x, y = NpzDataset(str(tmp_path / "x" / "latents.npz")).load(), NpzDataset(str(tmp_path / "y" / "latents.npz")).load()
    assert set(x["item_id"]).isdisjoint(set(y["item_id"]))
    assert (tmp_path / "x" / "encoder.keras").read_bytes() != (tmp_path / "y" / "encoder.keras").read_bytes()
