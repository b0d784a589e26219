"""`/recommend` under load, two checkouts of this project side by side on one bundle.

`python -m benchmarks.serve_side_by_side --before /path/to/old/checkout [--after .] --bundle B`.
Each checkout's service (its `src/` first on PYTHONPATH, this venv) serves the same bundle in turn,
alternating `--rounds` times so that a slow minute of the machine falls on both; the same load as
`benchmarks/serve.py`. Answers whether a change of the serving code costs latency or throughput.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from statistics import median

from benchmarks._report import ROOT, markdown_table, publish, run_outputs
from benchmarks.serve import LEVELS, measure
from jewelry_testing.servers import start_bentoml


def commit_of(tree: Path) -> str:
    """The short commit a checkout is at (with `+` when its tracked files are changed)."""
    head = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    changed = subprocess.run(["git", "-C", str(tree), "diff", "--quiet", "HEAD"]).returncode
    return head + ("+" if changed else "")


def serve_and_measure(tree: Path, bundle: Path, duration: float, max_requests: int) -> list[dict]:
    """The service of checkout `tree` on `bundle`, measured at each concurrency level."""
    logs = Path(tempfile.mkdtemp(prefix="serve-side-by-side-"))
    env = {"JEWELRY_MAX_CONCURRENCY": "1000", "PYTHONPATH": f"{tree / 'src'}:{tree}"}
    server = start_bentoml(bundle, logs / "bentoml.log", env)
    try:
        return measure(server.url, duration, max_requests)
    finally:
        server.stop()


def summary_rows(runs: dict[str, list[list[dict]]], trees: dict[str, Path]) -> list[dict]:
    """One row per checkout and level: medians over the rounds, and every 5xx counted."""
    rows = []
    for name, measured in runs.items():
        for level in LEVELS:
            at_level = [row for run in measured for row in run if row["concurrency"] == level]
            rows.append(
                {
                    "checkout": f"{name} ({commit_of(trees[name])})",
                    "concurrency": level,
                    "throughput_rps (median)": round(
                        median(r["throughput_rps"] for r in at_level), 2
                    ),
                    "p50_ms (median)": round(median(r["p50_ms"] for r in at_level), 2),
                    "p95_ms (median)": round(median(r["p95_ms"] for r in at_level), 2),
                    "5xx": sum(r["errors_5xx"] + r["transport_errors"] for r in at_level),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older checkout")
    parser.add_argument("--after", type=Path, default=ROOT, help="the newer checkout (this one)")
    parser.add_argument("--bundle", type=Path, default=run_outputs()[1])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--max-requests", type=int, default=3000, help="cap per level")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[list[dict]]] = {"before": [], "after": []}
    for round_number in range(args.rounds):
        order = ("after", "before") if round_number % 2 == 0 else ("before", "after")
        for name in order:
            print(f"round {round_number + 1}: {name} ({trees[name]})", flush=True)
            runs[name].append(
                serve_and_measure(trees[name], args.bundle, args.duration, args.max_requests)
            )
    report(runs, trees, args.bundle, args.rounds)


def report(runs: dict[str, list[list[dict]]], trees: dict[str, Path], bundle: Path, rounds: int):
    """Write the JSON and the PERFORMANCE.md section of measured `runs`, and print the table."""
    rows = summary_rows(runs, trees)
    section = "\n\n".join(
        [
            "## Serving, two checkouts side by side (`benchmarks/serve_side_by_side.py`)",
            f"The same bundle ({bundle.name}) and load as `benchmarks/serve.py`, each checkout "
            f"served in turn, {rounds} rounds alternating; medians over the rounds.",
            markdown_table(rows, list(rows[0])),
        ]
    )
    publish(
        "serve_side_by_side",
        {
            "bundle": str(bundle),
            "trees": {name: str(tree) for name, tree in trees.items()},
            "commits": {name: commit_of(tree) for name, tree in trees.items()},
            "rounds": rounds,
            "runs": runs,
        },
        section,
    )
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
