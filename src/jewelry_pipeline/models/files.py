"""Keras model files: atomic `.keras` save and `safe_mode=True` load (no kedro, no tracking)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def save_keras_atomic(model: keras.Model, path: Path) -> None:
    """Save to a temporary `.keras` file next to `path`, then rename, so readers never see half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_keras_safe(path: str | Path) -> keras.Model:
    """Load a `.keras` file with `safe_mode=True`: Lambda layers and arbitrary code are refused."""
    import keras  # loaded on first use, so catalogs that only list models start fast

    return keras.saving.load_model(path, safe_mode=True, compile=False)
