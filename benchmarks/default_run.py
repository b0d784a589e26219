"""Cost of the default run: `kedro run` with default parameters on the built-in dataset (2,000
photos), for this tree and for a reference commit, one after the other in one run:
`python -m benchmarks.default_run`.

Machines of one kind differ several-fold in speed, so the figure that matters is the ratio measured
here.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
from pathlib import Path

from benchmarks._report import ROOT, markdown_table, publish
from benchmarks._scratch import generate_photos, reference_worktree
from benchmarks.startup import scratch_project, timed

# main before the pretrained encoder (#30): the run the cost target compares with
REFERENCE = "8c3e60b"
TARGET_RATIO = 1.25  # #30: the default run at most 1.25 x the reference's time


def _metric(project: Path, name: str) -> float | None:
    """One metric of the project's last MLflow run."""
    with sqlite3.connect(project / "mlruns" / "mlflow.db") as db:
        row = db.execute(
            "select value from latest_metrics where key = ? order by rowid desc limit 1", (name,)
        ).fetchone()
    return float(row[0]) if row else None


def this_tree() -> str:
    """This checkout's commit, marked when it has uncommitted changes."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head} with uncommitted changes" if dirty else head


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "default_run")
    parser.add_argument("--per-category", type=int, default=500)
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos = work / "jewelry"
    if not photos.is_dir():
        generate_photos(photos, args.per_category, 128)
    reference = reference_worktree(work / "reference", args.reference)
    rows = []
    for name, source, pythonpath in (
        ("reference", reference, reference / "src"),
        ("current", ROOT, None),
    ):
        project = scratch_project(work / f"{name}-project", source)
        (project / "mlruns").mkdir(exist_ok=True)
        for sub in ("04_feature", "06_models", "07_model_output"):
            (project / "data" / sub).mkdir(parents=True, exist_ok=True)
        seconds = timed(project, ["run", "--params", f"raw_dir={photos}"], pythonpath)
        rows.append(
            {
                "tree": name,
                "commit": args.reference if name == "reference" else this_tree(),
                "seconds": round(seconds, 1),
                "test_accuracy": _metric(project, "test_accuracy"),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    ratio = round(rows[1]["seconds"] / rows[0]["seconds"], 3)
    table = markdown_table(
        rows + [{"tree": "current / reference", "seconds": ratio}],
        ["tree", "commit", "seconds", "test_accuracy"],
    )
    section = (
        "## Default run (`benchmarks/default_run.py`)\n\n"
        "Wall seconds of `kedro run --params "
        f"raw_dir=<built-in dataset, {4 * args.per_category} photos>` with default "
        f"parameters, reference commit `{args.reference}` and this tree one after the other "
        f"on one machine.\n\n{table}\n\nTarget (#30): at most {TARGET_RATIO} x the reference "
        f"({'met' if ratio <= TARGET_RATIO else 'not met'})."
    )
    result = {
        "reference": args.reference,
        "rows": rows,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
    }
    publish("default_run", result, section)
    print(table)
    return result


if __name__ == "__main__":
    main()
