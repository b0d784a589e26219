"""Training-run fault checks: `kedro run` killed while it saves a model, and a locked or missing
MLflow tracking database."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from benchmarks.reliability.checks import Check, Settings, wide_output_env
from benchmarks.reliability.project import kedro_run, kedro_run_command, run_params

KILLED_TRAINING = "fault: kedro run killed while saving a model, then run again"

HOLD_SAVE = """
# Test-only start-up patch (PYTHONPATH): the zip writer of a `.keras` file whose name contains
# JEWELRY_HOLD_SAVE_OF stops just before it finishes, prints a marker and waits to be killed.
import os, sys, time, zipfile
_close = zipfile.ZipFile.close
def close(self):
    target = os.environ.get("JEWELRY_HOLD_SAVE_OF")
    if target and self.mode == "w" and target in str(getattr(self, "filename", "")):
        print("SAVE HELD OPEN", self.filename, flush=True)
        time.sleep(600)
    return _close(self)
zipfile.ZipFile.close = close
"""


def _error_line(done: subprocess.CompletedProcess, marker: str) -> str:
    """The last output line carrying `marker`, with the line after it (messages wrap)."""
    lines = (done.stdout + done.stderr).splitlines()
    found = [i for i, line in enumerate(lines) if marker in line]
    return " ".join(line.strip() for line in lines[found[-1] : found[-1] + 3]) if found else ""


def _runs_in(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("select count(*) from runs").fetchone()[0])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_while_saving(project: Path, settings: Settings) -> bool:
    """Start a classifier run whose save of the model is held open, SIGKILL it there; whether the
    save was reached."""
    patch_dir = project / "build" / "hold-save"
    patch_dir.mkdir(parents=True, exist_ok=True)
    (patch_dir / "sitecustomize.py").write_text(HOLD_SAVE)
    env = {**wide_output_env(), "PYTHONPATH": str(patch_dir), "JEWELRY_HOLD_SAVE_OF": "classifier."}
    command = kedro_run_command("classifier", run_params(settings, **{"seed": 99}))
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    held, deadline = False, time.monotonic() + 600
    for line in process.stdout:
        if "SAVE HELD OPEN" in line:
            held = True
            break
        if time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    return held


def check_killed_training(project: Path, settings: Settings) -> Check:
    """SIGKILL `kedro run` while it *saves* the classifier (the zip writer is held open just before
    it finishes): the final path still holds the previous model, and the next run completes and
    leaves no temporary file.

    Broken on purpose once: with `save_keras_atomic` writing straight to the final path, the killed
    save left a truncated classifier.keras at the final path (`final_path_holds_previous_model:
    false`, and it failed to load).
    """
    from jewelry_pipeline.core.models.files import load_keras_safe
    from jewelry_pipeline.core.store import open_store

    model = project / "data/06_models/classifier.keras"
    # on its own: needs no earlier check
    first = kedro_run(project, "ingestion,split,classifier", run_params(settings))
    if first.returncode != 0 or not model.is_file():
        return Check(
            KILLED_TRAINING, False, {"first_run_exit_code": first.returncode}, first.stderr[-300:]
        )
    previous = _sha256(model)
    held = _kill_while_saving(project, settings)
    holds_previous = model.is_file() and _sha256(model) == previous
    loads_after_kill = False
    try:
        loads_after_kill = load_keras_safe(model) is not None
    except Exception:  # noqa: BLE001 - a half-written file is exactly what this check looks for
        loads_after_kill = False
    left_by_kill = sorted(p.name for p in model.parent.glob(".*tmp*"))
    store_ok = open_store(project / "data/03_primary/image_store.npy").shape[0] > 0
    again = kedro_run(project, "classifier", run_params(settings))
    left_after_rerun = sorted(p.name for p in model.parent.glob(".*tmp*"))
    reloaded = again.returncode == 0 and load_keras_safe(model) is not None
    figures = {
        "killed_while_saving": held,
        "final_path_holds_previous_model": holds_previous,
        "final_path_loads_after_kill": loads_after_kill,
        "temporary_files_left_by_the_kill": left_by_kill,
        "temporary_files_left_after_rerun": left_after_rerun,
        "store_still_loads": store_ok,
        "rerun_exit_code": again.returncode,
        "model_loads_after_rerun": reloaded,
    }
    passed = (
        held
        and holds_previous
        and loads_after_kill
        and not left_after_rerun
        and store_ok
        and reloaded
    )
    return Check(
        KILLED_TRAINING,
        passed,
        figures,
        "the final path holds the previous model or the new one, never half; "
        "no temporary file survives the next run",
    )


def check_tracking_database(project: Path, settings: Settings) -> Check:
    """A locked or missing MLflow database: a clear error, nothing written, no runs lost."""
    database = project / "mlruns/mlflow.db"
    if not database.exists():  # a history to protect: one tracked run first
        kedro_run(project, "ingestion,split", run_params(settings), timeout=600)
    before = _runs_in(database)
    holder = sqlite3.connect(database, timeout=1)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        locked = kedro_run(project, "split", run_params(settings), timeout=300)
    finally:
        holder.rollback()
        holder.close()
    locked_seconds = time.monotonic() - started
    locked_message = _error_line(locked, "TrackingStoreError:")
    aside = database.with_name("mlflow.db.aside")
    database.rename(aside)
    try:
        missing = kedro_run(project, "split", run_params(settings), timeout=300)
        created = database.exists()
    finally:
        database.unlink(missing_ok=True)
        aside.rename(database)
    missing_message = _error_line(missing, "TrackingStoreError:")
    with sqlite3.connect(database) as connection:
        integrity = connection.execute("pragma integrity_check").fetchone()[0]
    after = _runs_in(database)
    recovered = kedro_run(project, "split", run_params(settings), timeout=300)
    figures = {
        "locked_exit_code": locked.returncode,
        "locked_seconds": round(locked_seconds, 1),
        "locked_message": locked_message[-200:],
        "missing_exit_code": missing.returncode,
        "missing_message": missing_message[-200:],
        "empty_database_created": created,
        "runs_before_after": [before, after],
        "integrity_check": integrity,
        "next_run_exit_code": recovered.returncode,
        "runs_after_next_run": _runs_in(database),
    }
    passed = (
        locked.returncode != 0
        and "is locked" in locked_message
        and missing.returncode != 0
        and "is missing" in missing_message
        and not created
        and before == after
        and integrity == "ok"
        and recovered.returncode == 0
        and figures["runs_after_next_run"] == before + 1
    )
    return Check(
        "fault: MLflow database locked or missing",
        passed,
        figures,
        "the run stops with a plain message before writing; existing runs intact",
    )
