"""Cost of the default run: `kedro run` with default parameters on the built-in dataset (2,000
photos), for this tree and for a reference commit, in interleaved pairs in one run:
`python -m benchmarks.default_run [--pairs 2]`.

Machines of one kind differ several-fold in speed, and one machine drifts within an hour (the
reference alone took 422 to 542 s in one evening), so the figure that matters is the median of the
pairs' ratios. The pairs run in ABBA order (reference first, then current first), so a steady drift
cancels. Node time is the sum of the node times both trees log (every node of a second or more).
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
TARGET_RATIO = 1.25  # #30: the default run at most 1.25 x the reference's node time
NODE_LINE = re.compile(r"Node (\S+) took ([0-9.]+) s")  # both trees' hooks log this


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
    """The sum of the node times a run logged."""
    return round(sum(float(match.group(2)) for match in NODE_LINE.finditer(output)), 1)


def run_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, tree) in ABBA order: the reference first in even pairs, this tree first in odd."""
    order = []
    for pair in range(pairs):
        trees = ("reference", "current") if pair % 2 == 0 else ("current", "reference")
        order += [(pair, tree) for tree in trees]
    return order


def median_ratios(rows: list[dict]) -> dict[str, float]:
    """The median over pairs of current / reference, for wall seconds and node seconds."""
    ratios = {}
    for measure in ("seconds", "node_seconds"):
        by_pair: dict[int, dict[str, float]] = {}
        for row in rows:
            by_pair.setdefault(row["pair"], {})[row["tree"]] = row[measure]
        pairs = [times["current"] / times["reference"] for times in by_pair.values()]
        ratios[measure] = round(statistics.median(pairs), 3)
    return ratios


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "default_run")
    parser.add_argument("--per-category", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=2, help="interleaved reference/current pairs")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos = work / "jewelry"
    if not photos.is_dir():
        generate_photos(photos, args.per_category, 128)
    reference = reference_worktree(work / "reference", args.reference)
    sources = {"reference": (reference, reference / "src"), "current": (ROOT, None)}
    rows = []
    for pair, name in run_order(args.pairs):
        source, pythonpath = sources[name]
        project = scratch_project(work / f"{name}-project", source)
        (project / "mlruns").mkdir(exist_ok=True)
        for sub in ("04_feature", "06_models", "07_model_output"):
            (project / "data" / sub).mkdir(parents=True, exist_ok=True)
        seconds, output = run_kedro(project, ["run", "--params", f"raw_dir={photos}"], pythonpath)
        rows.append(
            {
                "pair": pair,
                "tree": name,
                "commit": args.reference if name == "reference" else this_tree(),
                "seconds": round(seconds, 1),
                "node_seconds": node_seconds(output),
                "test_accuracy": _metric(project, "test_accuracy"),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if not rows[-1]["node_seconds"]:
            raise RuntimeError(f"the {name} run logged no node times:\n{output[-2000:]}")
    ratios = median_ratios(rows)
    met = ratios["node_seconds"] <= TARGET_RATIO
    table = markdown_table(
        rows
        + [
            {
                "tree": "current / reference (median of pairs)",
                "seconds": ratios["seconds"],
                "node_seconds": ratios["node_seconds"],
            }
        ],
        ["pair", "tree", "commit", "seconds", "node_seconds", "test_accuracy"],
    )
    section = (
        "## Default run (`benchmarks/default_run.py`)\n\n"
        "Wall seconds and node seconds (the sum of the node times each run logs) of `kedro run "
        f"--params raw_dir=<built-in dataset, {4 * args.per_category} photos>` with default "
        f"parameters, reference commit `{args.reference}` and this tree in {args.pairs} "
        "interleaved pairs (ABBA order) on one machine.\n\n"
        f"{table}\n\nTarget (#30): node time at most {TARGET_RATIO} x the reference's, median "
        f"of the pairs ({'met' if met else 'not met'}); the wall-time ratio is beside it."
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
