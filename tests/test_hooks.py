"""The MLflow tracking-store check that runs before kedro-mlflow touches the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jewelry_pipeline.hooks import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    NodeTimes,
    TrackingStoreError,
    check_tracking_database,
    mark_model_training,
    peak_memory_mb,
    sqlite_path,
)


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


def test_node_times_are_logged_with_the_slowest_at_the_end(caplog, monkeypatch):
    from types import SimpleNamespace

    clock = iter([0.0, 2.5, 10.0, 10.2])
    monkeypatch.setattr("jewelry_pipeline.hooks.time.perf_counter", lambda: next(clock))
    peaks = iter([100.0, 900.0, 950.0])  # before the run, after train, after split
    monkeypatch.setattr("jewelry_pipeline.hooks.peak_memory_mb", lambda: next(peaks))
    timer = NodeTimes()
    timer.before_pipeline_run()
    with caplog.at_level("INFO", logger="jewelry_pipeline.hooks"):
        for name in ("train", "split"):
            timer.before_node_run(SimpleNamespace(name=name))
            timer.after_node_run(SimpleNamespace(name=name))
        timer.after_pipeline_run()
    assert timer.seconds == {"train": 2.5, "split": 0.2}
    assert timer.peak_rise_mb == {"train": 800.0, "split": 50.0}
    messages = [r.getMessage() for r in caplog.records]
    assert "Node train took 2.5 s; peak memory 900 MB" in messages and not any(
        "Node split took" in m for m in messages
    )  # under a second: quiet
    assert messages[-1] == (
        "Node time 3 s; slowest: train 2 s, split 0 s; peak memory 950 MB "
        "(raised most by train, +800 MB)"
    )


def test_the_peak_memory_is_the_kernels_resident_peak_in_mb():
    """The kernel's own figure for this process (VmHWM, in kB), in MB."""
    held = bytearray(64 * 1024 * 1024)  # touched, so resident
    peak = peak_memory_mb()
    status = Path("/proc/self/status").read_text()
    kernel_kb = int(
        next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]
    )
    assert abs(peak - kernel_kb / 1024) < 8 and peak >= len(held) / 2**20


class RacedClient:
    """An MLflow client whose tag write loses a race as on PostgreSQL: another run's write lands
    first (when `other_writes`), then this insert fails on the unique key."""

    def __init__(self, client, other_writes: bool):
        self.client, self.other_writes, self.writes = client, other_writes, 0

    def get_experiment(self, experiment_id):
        return self.client.get_experiment(experiment_id)

    def set_experiment_tag(self, experiment_id, key, value):
        from mlflow.exceptions import MlflowException

        self.writes += 1
        if self.other_writes:
            self.client.set_experiment_tag(experiment_id, key, value)
        raise MlflowException('duplicate key value violates unique constraint "experiment_tag_pk"')


def test_the_experiment_is_marked_as_model_training_once_even_when_two_runs_race(tmp_path):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("race")
    mark_model_training(client, experiment)
    assert client.get_experiment(experiment).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    already = RacedClient(client, other_writes=False)
    mark_model_training(already, experiment)  # set already: nothing written
    assert already.writes == 0

    second = client.create_experiment("race-lost")
    mark_model_training(RacedClient(client, other_writes=True), second)  # the other run's tag
    assert client.get_experiment(second).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    failing = client.create_experiment("write-fails")
    with pytest.raises(MlflowException):  # a failure that left no tag is not hidden
        mark_model_training(RacedClient(client, other_writes=False), failing)
