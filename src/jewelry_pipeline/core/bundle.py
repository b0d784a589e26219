"""The serving bundle: one folder with everything the service needs.
Written atomically, read and verified.

Contents: `classifier.keras`, `encoders/<category>.keras`, `backbone.keras` (the frozen pretrained
backbone, only when the index serves its features), `index.npz` (for a memory-mapped index
backend, IVF-PQ, its vectors are `index_vectors.npy` beside it, memory-mapped), `catalog.csv`,
`thumbnails.npz` (one JPEG per item, see `core.thumbnails`), `drift_reference.npz` (held-out
photos for drift reports, see `core.drift`), `familiarity.npz` (training photos' pooled features,
for "not in our catalog", see `core.familiarity`), `config.json` (class names, preprocessing, answer
policy, version info) and `files.json` (sha256 of every file). No pickles:
arrays load with `allow_pickle=False` and models with Keras `safe_mode=True`.

The bundle path is a symbolic link to a complete version folder beside it (`.<name>.<random>`); a
rewrite writes a new version, then replaces the link in one atomic rename, so a reader sees the old
bundle or the new one, never none. Readers resolve the link once. The previous version is kept for
readers in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jewelry_pipeline.core.answers import AnswerPolicy
from jewelry_pipeline.core.images import Preprocessing
from jewelry_pipeline.core.lookup import read_table
from jewelry_pipeline.core.search import MEMORY_MAPPED_BACKENDS, vectors_file
from jewelry_pipeline.core.thumbnails import Thumbnails

# 2: JPEG thumbnails made from the original photos; 3: "not in our catalog" by familiarity (an
# older bundle's best-match threshold would be silently dropped, so it is refused instead)
BUNDLE_FORMAT = 3
# The bundle's files: written and read here, named from here by datasets, benchmarks and tests.
CLASSIFIER_FILE = "classifier.keras"
ENCODERS_DIR = "encoders"  # one <category>.keras each
INDEX_FILE = "index.npz"
INDEX_VECTORS = vectors_file(INDEX_FILE).name  # a memory-mapped backend's vectors
CATALOG_FILE = "catalog.csv"
THUMBNAILS_FILE = "thumbnails.npz"
DRIFT_REFERENCE_FILE = "drift_reference.npz"
FAMILIARITY_FILE = "familiarity.npz"
CONFIG_FILE = "config.json"
FILES_MANIFEST = "files.json"  # every other file with its sha256
BUNDLE_MODEL_NAME = (
    "jewelry-bundle"  # the name in the BentoML model store; the service serves its latest
)
BACKBONE_FILE = "backbone.keras"
CATALOG_COLUMNS = ["item_id", "path", "category", "cluster", "thumbnail_row"]
OPTIONAL_CATALOG_COLUMNS = ["title"]  # kept when the catalog has them


def catalog_rows(
    items: pd.DataFrame, clusters: np.ndarray, first_thumbnail_row: int
) -> pd.DataFrame:
    """Bundle catalog rows (`CATALOG_COLUMNS`) for `items` (item_id, path, category), their
    clusters, and thumbnails stored in order from `first_thumbnail_row`."""
    return pd.DataFrame(
        {
            "item_id": items["item_id"].astype(str).to_numpy(),
            "path": items["path"].astype(str).to_numpy(),
            "category": items["category"].astype(str).to_numpy(),
            "cluster": np.asarray(clusters).astype(int),
            "thumbnail_row": np.arange(first_thumbnail_row, first_thumbnail_row + len(items)),
        },
        columns=CATALOG_COLUMNS,
    )


class BundleError(RuntimeError):
    """A serving bundle that is missing, incomplete, altered or otherwise unusable."""


@dataclass
class BundleContents:
    """What a bundle holds, before it is written: the models, the index (rows in catalog order), the
    catalog with a `thumbnail_row` per item, the thumbnails, the class names, the preprocessing and
    version facts."""

    classifier: Any
    encoders: dict[str, Any]
    index: dict[str, np.ndarray]
    catalog: pd.DataFrame
    thumbnails: Thumbnails
    class_names: list[str]
    preprocessing: Preprocessing
    version: dict[str, Any]
    answers: AnswerPolicy = AnswerPolicy()
    title: str = "Catalog"
    drift_reference: dict[str, np.ndarray] | None = None  # see core.drift.reference_sample
    backbone: Any = None  # the frozen backbone, for an index of `backbone` vectors
    familiarity: dict[str, np.ndarray] | None = None  # see core.familiarity.FamiliarityReference
    substyles: dict[str, Any] | None = None  # names the shop gave its sub-styles (core.substyles)

    @property
    def promoted(self) -> bool:
        """Whether this bundle is the champion: its run was promoted and, when several runs
        registered at once, the registry's alias ended on it."""
        promotion = self.version.get("promotion", {})
        return bool(promotion.get("promote", False)) and bool(promotion.get("is_champion", True))


