"""Project hooks: check the MLflow tracking database before a run touches it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)
LOCK_WAIT_SECONDS = 10.0
IN_USE_MARKER = ".tracking-database-in-use"  # written next to the database once it holds runs


class TrackingStoreError(RuntimeError):
    """The MLflow tracking database cannot be used safely for this run."""


def sqlite_path(tracking_uri: str, project_path: Path) -> Path | None:
    """The database file of a `sqlite:///` tracking URI (relative to the project), else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    return path if path.is_absolute() else project_path / path


def check_tracking_database(database: Path, artifacts: Path, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
    """Refuse a run that would silently start a new history (database gone) or wait on a locked database."""
    marker = database.parent / IN_USE_MARKER
    if not database.exists():
        if marker.exists() or (artifacts.is_dir() and any(artifacts.iterdir())):
            raise TrackingStoreError(
                f"The MLflow database {database} is missing, but earlier runs were tracked there "
                f"({marker.name} or artifacts in {artifacts} remain). Restore the database from a backup; to start a fresh "
                f"history on purpose, remove {marker} and {artifacts}. Nothing was written."
            )
        return
    try:
        connection = sqlite3.connect(database, timeout=lock_wait)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise TrackingStoreError(
                f"The MLflow database {database} is locked by another process (another `kedro run`, or a tool holding a write "
                f"transaction) and stayed locked for {lock_wait:.0f} s. Nothing was written; run again once it is free."
            ) from None
        raise TrackingStoreError(f"The MLflow database {database} cannot be opened: {exc}. Nothing was written.") from None
    except sqlite3.DatabaseError as exc:
        raise TrackingStoreError(f"The MLflow database {database} is not a usable SQLite file: {exc}. Nothing was written.") from None
    marker.touch()


class TrackingStoreCheck:
    """Runs before kedro-mlflow's own hook, so a bad tracking store fails the run with a plain message."""

    def __init__(self) -> None:
        self._database: Path | None = None

    @hook_impl
    def after_pipeline_run(self) -> None:
        """The database now holds a run: mark it in use, so its later disappearance is noticed."""
        if self._database is not None and self._database.exists():
            (self._database.parent / IN_USE_MARKER).touch()

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        loader = context.config_loader
        if "mlflow" not in loader.config_patterns:
            loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        server = loader["mlflow"].get("server", {})
        database = sqlite_path(str(server.get("mlflow_tracking_uri") or ""), Path(context.project_path))
        if database is None:
            return
        self._database = database
        artifacts = database.parent / "artifacts"
        check_tracking_database(database, artifacts)
        logger.debug("MLflow database %s is usable", database)
