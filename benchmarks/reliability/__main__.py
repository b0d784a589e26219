"""Reliability checks: load, soak, faults, hostile files and reproducibility, and their report.

`python -m benchmarks.reliability` (or `make reliability`) runs the full checks against the bundle
of a `make run` (data/07_model_output/bundle) and writes docs/RELIABILITY.md; the test suite runs
the same functions with light settings on a tiny bundle. Every server listens on 127.0.0.1 and
every loop is bounded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks._report import run_outputs
from benchmarks.reliability.checks import FULL, LIGHT, Check, Settings
from benchmarks.reliability.faults import check_bad_bundles, check_worker_kill
from benchmarks.reliability.hostile import check_hostile_files
from benchmarks.reliability.load import check_load
from benchmarks.reliability.project import make_project
from benchmarks.reliability.report import write_report
from benchmarks.reliability.reproducibility import check_reproducibility
from benchmarks.reliability.run_faults import check_killed_training, check_tracking_database
from benchmarks.reliability.soak import check_soak

# Checks against a live service on a bundle, in the order they run.
SERVICE_CHECKS = {
    "load": check_load,
    "soak": check_soak,
    "kill": check_worker_kill,
    "bundles": check_bad_bundles,
    "hostile": check_hostile_files,
}
# Checks of `kedro run` in one scratch project, in the order they run.
PROJECT_CHECKS = {
    "reproducibility": check_reproducibility,
    "training_kill": check_killed_training,
    "tracking": check_tracking_database,
}


def _announce(name: str, result: Check) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    print(f"[reliability] {name}: {verdict} {result.figures}", flush=True)


def run_all(
    bundle: Path, workdir: Path, settings: Settings, only: set[str] | None = None
) -> list[Check]:
    """Run the checks (all, or the named ones) and return their results."""
    results = []
    for name, check in SERVICE_CHECKS.items():
        if only is None or name in only:
            print(f"[reliability] {name} ...", flush=True)
            results.append(check(bundle, workdir, settings))
            _announce(name, results[-1])
    wanted = [name for name in PROJECT_CHECKS if only is None or name in only]
    if wanted:
        project = make_project(workdir, settings)
        for name in wanted:
            print(f"[reliability] {name} ...", flush=True)
            results.append(PROJECT_CHECKS[name](project, settings))
            _announce(name, results[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reliability", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bundle", type=Path, default=run_outputs()[1])
    names = ",".join([*SERVICE_CHECKS, *PROJECT_CHECKS])
    parser.add_argument("--only", help=f"comma-separated: {names}")
    parser.add_argument("--light", action="store_true", help="the test-suite settings (quick)")
    args = parser.parse_args()
    if not (args.bundle / "files.json").is_file():
        sys.exit(f"No serving bundle at {args.bundle}: run `make run` first (or pass --bundle).")
    settings = LIGHT if args.light else FULL
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        results = run_all(args.bundle, Path(tmp), settings, only)
    if args.only is None:
        write_report(results, args.bundle, settings)
    failed = [r.name for r in results if not r.passed]
    print("all checks pass" if not failed else f"FAILED: {failed}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
