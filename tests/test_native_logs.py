"""TensorFlow's native start-up lines are dropped while it loads, and nothing else is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jewelry_pipeline.native_logs import TENSORFLOW_IMPORT_NOISE, native_stderr_without

ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    b"I0000 00:00:1796600749.074386    5256 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results.\n"
)


def test_the_known_lines_are_dropped_and_every_other_line_is_kept(capfd):
    with native_stderr_without(TENSORFLOW_IMPORT_NOISE):
        os.write(2, ABSL + b"E0000 a real error\n" + ONEDNN + b"I0000 port.cc:1] other news\n")
    assert capfd.readouterr().err == "E0000 a real error\nI0000 port.cc:1] other news\n"


def test_everything_is_kept_when_the_import_fails(capfd):
    with pytest.raises(ImportError), native_stderr_without(TENSORFLOW_IMPORT_NOISE):
        os.write(2, ABSL + ONEDNN)
        raise ImportError("broken install")
    assert capfd.readouterr().err == (ABSL + ONEDNN).decode()


def _import_stderr(code: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_tensorflow_loads_silently_once_the_package_is_imported():
    """Without the package, TensorFlow 2.21 prints the absl and oneDNN lines whatever
    TF_CPP_MIN_LOG_LEVEL says; after it (as in every run and service), keras and TensorFlow load
    without a line."""
    assert "absl::InitializeLog" in _import_stderr("import tensorflow")
    assert _import_stderr("import jewelry_pipeline, keras, tensorflow as tf; tf.constant(1)") == ""
