"""Soak check: many requests in a row; resident memory after the warm-up grows less than 10%
and no request fails."""

from __future__ import annotations

from pathlib import Path

from benchmarks.load_generator import run_load, sample_payloads
from benchmarks.reliability.checks import Check, Settings
from jewelry_testing.servers import start_bentoml

RSS_GROWTH_LIMIT = 0.10


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children, in MB."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def check_soak(bundle: Path, workdir: Path, settings: Settings) -> Check:
    """Many requests: memory after warm-up grows less than 10%, and nothing fails."""
    server = start_bentoml(bundle, workdir / "soak.log", {"JEWELRY_MAX_CONCURRENCY": "1000"})
    try:
        payloads = sample_payloads()
        warm = run_load(
            server.url, "/recommend", payloads, 8, duration_s=600, max_requests=settings.soak_warmup
        )
        rss_warm = tree_rss_mb(server.process.pid)
        samples = []
        step = max(1, (settings.soak_requests - settings.soak_warmup) // 10)
        ticks = {"next": step}

        def sample(issued: int) -> None:
            if issued >= ticks["next"]:
                ticks["next"] += step
                samples.append(round(tree_rss_mb(server.process.pid), 1))

        soak = run_load(
            server.url,
            "/recommend",
            payloads,
            8,
            duration_s=3600,
            max_requests=settings.soak_requests - settings.soak_warmup,
            on_tick=sample,
        )
        rss_end = tree_rss_mb(server.process.pid)
    finally:
        server.stop()
    total = warm.summary()["requests"] + soak.summary()["requests"]
    failures = sum(n for status, n in (warm.statuses + soak.statuses).items() if status != 200)
    growth = (rss_end - rss_warm) / rss_warm if rss_warm else 1.0
    figures = {
        "requests": total,
        "failures": failures,
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "growth_pct": round(100 * growth, 2),
        "rss_samples_mb": samples,
        "p99_ms": soak.summary()["p99_ms"],
    }
    passed = failures == 0 and (growth < RSS_GROWTH_LIMIT or not settings.judge_figures)
    note = (
        f"RSS growth after {settings.soak_warmup} warm-up requests under "
        f"{100 * RSS_GROWTH_LIMIT:.0f}%"
    )
    return Check(f"soak: {total} requests", passed, figures, note)