@dataclass
class ServingBundle:
    """A verified bundle held in memory."""

    path: Path
    config: dict[str, Any]
    classifier: Any
    encoders: dict[str, Any]
    index: dict[str, np.ndarray]
    catalog: pd.DataFrame
    thumbnails: Thumbnails
    drift_reference: dict[str, np.ndarray] | None = None  # None: a bundle made without one
    backbone: Any = None  # None: the index does not serve frozen backbone features
    familiarity: dict[str, np.ndarray] | None = None  # None: a bundle made without one

    @property
    def class_names(self) -> list[str]:
        """Category names in classifier output order."""
        return list(self.config["class_names"])

    @property
    def preprocessing(self) -> Preprocessing:
        """The preprocessing the models were trained with (a bad value is a ValueError)."""
        return Preprocessing.from_config(self.config["preprocessing"])

    @property
    def answers(self) -> AnswerPolicy:
        """When an answer says "not sure" or "no close match" (never without a stored policy)."""
        return AnswerPolicy.from_config(self.config.get("answers"))

    @property
    def title(self) -> str:
        """The catalog's title for the page."""
        return str(self.config.get("title") or "Catalog")

    @property
    def version(self) -> dict[str, Any]:
        """Where the bundle came from: run, creation time, promotion record."""
        return dict(self.config.get("version", {}))

    @property
    def substyles(self) -> dict[str, Any] | None:
        """What the shop made of the sub-styles (their names), kept by every later version."""
        return self.config.get("substyles")

    @property
    def digest(self) -> str:
        """The bundle's public identity: sha256 of its manifest, which holds the sha256 of every
        file."""
        return bundle_digest(self.path)


