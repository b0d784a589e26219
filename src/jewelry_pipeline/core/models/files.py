"""Keras model files: atomic `.keras` save and `safe_mode=True` load (no kedro, no tracking)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of `path` left by writers that died mid-save (their process is
    gone)."""
    for stale in path.parent.glob(f".{path.stem}.*.tmp.keras"):
        try:
            pid = int(stale.name.removeprefix(f".{path.stem}.").split(".")[0])
            os.kill(pid, 0)  # raises when no such process
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue  # not ours, or another user's live process


def save_keras_atomic(model: keras.Model, path: Path) -> None:
    """Save to a temporary `.keras` file next to `path`, then rename, so readers never see half a
    model.

    A writer killed mid-save leaves its temporary file; the next save of the same path removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
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
