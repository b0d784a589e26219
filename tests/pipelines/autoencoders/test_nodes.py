"""Autoencoder nodes on tiny data, the category check, and distinct per-namespace artifacts."""

from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from jewelry_pipeline.core.models.autoencoder import build_autoencoder, nt_xent, view_augmenter
from jewelry_pipeline.core.models.files import load_keras_safe, save_keras_atomic
from jewelry_pipeline.pipelines.autoencoders.nodes import (
    category_inputs,
    check_category_pipelines,
    choose_autoencoder_input,
    encode_category,
    plot_reconstructions,
    reconstruction_check,
    select_category,
    train_autoencoder,
)
from jewelry_pipeline.pipelines.autoencoders.pipeline import SHARED_INPUTS, category_pipeline
from tests.conftest import FOREGROUND

PARAMS = {
    "seed": 2,
    "input": "foreground",
    "input_probe": {"image_size": 8, "pca_components": 5, "max_iter": 200},
    "architecture": {"filters": [4, 8], "latent_dim": 6},
    "training": {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.01,
        "early_stopping_patience": 2,
        "reduce_lr_patience": 1,
        "reduce_lr_factor": 0.5,
    },
    "contrastive": {"weight": 1.0, "temperature": 0.2, "projection_dim": 4},
    "views": {"crop_min_area": 0.5, "rotation": 0.1, "gain": 0.3, "texture": 20},
    "montage_size": 3,
}
PREPROCESSING = {"image_size": 32, "foreground": FOREGROUND}  # as the parameters have it
FOREGROUND_INPUT = {"input": "foreground"}


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
    autoencoder, encoder, decoder = build_autoencoder(32, (8, 16), 5)
    assert autoencoder.input_shape == (None, 32, 32, 1) and autoencoder.output_shape == (
        None,
        32,
        32,
        1,
    )
    assert encoder.output_shape == (None, 5) and decoder.input_shape == (None, 5)
    with pytest.raises(ValueError, match="divisible"):
        build_autoencoder(30, (8, 16), 5)


def test_decoder_widths_are_configurable():
    _, _, mirrored = build_autoencoder(32, (8, 16), 5)
    _, _, slim = build_autoencoder(32, (8, 16), 5, decoder_filters=(6, 3))
    assert [mirrored.get_layer(f"dec_conv{i}").filters for i in (0, 1)] == [16, 8]
    assert [slim.get_layer(f"dec_conv{i}").filters for i in (0, 1)] == [6, 3]
    assert slim.output_shape == (None, 32, 32, 1)
    with pytest.raises(ValueError, match="one width per encoder block"):
        build_autoencoder(32, (8, 16), 5, decoder_filters=(8,))


def test_views_add_backdrop_texture_only_when_asked():
    empty = tf.zeros((4, 16, 16, 1))
    plain = view_augmenter({**PARAMS["views"], "texture": 0}, seed=0)(empty)
    textured = view_augmenter({**PARAMS["views"], "texture": 60}, seed=0)(empty)
    assert float(tf.reduce_max(plain)) == 0.0
    assert float(tf.reduce_mean(textured)) > 1.0 and float(tf.reduce_max(textured)) <= 255.0
    white = tf.fill((4, 16, 16, 3), 255.0)
    photo_views = view_augmenter(
        {**PARAMS["views"], "texture": 60, "gain": 0.0}, seed=0, photo=True
    )(white)
    assert (
        float(tf.reduce_min(photo_views)) == 255.0
    )  # a white backdrop stays white: no dark corners, no blotches


def test_nt_xent_rewards_agreeing_views():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(8, 4)).astype(np.float32)
    agreeing = float(nt_xent(codes, codes + 0.01, 0.2))
    shuffled = float(nt_xent(codes, codes[::-1], 0.2))
    assert agreeing < shuffled


