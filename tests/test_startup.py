"""Fast start: commands that neither train nor embed never import TensorFlow, Keras or scikit-learn."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "sklearn")


def _imported_top_level_modules(project, *args: str) -> set[str]:
    """Run `kedro *args` with Python's import profiler on; return the top-level modules it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run([sys.executable, "-m", "kedro", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w]+)$", result.stderr, flags=re.MULTILINE))


@pytest.mark.parametrize("command", ["registry list", "ingestion"])
def test_listing_and_ingestion_never_load_tensorflow(kedro_project, tiny_dataset, command):
    """Broken on purpose once: an `import keras` at the top of classifier/nodes.py makes both cases fail."""
    args = command.split() if command != "ingestion" else ["run", "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"]
    modules = _imported_top_level_modules(kedro_project, *args)
    assert "kedro" in modules  # the profiler saw the run
    assert not modules & set(HEAVY), f"`kedro {command}` imported {sorted(modules & set(HEAVY))}"
