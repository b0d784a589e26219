"""A bounded HTTP load generator (127.0.0.1 only) and the sample `/recommend` payloads it sends,
for the serving and reliability benchmarks."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
import numpy as np


def _loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to this machine's loopback, not {host}")
    return url


@dataclass
class LoadResult:
    """What one bounded load run measured."""

    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter

    def summary(self) -> dict:
        """Latency percentiles, throughput and answers by class."""
        ok = self.latencies_ms
        pct = (lambda q: round(float(np.percentile(ok, q)), 2)) if ok else (lambda q: None)
        codes = {s: n for s, n in self.statuses.items() if isinstance(s, int)}
        ok_count = self.statuses.get(200, 0)
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(ok_count / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "ok": ok_count,
            "status_429": self.statuses.get(429, 0),
            "other_4xx": sum(n for s, n in codes.items() if 400 <= s < 500 and s != 429),
            "errors_5xx": sum(n for s, n in codes.items() if s >= 500),
            "transport_errors": self.statuses.get("transport", 0),
        }


async def _run(
    url: str,
    path: str,
    payloads: list[dict],
    concurrency: int,
    duration_s: float,
    max_requests: int,
    timeout_s: float,
    on_tick: Callable[[int], None] | None = None,
    on_answer: Callable[[int | str], None] | None = None,
) -> LoadResult:
    latencies, statuses = [], Counter()
    jitter = random.Random(0)  # de-synchronised retries, as independent clients would be
    issued = 0
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    client = httpx.AsyncClient(base_url=_loopback(url), timeout=timeout_s, limits=limits)
    async with client:

        async def worker(worker_id: int) -> None:
            nonlocal issued
            while time.monotonic() < deadline and issued < max_requests:
                payload = payloads[issued % len(payloads)]
                issued += 1
                started = time.perf_counter()
                status = "transport"
                try:
                    response = await client.post(path, **payload)
                    status = response.status_code
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        latencies.append((time.perf_counter() - started) * 1000)
                    elif response.status_code == 429:
                        # a polite client waits as told (at most a second), with jitter
                        wait_s = min(1.0, float(response.headers.get("retry-after", "1")))
                        await asyncio.sleep(wait_s * jitter.uniform(0.5, 1.0))
                except httpx.TransportError:
                    statuses["transport"] += 1
                if on_answer is not None:
                    on_answer(status)
                if on_tick is not None:
                    on_tick(issued)

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    return LoadResult(concurrency, issued, elapsed, latencies, statuses)


def run_load(
    url: str,
    path: str,
    payloads: list[dict],
    concurrency: int,
    duration_s: float,
    max_requests: int,
    timeout_s: float = 60,
    on_tick: Callable[[int], None] | None = None,
    on_answer: Callable[[int | str], None] | None = None,
) -> LoadResult:
    """`concurrency` clients send requests until `duration_s` passes or `max_requests` are sent;
    `on_tick(issued)` and `on_answer(status)` (an HTTP status, or "transport") are called after
    each request."""
    return asyncio.run(
        _run(
            url,
            path,
            payloads,
            concurrency,
            duration_s,
            max_requests,
            timeout_s,
            on_tick,
            on_answer,
        )
    )


def sample_payloads(count: int = 16, seed: int = 0) -> list[dict]:
    """Multipart /recommend payloads: generated built-in-style photos, the same for a seed on
    every machine (never the repository's data/, so what a developer has there cannot change a
    result)."""
    import cv2

    from jewelry_pipeline.synth import CATEGORIES, SUBSTYLES, render

    rng = np.random.default_rng(seed)
    blobs = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        image = render(category, sorted(SUBSTYLES[category])[i % 3], rng, 128)
        blobs.append((f"synthetic{i}.jpg", cv2.imencode(".jpg", image)[1].tobytes()))
    return [
        {"files": {"image": (name, data, "image/jpeg")}, "data": {"k": "10"}}
        for name, data in blobs
    ]
