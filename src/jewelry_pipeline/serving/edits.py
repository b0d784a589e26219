"""Sub-style edits on the live service: an edit set applied to the bundle version being served and
written as its next version (live reload then serves it), in a bundle folder or in the BentoML model
store; undo goes back to the version before. One edit at a time per bundle, and only against the
version the editor last saw.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jewelry_pipeline.core.bundle import (
    BUNDLE_MODEL_NAME,
    CATALOG_FILE,
    bundle_digest,
    derive_bundle,
    index_vectors,
    point_back,
    previous_version,
    version_config,
)
from jewelry_pipeline.core.lookup import read_table
from jewelry_pipeline.core.substyles import (
    PREVIEW_SEED,
    EditRefused,
    SubstyleCatalog,
    names_from_config,
    names_to_config,
)
from jewelry_pipeline.serving.edit_record import EditRecorder
from jewelry_pipeline.serving.store import store_in_bentoml

logger = logging.getLogger(__name__)

MAX_EDITS = 100  # edits in one set
# Edit and undo requests a worker accepts per minute, with a token or without (then 429).
EDITS_PER_MINUTE = int(os.environ.get("JEWELRY_EDITS_PER_MINUTE", "20"))
EDIT_LOG_KEPT = 200  # edit sets the bundle remembers (the oldest are dropped)
DIGEST_LENGTH = 16  # the public bundle digest's length, as `/status` shows it


class StaleVersion(Exception):
    """The bundle moved on since the editor read it (409): the message names the current one."""


class TooManyEdits(Exception):
    """More edit requests in the last minute than `EDITS_PER_MINUTE` (429)."""


LOGGED_FIELDS = ("op", "category", "cluster", "into", "parts", "item_id", "to", "k", "name")


def _json_safe(edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The edits as they are logged: their known fields only (applied edits have no others that
    matter), texts cut to 100 characters."""
    return [
        {
            key: edit[key][:100] if isinstance(edit[key], str) else edit[key]
            for key in LOGGED_FIELDS
            if key in edit
        }
        for edit in edits
    ]


