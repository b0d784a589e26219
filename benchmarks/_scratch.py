"""Scratch inputs the benchmarks share: generated photos, and a worktree of a reference commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks._report import ROOT


def generate_photos(out: Path, per_category: int, size: int) -> Path:
    """The built-in generator's photos (seed 42) in `out`, made in a child process."""
    command = [sys.executable, "-m", "jewelry_pipeline.cli", "synth", "--out", str(out)]
    command += ["--per-category", str(per_category), "--size", str(size), "--seed", "42"]
    subprocess.run(command, check=True, capture_output=True)
    return out


def reference_worktree(path: Path, commit: str) -> Path:
    """A git worktree of `commit` at `path` (kept between runs)."""
    if not path.is_dir():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), commit],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path
