"""Cost of the default run: `kedro run` with default parameters on the built-in dataset (2,000
photos), for this tree and for a reference commit, interleaved in one run:
`python -m benchmarks.default_run [--blocks 1]`.

Machines of one kind differ several-fold in speed, and one machine drifts within an hour (the
reference alone took 422 to 542 s in one evening). So each block runs reference, current, current,
reference (ABBA), which cancels a steady drift, and its ratio is the current runs' total over the
reference runs' total; the figure is the median over blocks. Node time is what both trees' hooks
log at the end of a run (every node's run time; loading and saving datasets are outside it).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import subprocess
from pathlib import Path

from benchmarks._report import ROOT, markdown_table, publish
from benchmarks._scratch import generate_photos, reference_worktree
from benchmarks.startup import run_kedro, scratch_project

# main before the pretrained encoder (#30): the run the cost target compares with
REFERENCE = "8c3e60b"
ABBA = ("reference", "current", "current", "reference")
TARGET_RATIO = 1.25  # #30: the default run at most 1.25 x the reference's node time
NODE_TIME = re.compile(r"Node time (\d+) s; slowest")  # both trees' hooks log it once per run


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


def node_seconds(output: str) -> float:
    """The node time a run logged at its end (raises when there is none)."""
    found = NODE_TIME.findall(output)
    if not found:
        raise RuntimeError(f"the run logged no node time:\n{output[-2000:]}")
    return float(found[-1])


def run_order(blocks: int) -> list[tuple[int, str]]:
    """(block, tree) in ABBA order: reference, current, current, reference in every block."""
    return [(block, tree) for block in range(blocks) for tree in ABBA]


def median_ratios(rows: list[dict]) -> dict[str, float]:
    """The median over blocks of the current runs' total / the reference runs' total, for wall
    seconds and node seconds."""
    ratios = {}
    for measure in ("seconds", "node_seconds"):
        totals: dict[int, dict[str, float]] = {}
        for row in rows:
            block = totals.setdefault(row["block"], {"reference": 0.0, "current": 0.0})
            block[row["tree"]] += row[measure]
        ratios[measure] = round(
            statistics.median(t["current"] / t["reference"] for t in totals.values()), 3
        )
    return ratios


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "default_run")
    parser.add_argument("--per-category", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=1, help="ABBA blocks (4 runs each)")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos = work / "jewelry"
    if not photos.is_dir():
        generate_photos(photos, args.per_category, 128)
    reference = reference_worktree(work / "reference", args.reference)
    sources = {"reference": (reference, reference / "src"), "current": (ROOT, None)}
    rows = []
    for block, name in run_order(max(args.blocks, 1)):
        source, pythonpath = sources[name]
        project = scratch_project(work / f"{name}-project", source)
        (project / "mlruns").mkdir(exist_ok=True)
        for sub in ("04_feature", "06_models", "07_model_output"):
            (project / "data" / sub).mkdir(parents=True, exist_ok=True)
        seconds, output = run_kedro(project, ["run", "--params", f"raw_dir={photos}"], pythonpath)
        rows.append(
            {
                "block": block,
                "tree": name,
                "commit": args.reference if name == "reference" else this_tree(),
                "seconds": round(seconds, 1),
                "node_seconds": node_seconds(output),
                "test_accuracy": _metric(project, "test_accuracy"),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    ratios = median_ratios(rows)
    met = ratios["node_seconds"] <= TARGET_RATIO
    table = markdown_table(
        rows
        + [
            {
                "tree": "current / reference (median over blocks)",
                "seconds": ratios["seconds"],
                "node_seconds": ratios["node_seconds"],
            }
        ],
        ["block", "tree", "commit", "seconds", "node_seconds", "test_accuracy"],
    )
    section = (
        "## Default run (`benchmarks/default_run.py`)\n\n"
        "Wall seconds and node seconds (every node's run time, as each run logs it at its end; "
        "loading and saving datasets are outside it) of `kedro run --params "
        f"raw_dir=<built-in dataset, {4 * args.per_category} photos>` with default parameters, "
        f"reference commit `{args.reference}` and this tree on one machine, in "
        f"{max(args.blocks, 1)} block(s) of four runs (reference, current, current, reference: "
        "a steady drift cancels). A block's ratio is the current runs' total over the reference "
        f"runs' total.\n\n{table}\n\nTarget (#30): node time at most {TARGET_RATIO} x the "
        f"reference's ({'met' if met else 'not met'}, median over blocks); wall time "
        f"{ratios['seconds']} x ({'within' if ratios['seconds'] <= TARGET_RATIO else 'over'} "
        "the same bar)."
    )
    result = {
        "reference": args.reference,
        "rows": rows,
        "ratio": ratios["node_seconds"],
        "wall_ratio": ratios["seconds"],
        "target_ratio": TARGET_RATIO,
        "met": met,
    }
    publish("default_run", result, section)
    print(table)
    return result


if __name__ == "__main__":
    main()
