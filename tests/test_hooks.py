"""The MLflow tracking-store check that runs before kedro-mlflow touches the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jewelry_pipeline.hooks import TrackingStoreError, check_tracking_database, sqlite_path


def test_sqlite_paths_resolve_against_the_project():
    assert sqlite_path("sqlite:///mlruns/mlflow.db", Path("/p")) == Path("/p/mlruns/mlflow.db")
    assert sqlite_path("sqlite:////abs/m.db", Path("/p")) == Path("/abs/m.db")
    assert sqlite_path("http://127.0.0.1:5000", Path("/p")) is None


def test_a_fresh_project_may_create_its_database(tmp_path):
    check_tracking_database(tmp_path / "mlflow.db", tmp_path / "artifacts")


def test_a_missing_database_with_existing_artifacts_is_refused(tmp_path):
    (tmp_path / "artifacts" / "1").mkdir(parents=True)
    with pytest.raises(TrackingStoreError, match="is missing"):
        check_tracking_database(tmp_path / "mlflow.db", tmp_path / "artifacts")


def test_a_database_that_vanished_after_use_is_refused(tmp_path):
    database = tmp_path / "mlflow.db"
    sqlite3.connect(database).execute("create table runs (id int)").connection.commit()
    check_tracking_database(database, tmp_path / "artifacts")  # in use from now on
    database.unlink()
    with pytest.raises(TrackingStoreError, match="is missing"):
        check_tracking_database(database, tmp_path / "artifacts")


def test_a_locked_database_is_reported_not_waited_on_forever(tmp_path):
    database = tmp_path / "mlflow.db"
    sqlite3.connect(database).execute("create table runs (id int)").connection.commit()
    holder = sqlite3.connect(database)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TrackingStoreError, match="is locked"):
            check_tracking_database(database, tmp_path / "artifacts", lock_wait=0.2)
    finally:
        holder.rollback()
        holder.close()
    check_tracking_database(database, tmp_path / "artifacts", lock_wait=0.2)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TrackingStoreError, match="not a usable SQLite file|cannot be opened"):
        check_tracking_database(database, tmp_path / "artifacts")
