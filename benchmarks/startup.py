"""Start-up and incremental ingestion: `kedro registry list` and `kedro run --pipelines ingestion`
on generated photos, for this tree and for a reference commit, side by side in one run:
`python -m benchmarks.startup`.

The reference commit is checked out with `git worktree` under build/startup/ and imported first
through PYTHONPATH; each command runs in its own scratch project, so neither touches the
repository's data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import ROOT, markdown_table, publish
from benchmarks._scratch import generate_photos, reference_worktree
from jewelry_pipeline import QUIET_ENV

REFERENCE = "e3e49a2"  # main before the fast-start and incremental-ingestion work (#16)


def scratch_project(path: Path, source: Path) -> Path:
    """A project folder with `source`'s conf and metadata and empty data folders."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    shutil.copy(source / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(source / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    (path / "conf" / "local").mkdir(exist_ok=True)
    (path / "src").mkdir()
    for sub in ("01_raw", "02_intermediate", "03_primary", "05_model_input", "08_reporting"):
        (path / "data" / sub).mkdir(parents=True)
    return path


def timed(project: Path, args: list[str], pythonpath: Path | None) -> float:
    """Wall seconds of one `kedro` command in `project` (which must succeed)."""
    return run_kedro(project, args, pythonpath)[0]


def run_kedro(project: Path, args: list[str], pythonpath: Path | None) -> tuple[float, str]:
    """Wall seconds and output of one `kedro` command in `project` (which must succeed); log lines
    are not wrapped."""
    env = {**os.environ, **QUIET_ENV, "COLUMNS": "250"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,  # a default run took 823 s on a slow machine of this kind
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"kedro {' '.join(args)} failed in {project}:\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return seconds, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photos", type=int, default=600, help="generated photos (over 4 categories)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each command; the median is reported"
    )
    parser.add_argument("--reference", default=REFERENCE, help="the commit to compare with")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "startup")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos = work / "photos"
    if not photos.is_dir():
        generate_photos(photos, args.photos // 4, 256)
    reference = reference_worktree(work / "reference", args.reference)
    trees = {"reference": (reference, reference / "src"), "current": (ROOT, None)}
    ingest = ["run", "--pipelines", "ingestion", "--params", f"raw_dir={photos}"]
    rows, raw = [], {}
    for name, (source, pythonpath) in trees.items():
        listing = [
            timed(scratch_project(work / f"{name}-list", source), ["registry", "list"], pythonpath)
            for _ in range(args.repeats)
        ]
        fresh, again = [], []
        for _ in range(args.repeats):
            project = scratch_project(work / f"{name}-ingest", source)
            fresh.append(timed(project, ingest, pythonpath))
            again.append(timed(project, ingest, pythonpath))  # same folder, nothing changed
        raw[name] = {
            "registry_list_s": listing,
            "ingestion_fresh_s": fresh,
            "ingestion_second_s": again,
        }
        rows.append(
            {
                "tree": name,
                **{key: round(statistics.median(values), 1) for key, values in raw[name].items()},
            }
        )
    current, old = rows[1], rows[0]
    ratios = {
        key: round(current[key] / old[key], 2)
        for key in ("registry_list_s", "ingestion_fresh_s", "ingestion_second_s")
    }
    rows.append({"tree": "current / reference", **ratios})
    table = markdown_table(
        rows, ["tree", "registry_list_s", "ingestion_fresh_s", "ingestion_second_s"]
    )
    section = (
        f"## Start-up and incremental ingestion (`benchmarks/startup.py`)\n\n"
        f"Wall seconds (median of {args.repeats}) of `kedro registry list` and of "
        "`kedro run --pipelines ingestion` on "
        f"{args.photos} generated 256 px photos: a fresh project, then the same command again "
        "on the unchanged folder "
        f"(the current tree reuses its decode cache). Reference: commit `{args.reference}`, "
        f"measured in the same run.\n\n{table}\n\n"
        f"Target (#16): listing and ingestion under a third of the reference's wall time."
    )
    result = {
        "photos": args.photos,
        "reference": args.reference,
        "rows": rows,
        "raw": raw,
        "ratios": ratios,
    }
    publish("startup", result, section)
    print(table)
    return result


if __name__ == "__main__":
    main()
