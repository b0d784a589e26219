"""Identity of the data each stage was made from, and the checks that refuse stale or mixed inputs.

Ingestion records which folder and which photos it produced; split records which ingestion it split.
A later run that would read outputs of another folder or another ingestion stops and names the
command to run first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jewelry_pipeline.core.errors import UserInputError

if (
    TYPE_CHECKING
):  # pandas loads with the first manifest compared, not when the hooks are imported (fast start)
    import pandas as pd


class StaleDataError(UserInputError):
    """Stored outputs do not belong to the data this run asks for; the message names the command to
    run first."""


def manifest_digest(manifest: pd.DataFrame) -> str:
    """SHA-256 of what identifies a manifest's photos: item, path, category, store row and (when
    present) split."""
    columns = [
        c for c in ("item_id", "path", "category", "store_index", "split") if c in manifest.columns
    ]
    text = manifest[columns].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def ingestion_identity(raw_dir: str | Path, manifest: pd.DataFrame) -> dict[str, Any]:
    """Which folder, which photos: recorded next to ingestion's outputs."""
    return {
        "raw_dir": str(Path(raw_dir).expanduser().resolve()),
        "manifest_sha256": manifest_digest(manifest),
        "photos": int(len(manifest)),
        "per_category": {
            str(c): int(n) for c, n in manifest["category"].value_counts().sort_index().items()
        },
    }


def split_identity(ingested: dict[str, Any], split_manifest: pd.DataFrame) -> dict[str, Any]:
    """Which ingestion a split was made from, and the split manifest it produced."""
    return {
        "raw_dir": ingested["raw_dir"],
        "ingestion_manifest_sha256": ingested["manifest_sha256"],
        "manifest_sha256": manifest_digest(split_manifest),
    }


def _ingest_command(raw_dir: str) -> str:
    return f"kedro run --pipelines ingestion --params raw_dir={raw_dir}"


def check_ingested(
    identity: dict[str, Any] | None,
    manifest: pd.DataFrame | None,
    store_rows: int | None,
    requested_raw_dir: str | Path,
) -> None:
    """Refuse ingestion outputs that are missing, inconsistent with each other, or from another
    folder."""
    requested = str(Path(requested_raw_dir).expanduser().resolve())
    if identity is None or manifest is None:
        raise StaleDataError(
            f"No complete ingestion output found. Run `{_ingest_command(requested)}` first."
        )
    if identity["raw_dir"] != requested:
        raise StaleDataError(
            f"The ingested photos come from {identity['raw_dir']}, but this run is for "
            f"{requested}. Run `{_ingest_command(requested)}` first, or pass "
            f"`--params raw_dir={identity['raw_dir']}` to use the ingested photos."
        )
    if manifest_digest(manifest) != identity["manifest_sha256"] or (
        store_rows is not None and store_rows != identity["photos"]
    ):
        raise StaleDataError(
            "The ingestion outputs (manifest, image store) do not match each other "
            f"(an interrupted or mixed run). Run `{_ingest_command(requested)}` again."
        )


def check_split(
    identity: dict[str, Any] | None, ingested: dict[str, Any], split_manifest: pd.DataFrame | None
) -> None:
    """Refuse a split that is missing, was made from another ingestion, or was changed since."""
    command = f"kedro run --pipelines split --params raw_dir={ingested['raw_dir']}"
    if identity is None or split_manifest is None:
        raise StaleDataError(f"No split of the ingested photos found. Run `{command}` first.")
    if (
        identity["ingestion_manifest_sha256"] != ingested["manifest_sha256"]
        or manifest_digest(split_manifest) != identity["manifest_sha256"]
    ):
        raise StaleDataError(
            "The train/val/test split was made from another ingestion than the current one. "
            f"Run `{command}` first."
        )
