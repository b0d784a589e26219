"""The serving bundle's versions in the local BentoML model store (`jewelry-bundle`): what `make
serve` serves by default, written by promoted runs, `pull-champion` and sub-style edits."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from jewelry_pipeline.core.bundle import BUNDLE_MODEL_NAME


def store_in_bentoml(
    bundle: Path,
    version: dict[str, Any],
    name: str = BUNDLE_MODEL_NAME,
    change: dict[str, str] | None = None,
) -> str:
    """Copy a verified bundle folder into the local BentoML model store as the champion's latest
    version (`change`: what made it, when not a run); its tag."""
    import bentoml

    metadata = {
        "mlflow_run_id": version.get("mlflow_run_id") or "",
        "created_at": version.get("created_at", ""),
        "promotion_reason": version["promotion"]["reason"],
        "promotion_metric": version["promotion"]["metric"],
        "promotion_value": float(version["promotion"]["new_value"]),
        **(change or {}),
    }
    with bentoml.models.create(name, labels={"stage": "champion"}, metadata=metadata) as model:
        shutil.copytree(bundle, model.path, dirs_exist_ok=True)
    return str(model.tag)