def bundle_digest(path: str | Path) -> str:
    """sha256 of a bundle's `files.json`: equal digests, identical contents."""
    return hashlib.sha256((Path(path).resolve() / FILES_MANIFEST).read_bytes()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(destination: str | Path, contents: BundleContents) -> Path:
    """Write a complete bundle into a temporary folder, then move it into place in one rename."""
    from jewelry_pipeline.core.models.files import (
        save_keras_atomic,
    )  # Keras only when models are written

    destination = Path(destination)
    classifier, encoders, index, catalog = (
        contents.classifier,
        contents.encoders,
        contents.index,
        contents.catalog,
    )
    thumbnails, class_names = contents.thumbnails, contents.class_names
    missing = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        raise BundleError(f"catalog lacks columns {missing}")
    if len(catalog) != len(thumbnails) or len(catalog) != len(index["item_ids"]):
        raise BundleError("catalog, thumbnails and index must describe the same items")
    _check_encoders(sorted(encoders), list(class_names), str(destination))
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        save_keras_atomic(classifier, staging / CLASSIFIER_FILE)
        (staging / ENCODERS_DIR).mkdir()
        for category, encoder in encoders.items():
            save_keras_atomic(encoder, staging / ENCODERS_DIR / f"{category}.keras")
        if contents.backbone is not None:
            save_keras_atomic(contents.backbone, staging / BACKBONE_FILE)
        if str(index.get("backend")) in MEMORY_MAPPED_BACKENDS:
            np.save(staging / INDEX_VECTORS, index["vectors"])
            index = {key: value for key, value in index.items() if key != "vectors"}
        np.savez(staging / INDEX_FILE, **index)
        optional = [c for c in OPTIONAL_CATALOG_COLUMNS if c in catalog.columns]
        catalog[CATALOG_COLUMNS + optional].to_csv(staging / CATALOG_FILE, index=False)
        np.savez(staging / THUMBNAILS_FILE, **thumbnails.to_arrays())
        if contents.drift_reference is not None:
            np.savez(staging / DRIFT_REFERENCE_FILE, **contents.drift_reference)
        if contents.familiarity is not None:
            np.savez(staging / FAMILIARITY_FILE, **contents.familiarity)
        config = {
            "bundle_format": BUNDLE_FORMAT,
            "class_names": list(class_names),
            "encoders": sorted(encoders),
            "preprocessing": contents.preprocessing.to_config(),
            "answers": contents.answers.to_config(),
            "title": contents.title,
            "version": dict(contents.version),
        }
        if contents.substyles:
            config["substyles"] = contents.substyles
        _seal_and_point(staging, config, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def _seal_and_point(staging: Path, config: dict[str, Any], destination: Path) -> None:
    """Write the config and the sha256 manifest of a staged version, then make `destination`
    point at it."""
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    files = {
        p.relative_to(staging).as_posix(): _sha256(p)
        for p in sorted(staging.rglob("*"))
        if p.is_file() and p.name != FILES_MANIFEST
    }
    (staging / FILES_MANIFEST).write_text(json.dumps(files, indent=2, sort_keys=True))
    os.chmod(staging, 0o755)  # mkdtemp makes it private
    _point(destination, staging)


def derive_bundle(
    source: str | Path,
    destination: str | Path,
    catalog: pd.DataFrame,
    substyles: dict[str, Any],
    change: dict[str, Any],
) -> Path:
    """The next version of a bundle with a new catalog (its `cluster` column) and sub-styles, and
    every other file of the verified `source` version as it was (models, index, thumbnails): the
    same models serve it. `change` is recorded in the version facts, with the version it came
    from (for undo). Written beside `destination`, which then points at it in one rename."""
    source, destination = Path(source).resolve(), Path(destination)
    config = verify_bundle(source)
    files = json.loads((source / FILES_MANIFEST).read_text())
    old = read_table(source / CATALOG_FILE)
    if list(catalog["item_id"].astype(str)) != list(old["item_id"].astype(str)):
        raise BundleError("an edited catalog keeps every item, in the same order")
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        for name in files:
            if name in (CATALOG_FILE, CONFIG_FILE):
                continue
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            try:  # a version's files never change once written: share them, don't copy
                os.link(source / name, staging / name)
            except OSError:
                shutil.copy2(source / name, staging / name)
        optional = [c for c in OPTIONAL_CATALOG_COLUMNS if c in catalog.columns]
        catalog[CATALOG_COLUMNS + optional].to_csv(staging / CATALOG_FILE, index=False)
        version = {**config.get("version", {}), "change": {**change, "previous": source.name}}
        config = {**config, "substyles": substyles, "version": version}
        _seal_and_point(staging, config, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def version_config(version: str | Path) -> dict[str, Any]:
    """A bundle version's `config.json` (a link is followed), unverified."""
    return json.loads((Path(version).resolve() / CONFIG_FILE).read_text())


def previous_version(destination: str | Path) -> Path | None:
    """The version folder the bundle at `destination` was derived from, when it is still there."""
    destination = Path(destination)
    config = version_config(destination)
    previous = (config.get("version", {}).get("change") or {}).get("previous")
    folder = destination.parent / previous if isinstance(previous, str) else None
    if folder is None or "/" in previous or not previous.startswith(f".{destination.name}."):
        return None
    return folder if folder.is_dir() and not folder.is_symlink() else None


def point_back(destination: str | Path, version: Path) -> None:
    """Make `destination` point at an earlier, verified `version` folder again (undo)."""
    verify_bundle(version)
    _point(Path(destination), Path(version))


def _point(destination: Path, version: Path) -> None:
    """Make `destination` a link to `version` in one atomic rename; keep the version it replaced,
    drop older ones."""
    previous = destination.resolve() if destination.is_symlink() else None
    if (
        destination.is_dir() and not destination.is_symlink()
    ):  # a bundle from before versioned folders
        legacy = destination.with_name(f".{destination.name}.legacy")
        shutil.rmtree(legacy, ignore_errors=True)
        os.replace(destination, legacy)
        previous = legacy
    link = destination.with_name(f".{destination.name}.link.{os.getpid()}")
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    os.replace(link, destination)
    keep = {version.resolve(), previous}
    for old in destination.parent.glob(f".{destination.name}.*"):
        if old.is_dir() and not old.is_symlink() and old.resolve() not in keep:
            shutil.rmtree(old, ignore_errors=True)


def _check_encoders(encoders: list[str], class_names: list[str], where: str) -> None:
    """A bundle carries no encoders, or exactly one per class: each named by the category it was
    trained on."""
    if encoders and sorted(encoders) != sorted(class_names):
        raise BundleError(
            f"serving bundle '{where}' has encoders for {sorted(encoders)} but classes "
            f"{sorted(class_names)}; each class needs its own encoder"
        )


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check that every listed file exists with its recorded hash; return the config."""
    path = Path(path).resolve()  # one version, even if the link moves meanwhile
    if not path.is_dir():
        raise BundleError(f"serving bundle '{path}' does not exist")
    try:
        files = json.loads((path / FILES_MANIFEST).read_text())
        config = json.loads((path / CONFIG_FILE).read_text())
    except FileNotFoundError as exc:
        raise BundleError(
            f"serving bundle '{path}' is incomplete: {Path(exc.filename).name} is missing"
        ) from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"serving bundle '{path}' has a corrupt manifest: {exc}") from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"serving bundle '{path}' is incomplete: {name} is missing")
        if _sha256(file) != expected:
            raise BundleError(
                f"serving bundle '{path}' is corrupt or truncated: "
                f"{name} does not match its checksum"
            )
    if config.get("bundle_format") != BUNDLE_FORMAT:
        raise BundleError(
            f"serving bundle '{path}' has format {config.get('bundle_format')}, "
            f"expected {BUNDLE_FORMAT}; package it again with this version "
            "(`kedro run --pipeline package` after a full run)"
        )
    _check_encoders(
        list(config.get("encoders", [])), list(config.get("class_names", [])), str(path)
    )
    return config


def read_bundle(path: str | Path) -> ServingBundle:
    """Verify and load a bundle: models with `safe_mode=True`, arrays without pickle."""
    from jewelry_pipeline.core.models.files import (
        load_keras_safe,
    )  # Keras only when models are read

    path = Path(path).resolve()  # one version, even if the link moves meanwhile
    config = verify_bundle(path)
    mapped = INDEX_VECTORS in json.loads((path / FILES_MANIFEST).read_text())
    try:
        classifier = load_keras_safe(path / CLASSIFIER_FILE)
        encoders = {
            c: load_keras_safe(path / ENCODERS_DIR / f"{c}.keras") for c in config["encoders"]
        }
        with np.load(path / INDEX_FILE, allow_pickle=False) as data:
            index = {key: data[key] for key in data.files}
        if mapped:  # verified above; pages are read as searches touch them
            index["vectors"] = index_vectors(path)
        with np.load(path / THUMBNAILS_FILE, allow_pickle=False) as data:
            thumbnails = Thumbnails.from_arrays(data)
        catalog = read_table(path / CATALOG_FILE)
        backbone = (
            load_keras_safe(path / BACKBONE_FILE) if (path / BACKBONE_FILE).is_file() else None
        )
        drift_reference = _optional_arrays(path / DRIFT_REFERENCE_FILE)
        familiarity = _optional_arrays(path / FAMILIARITY_FILE)
    except (ValueError, OSError, KeyError) as exc:
        raise BundleError(f"serving bundle '{path}' could not be loaded: {exc}") from None
    return ServingBundle(
        path,
        config,
        classifier,
        encoders,
        index,
        catalog,
        thumbnails,
        drift_reference,
        backbone,
        familiarity,
    )


def index_vectors(version: str | Path) -> np.ndarray:
    """A version's index vectors in catalog order: memory-mapped when stored apart (IVF-PQ)."""
    version = Path(version)
    if (version / INDEX_VECTORS).is_file():
        return np.load(version / INDEX_VECTORS, mmap_mode="r", allow_pickle=False)
    with np.load(version / INDEX_FILE, allow_pickle=False) as data:
        return data["vectors"]


def _optional_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """An optional `.npz` file's arrays (no pickles), or None when the bundle has no such file."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