@contextmanager
def _folder_lock(destination: Path):
    """Held while one process edits: the service's workers are processes, each with an editor."""
    import fcntl

    with open(destination.parent / f".{destination.name}.edit.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


NOTHING_TO_UNDO = "nothing to undo: this version was not made by an edit"


class FolderVersions:
    """A bundle folder (the link `JEWELRY_BUNDLE` names): an edit writes the next version beside
    it and points the link at it; undo points the link back."""

    def __init__(self, destination: str | Path):
        self.destination = Path(destination)

    def current(self) -> Path:
        """The version folder served now."""
        return self.destination.resolve()

    def lock(self):
        """Held while one process edits."""
        return _folder_lock(self.destination)

    def publish(self, source: Path, catalog, substyles: dict[str, Any], change: dict) -> None:
        """Write the edited version and serve it."""
        derive_bundle(source, self.destination, catalog, substyles, change)

    def undo(self) -> None:
        """Serve the version the current one was derived from again."""
        previous = previous_version(self.destination)
        if previous is None:
            raise EditRefused(NOTHING_TO_UNDO)
        point_back(self.destination, previous)


class StoreVersions:
    """The bundle's latest version in the BentoML model store (what `make serve` serves): an edit
    saves the next model version, which is then the latest; undo deletes that edited version, so
    the one it was made from is the latest again."""

    def __init__(self, name: str = BUNDLE_MODEL_NAME):
        self.name = name

    def _latest(self):
        import bentoml

        return bentoml.models.get(f"{self.name}:latest")

    def current(self) -> Path:
        """The latest version's folder."""
        return Path(self._latest().path)

    def lock(self):
        """Held while one process edits: a lock file in BentoML's home, beside its models."""
        return _folder_lock(Path(self._latest().path).parents[2] / self.name)

    def publish(self, source: Path, catalog, substyles: dict[str, Any], change: dict) -> None:
        """Save the edited version as the store's latest."""
        with tempfile.TemporaryDirectory(prefix="substyle-edit-") as staging:
            derived = derive_bundle(source, Path(staging) / "bundle", catalog, substyles, change)
            version = version_config(derived)["version"]
            made_by = {"change": str(change["kind"]), "derived_from": source.name}
            store_in_bentoml(derived.resolve(), version, self.name, made_by)

    def undo(self) -> None:
        """Delete the latest version when an edit made it and the one before is still stored."""
        import bentoml

        latest = self._latest()
        previous = (latest.info.metadata or {}).get("derived_from")
        if not previous:
            raise EditRefused(NOTHING_TO_UNDO)
        try:
            bentoml.models.get(f"{self.name}:{previous}")
        except bentoml.exceptions.NotFound:
            raise EditRefused(
                f"nothing to undo: {self.name}:{previous}, which it was made from, is gone"
            ) from None
        bentoml.models.delete(latest.tag)


class SubstyleEditor:
    """Edits a bundle's versions (a folder, or the BentoML store) one set at a time, across the
    service's worker processes."""

    def __init__(
        self,
        versions: FolderVersions | StoreVersions | str | Path,
        per_minute: int = EDITS_PER_MINUTE,
        recorder: EditRecorder | None = None,
    ):
        if isinstance(versions, str | Path):  # a bundle folder
            versions = FolderVersions(versions)
        self.versions = versions
        self.per_minute = per_minute
        self.recorder = recorder  # each edit set and undo as an MLflow run, when set
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()

    def current_digest(self) -> str:
        """The public digest of the version served now."""
        return bundle_digest(self.versions.current())[:DIGEST_LENGTH]

    def count_request(self) -> None:
        """One more edit request this minute, or `TooManyEdits`."""
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] > 60:
                self._recent.popleft()
            if len(self._recent) >= self.per_minute:
                raise TooManyEdits(f"at most {self.per_minute} edit requests a minute")
            self._recent.append(now)

    def apply(self, edits: Any, expected: str, by: str) -> dict[str, Any]:
        """Apply `edits` (all or none) to the version whose digest is `expected`, write the next
        version and return its digest; `EditRefused` for a bad edit, `StaleVersion` when the folder
        has moved on."""
        if not isinstance(edits, list) or not 1 <= len(edits) <= MAX_EDITS:
            raise EditRefused(f"'edits' is a list of 1 to {MAX_EDITS} edits")
        with self._lock, self.versions.lock():
            source = self._checked_source(expected)
            config = version_config(source)
            substyles = dict(config.get("substyles") or {})
            catalog = read_table(source / CATALOG_FILE)
            names = names_from_config(substyles.get("names"))
            edited = SubstyleCatalog(catalog, index_vectors(source), names, PREVIEW_SEED).apply(
                edits
            )
            at = datetime.now(UTC).isoformat(timespec="seconds")
            entry = {"at": at, "by": by, "edits": _json_safe(edits)}
            substyles["names"] = names_to_config(edited.names)
            substyles["edits"] = [*substyles.get("edits", []), entry][-EDIT_LOG_KEPT:]
            change = {"kind": "substyle_edit", "at": at, "by": by, "edits": len(edits)}
            self.versions.publish(source, edited.catalog, substyles, change)
            digest = self.current_digest()
        logger.info("Sub-style edits by %s: %d, bundle %s -> %s", by, len(edits), expected, digest)
        run = self._record(entry, "substyle_edit", expected, digest, config)
        return {
            "bundle_digest": digest,
            "previous": expected,
            "edits": len(edits),
            "by": by,
            "mlflow_run_id": run,
        }

    def undo(self, expected: str, by: str) -> dict[str, Any]:
        """Point the folder back at the version the current one was derived from."""
        with self._lock, self.versions.lock():
            config = version_config(self._checked_source(expected))
            self.versions.undo()
            digest = self.current_digest()
        logger.info("Sub-style undo by %s: bundle %s -> %s", by, expected, digest)
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": by, "edits": []}
        run = self._record(entry, "substyle_undo", expected, digest, config)
        return {"bundle_digest": digest, "previous": expected, "by": by, "mlflow_run_id": run}

    def _record(
        self, entry: dict[str, Any], kind: str, before: str, after: str, config: dict[str, Any]
    ) -> str | None:
        """The change as an MLflow run (outside the folder lock), with the run that made the
        models; None when no recorder is set or the store refused it."""
        if self.recorder is None:
            return None
        models_run = (config.get("version") or {}).get("mlflow_run_id")
        return self.recorder.record(entry, kind, before, after, models_run)

    def _checked_source(self, expected: str) -> Path:
        """The version folder served now, when it is the one the editor saw."""
        current = self.current_digest()
        if expected != current:
            raise StaleVersion(
                f"the bundle is now {current}, not {expected}: reload the sub-styles and edit again"
            )
        return self.versions.current()
