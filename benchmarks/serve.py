"""`/recommend` under load: the BentoML service against a naive single-process Flask server.

`python -m benchmarks.serve [--bundle data/07_model_output/bundle] [--duration 20]`. Both servers
serve the same bundle on 127.0.0.1 and do the same work; every request is bounded in count and time.
Targets: p50 <= 30 ms at concurrency 1; throughput at 32 >= 2x the naive server's; zero 5xx.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks._report import bundle_models, markdown_table, publish, run_outputs
from benchmarks.load_generator import run_load, sample_payloads
from jewelry_testing.servers import free_port, start, start_bentoml, worker_memory_mb

LEVELS = (1, 8, 32)
TARGET_P50_MS, TARGET_SPEEDUP = 30.0, 2.0


def measure(url: str, duration: float, max_requests: int) -> list[dict]:
    """Warm up, then one bounded run per concurrency level."""
    payloads = sample_payloads()
    run_load(url, "/recommend", payloads, concurrency=2, duration_s=10, max_requests=20)
    rows = []
    for level in LEVELS:
        summary = run_load(
            url,
            "/recommend",
            payloads,
            concurrency=level,
            duration_s=duration,
            max_requests=max_requests,
        ).summary()
        print(f"  c={level}: {summary}", flush=True)
        rows.append(summary)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=run_outputs()[1])
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds per concurrency level"
    )
    parser.add_argument("--max-requests", type=int, default=3000, help="cap per concurrency level")
    args = parser.parse_args()
    if not (args.bundle / "files.json").is_file():
        sys.exit(f"No serving bundle at {args.bundle}: run `make run` first (or pass --bundle).")
    logs = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    results = {}
    print("BentoML service", flush=True)
    server = start_bentoml(args.bundle, logs / "bentoml.log", {"JEWELRY_MAX_CONCURRENCY": "1000"})
    try:
        results["bentoml"] = measure(server.url, args.duration, args.max_requests)
        memory = worker_memory_mb(server)
    finally:
        server.stop()
    print("Naive Flask server", flush=True)
    port = str(free_port())
    naive = start(
        [sys.executable, "-m", "benchmarks.naive_flask", str(args.bundle), port],
        {"PORT": port},
        "/readyz",
        logs / "naive.log",
    )
    try:
        results["naive_flask"] = measure(naive.url, args.duration, args.max_requests)
    finally:
        naive.stop()

    rows = [{"server": name, **row} for name, level_rows in results.items() for row in level_rows]
    bento = {r["concurrency"]: r for r in results["bentoml"]}
    flask = {r["concurrency"]: r for r in results["naive_flask"]}
    # A baseline that failed (no successful answer, or any 5xx) gives no speedup to compare with.
    baseline_ok = flask[32]["ok"] > 0 and flask[32]["errors_5xx"] == 0
    speedup = bento[32]["throughput_rps"] / flask[32]["throughput_rps"] if baseline_ok else None
    checks = {
        "p50_at_1_ms": bento[1]["p50_ms"],
        "p50_at_1_met": bento[1]["p50_ms"] is not None and bento[1]["p50_ms"] <= TARGET_P50_MS,
        "throughput_speedup_at_32": round(speedup, 2) if speedup is not None else None,
        "speedup_met": speedup is not None and speedup >= TARGET_SPEEDUP,
        "errors_5xx": sum(r["errors_5xx"] + r["transport_errors"] for r in results["bentoml"]),
    }
    checks["zero_5xx_met"] = checks["errors_5xx"] == 0
    columns = [
        "server",
        "concurrency",
        "requests",
        "throughput_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "ok",
        "status_429",
        "other_4xx",
        "errors_5xx",
        "transport_errors",
    ]
    speedup_text = (
        f"{speedup:.2f}x" if speedup is not None else "not comparable (the naive server failed)"
    )
    section = "\n\n".join(
        [
            "## Serving: `/recommend` under load (`benchmarks/serve.py`)",
            f"Same bundle ({args.bundle.name}: {bundle_models(args.bundle)}), same sample photos, "
            "on 127.0.0.1; "
            f"{args.duration:.0f} s or {args.max_requests} requests per level, "
            "whichever comes first.",
            markdown_table(rows, columns),
            f"Targets: p50 at concurrency 1 = {checks['p50_at_1_ms']} ms "
            f"(target <= {TARGET_P50_MS:.0f}: {'met' if checks['p50_at_1_met'] else 'NOT met'}); "
            f"throughput at 32 = {speedup_text} the naive server's "
            f"(target >= {TARGET_SPEEDUP:.0f}x: {'met' if checks['speedup_met'] else 'NOT met'}); "
            f"5xx and transport errors on the service = {checks['errors_5xx']} "
            f"({'met' if checks['zero_5xx_met'] else 'NOT met'}).",
            f"Memory after the load: {memory['workers']} workers (`JEWELRY_WORKERS`), "
            "resident MB per worker "
            f"{', '.join(map(str, memory['worker_rss_mb']))}; "
            f"the supervising `bentoml serve` process {memory['supervisor_rss_mb']} MB.",
        ]
    )
    publish(
        "serve",
        {
            "bundle": str(args.bundle),
            "duration_s": args.duration,
            "results": results,
            "checks": checks,
            "memory": memory,
        },
        section,
    )
    print(checks)


if __name__ == "__main__":
    main()
