"""Load check: many clients over the service's concurrency cap get only 200 or 429, never a 5xx,
while the health probes stay fast."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.load_generator import run_load, sample_payloads
from benchmarks.reliability.checks import Check, Settings
from jewelry_testing.servers import start_bentoml

PROBE_LIMIT_MS = 200.0
HEALTH_PATHS = ("/readyz", "/livez")


def _probe(url: str, seconds: float, out: multiprocessing.Queue) -> None:
    """In its own process: GET /readyz and /livez every 0.25 s; report each latency and status."""
    answers = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            for path in HEALTH_PATHS:
                started = time.perf_counter()
                try:
                    status = client.get(path).status_code
                except httpx.TransportError:
                    status = 0
                answers.append((path, status, (time.perf_counter() - started) * 1000))
            time.sleep(0.25)
    out.put(answers)


def check_load(bundle: Path, workdir: Path, settings: Settings) -> Check:
    """Many clients over the concurrency cap: only 200 or 429, no 5xx; probes stay fast."""
    cap = {"JEWELRY_MAX_CONCURRENCY": str(settings.max_concurrency)}
    server = start_bentoml(bundle, workdir / "load.log", cap)
    try:
        spawn = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue = spawn.Queue()
        prober = spawn.Process(target=_probe, args=(server.url, settings.load_seconds, queue))
        prober.start()
        result = run_load(
            server.url,
            "/recommend",
            sample_payloads(),
            settings.load_clients,
            settings.load_seconds,
            max_requests=10**9,
        ).summary()
        probes = queue.get(timeout=60)
        prober.join(timeout=10)
    finally:
        server.stop()
    probe_ms = [ms for _, _, ms in probes]
    probe_bad = sum(1 for _, status, _ in probes if status != 200)
    other = result["other_4xx"] + result["errors_5xx"] + result["transport_errors"]
    reported = (
        "requests",
        "ok",
        "status_429",
        "errors_5xx",
        "transport_errors",
        "throughput_rps",
        "p50_ms",
        "p99_ms",
    )
    figures = {
        **{k: result[k] for k in reported},
        "clients": settings.load_clients,
        "seconds": settings.load_seconds,
        "max_concurrency": settings.max_concurrency,
        "other_answers": other,
        "probes": len(probes),
        "probe_failures": probe_bad,
        "probe_max_ms": round(max(probe_ms), 1) if probe_ms else None,
        "probe_p99_ms": round(float(np.percentile(probe_ms, 99)), 1) if probe_ms else None,
        "slow_probes": [
            (i, path, round(ms))
            for i, (path, _, ms) in enumerate(probes)
            if ms > PROBE_LIMIT_MS / 2
        ],
    }
    fast_probes = bool(probe_ms) and max(probe_ms) < PROBE_LIMIT_MS
    passed = (
        other == 0
        and result["status_429"] > 0
        and result["ok"] > 0
        and probe_bad == 0
        and bool(probe_ms)
        and (fast_probes or not settings.judge_figures)
    )
    note = f"answers are 200 or 429 only; /readyz and /livez under {PROBE_LIMIT_MS:.0f} ms"
    return Check("load: clients over the concurrency cap", passed, figures, note)