def test_category_check_names_the_mismatch():
    assert check_category_pipelines(["b", "a"], built=["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match=r"missing: \['c'\].*not in data: \['z'\]"):
        check_category_pipelines(["a", "c"], built=["a", "z"])


def _shapes_on_backdrops(n: int, filled: bool) -> tuple[np.ndarray, pd.DataFrame]:
    """Two categories (a disc, a bar). Small objects on random-colour, graded backdrops, or
    frame-filling grey objects on black."""
    import cv2

    rng = np.random.default_rng(1)
    images = np.empty((2 * n, 32, 32, 3), np.uint8)
    for i in range(2 * n):
        if filled:
            image = np.zeros((32, 32, 3), np.uint8)
            shade = int(rng.integers(120, 255))
            if i % 2:
                cv2.rectangle(image, (4, 2), (27, 29), (shade,) * 3, -1)
            else:
                cv2.circle(image, (16, 16), 14, (shade,) * 3, -1)
        else:
            colour = rng.integers(0, 256, 3)
            ramp = np.linspace(0, rng.uniform(-80, 80), 32)[None, :, None]
            image = np.clip(colour[None, None, :] + ramp + np.zeros((32, 32, 3)), 0, 255).astype(
                np.uint8
            )
            x, y = (int(v) for v in rng.integers(9, 23, 2))
            ink = tuple(int(v) for v in 255 - colour)
            if i % 2:
                cv2.line(image, (x - 5, y), (x + 5, y), ink, 2)
            else:
                cv2.circle(image, (x, y), 4, ink, 2)
        images[i] = image
    manifest = pd.DataFrame(
        {
            "item_id": [f"{i:016x}" for i in range(2 * n)],
            "category": ["disc", "bar"] * n,
            "store_index": range(2 * n),
            "split": ["train"] * int(1.4 * n) + ["val"] * (2 * n - int(1.4 * n)),
        }
    )
    return images, manifest


@pytest.mark.parametrize("filled, expected", [(False, "foreground"), (True, "photo")])
def test_input_choice_follows_what_separates_the_categories(filled, expected):
    """Small shapes on random backdrops need the foreground map; frame-filling objects keep the
    photo."""
    images, manifest = _shapes_on_backdrops(40, filled)
    decision, metrics = choose_autoencoder_input(
        images, manifest, PREPROCESSING, {**PARAMS, "input": "auto"}
    )
    assert decision["input"] == expected, decision
    assert set(metrics) == {"photo_probe_val_accuracy", "foreground_probe_val_accuracy"}
    assert "validation accuracy" in decision["reason"]
    forced, _ = choose_autoencoder_input(
        images, manifest, PREPROCESSING, {**PARAMS, "input": "photo"}
    )
    assert forced["input"] == "photo" and "set by" in forced["reason"]
    with pytest.raises(ValueError, match="autoencoders.input"):
        choose_autoencoder_input(images, manifest, PREPROCESSING, {**PARAMS, "input": "edges"})


def test_photo_inputs_keep_colour(toy):
    images, manifest = toy
    rows = select_category(manifest, "x", ["x", "y"])
    photos = category_inputs(images, rows, {"input": "photo"}, PREPROCESSING)
    np.testing.assert_array_equal(photos, images[rows["store_index"].to_numpy()])
    autoencoder, encoder, _ = train_autoencoder(photos, rows, PARAMS)
    assert autoencoder.output_shape == (None, 16, 16, 3) and encode_category(encoder, photos, rows)[
        "latents"
    ].shape == (20, 6)


def test_reconstruction_check_compares_with_the_mean_image(toy, caplog):
    images, manifest = toy
    rows = select_category(manifest, "x", ["x", "y"])
    photos = category_inputs(images, rows, {"input": "photo"}, PREPROCESSING)

    class Constant:
        """A model that answers one fixed image, whatever it is given."""

        def __init__(self, value):
            self.value = np.asarray(value, np.float32)

        def __call__(self, batch, training=False):
            return tf.broadcast_to(tf.constant(self.value), tf.shape(batch))

    train = photos[rows["split"].to_numpy() == "train"].astype(np.float32).mean(axis=0) / 255
    as_mean = reconstruction_check(Constant(train), photos, rows)
    assert (
        as_mean["reconstruction_beats_mean"]["value"] == 0.0
    )  # predicting the mean is not better than the mean
    assert "no better than their mean image" in caplog.text
    exact = reconstruction_check(Constant(0), photos * 0, rows)
    assert exact["heldout_reconstruction_mse"]["value"] == 0.0


def test_train_encode_and_montage(toy):
    images, manifest = toy
    rows = select_category(manifest, "x", ["x", "y"])
    assert set(rows["category"]) == {"x"} and len(rows) == 20
    maps = category_inputs(images, rows, FOREGROUND_INPUT, PREPROCESSING)
    assert maps.shape == (20, 16, 16, 1) and maps.dtype == np.uint8
    autoencoder, encoder, history = train_autoencoder(maps, rows, PARAMS)
    assert len(history["loss"]) == len(history["val_loss"]) >= 1
    assert {"reconstruction_loss", "contrastive_loss", "val_contrastive_loss"} <= set(history)
    codes = encode_category(encoder, maps, rows)
    assert codes["latents"].shape == (20, 6) and list(codes["item_id"]) == list(rows["item_id"])
    train_codes = codes["latents"][rows["split"].to_numpy() == "train"]
    # The served encoder standardises its codes on the training rows.
    np.testing.assert_allclose(train_codes.mean(axis=0), 0, atol=1e-3)
    assert plot_reconstructions(autoencoder, images, maps, rows, PARAMS).axes


@pytest.mark.parametrize("epochs", [2, 4], ids=["eager", "traced"])  # 6 steps, then 12
def test_training_is_reproducible_and_the_encoder_reloads_safely(
    toy, tmp_path, epochs, monkeypatch
):
    from jewelry_pipeline.core.models import data

    modes, choose = [], data.eager_when_short

    @contextmanager
    def recorded(*args):
        with choose(*args) as eager:
            modes.append(eager)
            yield eager

    monkeypatch.setattr(data, "eager_when_short", recorded)
    images, manifest = toy
    rows = select_category(manifest, "y", ["x", "y"])
    maps = category_inputs(images, rows, FOREGROUND_INPUT, PREPROCESSING)
    params = {**PARAMS, "training": {**PARAMS["training"], "epochs": epochs}}
    _, first, history = train_autoencoder(maps, rows, params)
    _, second, again = train_autoencoder(maps, rows, params)
    assert modes == [epochs == 2] * 2
    assert history == again and len(history["loss"]) == epochs
    np.testing.assert_array_equal(
        encode_category(first, maps, rows)["latents"],
        encode_category(second, maps, rows)["latents"],
    )
    save_keras_atomic(first, tmp_path / "encoder.keras")
    reloaded = load_keras_safe(tmp_path / "encoder.keras")
    np.testing.assert_allclose(
        reloaded.predict(maps, verbose=0), first.predict(maps, verbose=0), atol=1e-5
    )


def test_namespaces_write_distinct_artifacts(toy, tmp_path):
    from kedro.pipeline import Pipeline

    from jewelry_pipeline.datasets import KerasModelDataset, NpzDataset

    images, manifest = toy
    base = category_pipeline()
    pipe = sum(
        (
            Pipeline(
                base,
                namespace=c,
                inputs=SHARED_INPUTS,
                parameters={"params:autoencoders", "params:preprocessing"},
            )
            for c in ("x", "y")
        ),
        Pipeline([]),
    )
    catalog = DataCatalog(
        {
            "image_store": MemoryDataset(images),
            "model_input_manifest": MemoryDataset(manifest),
            "checked_categories": MemoryDataset(["x", "y"]),
            "autoencoder_input": MemoryDataset(FOREGROUND_INPUT),
            "params:autoencoders": MemoryDataset(PARAMS),
            "params:preprocessing": MemoryDataset(PREPROCESSING),
            **{f"{c}.category_name": MemoryDataset(c) for c in ("x", "y")},
            **{
                f"{c}.encoder": KerasModelDataset(str(tmp_path / c / "encoder.keras"))
                for c in ("x", "y")
            },
            **{f"{c}.latents": NpzDataset(str(tmp_path / c / "latents.npz")) for c in ("x", "y")},
        }
    )
    SequentialRunner().run(pipe, catalog)
    x, y = (
        NpzDataset(str(tmp_path / "x" / "latents.npz")).load(),
        NpzDataset(str(tmp_path / "y" / "latents.npz")).load(),
    )
    assert set(x["item_id"]).isdisjoint(set(y["item_id"]))
    assert (tmp_path / "x" / "encoder.keras").read_bytes() != (
        tmp_path / "y" / "encoder.keras"
    ).read_bytes()
