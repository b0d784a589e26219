"""A bounded HTTP load generator (127.0.0.1 only) and helpers to start servers for benchmarks."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUIET_ENV = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}


def clean_env() -> dict[str, str]:
    """This environment without MLflow run state an earlier in-process run left behind, telemetry off."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **QUIET_ENV}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to this machine's loopback, not {host}")
    return url


@dataclass
class Server:
    """A server process started for a benchmark, with its log file."""

    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        """Terminate (then kill) the process, bounded in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(command: list[str], env: dict[str, str], ready_path: str, log: Path, timeout_s: float = 180, statuses: list[int] | None = None) -> Server:
    """Start `command` (which must listen on the port in `env['PORT']`) and wait until `ready_path` is 200.

    Each answer of the readiness path is appended to `statuses` when given.
    """
    port = env["PORT"]
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, env={**clean_env(), **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, timeout=2) as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = client.get(ready_path).status_code
            except httpx.TransportError:
                status = None
            if status is not None and statuses is not None:
                statuses.append(status)
            if status == 200:
                return server
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{command[:3]} did not become ready; the end of {log}:\n{log.read_text(errors='replace')[-3000:]}")


def start_bentoml(bundle: Path | None, log: Path, extra_env: dict[str, str] | None = None, statuses: list[int] | None = None) -> Server:
    """The project's BentoML service on a free loopback port, serving `bundle` (None: the store's champion)."""
    port = str(free_port())
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    command = [bentoml, "serve", "jewelry_pipeline.serving.service:JewelryService", "--host", "127.0.0.1", "--port", port]
    env = {"PORT": port, **({"JEWELRY_BUNDLE": str(bundle)} if bundle is not None else {}), **(extra_env or {})}
    return start(command, env, "/readyz", log, statuses=statuses)


def worker_pids(server: Server) -> list[int]:
    """The BentoML worker processes under the `bentoml serve` process."""
    import psutil

    workers = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if "worker" in " ".join(child.cmdline()):
                workers.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return workers


def worker_memory_mb(server: Server) -> dict:
    """Resident memory of each worker and of the supervising `bentoml serve` process, in MB."""
    import psutil

    rss = []
    for pid in worker_pids(server):
        try:
            rss.append(round(psutil.Process(pid).memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            pass
    return {"workers": len(rss), "worker_rss_mb": rss, "supervisor_rss_mb": round(psutil.Process(server.process.pid).memory_info().rss / 2**20)}


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
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(self.statuses.get(200, 0) / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "ok": self.statuses.get(200, 0),
            "status_429": self.statuses.get(429, 0),
            "other_4xx": sum(n for s, n in self.statuses.items() if isinstance(s, int) and 400 <= s < 500 and s != 429),
            "errors_5xx": sum(n for s, n in self.statuses.items() if isinstance(s, int) and s >= 500),
            "transport_errors": self.statuses.get("transport", 0),
        }


async def _run(url: str, path: str, payloads: list[dict], concurrency: int, duration_s: float, max_requests: int, timeout_s: float, on_tick=None, on_answer=None) -> LoadResult:
    latencies, statuses = [], Counter()
    jitter = random.Random(0)  # de-synchronised retries, as independent clients would be
    issued = 0
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=_loopback(url), timeout=timeout_s, limits=limits) as client:

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
                    elif response.status_code == 429:  # a polite client waits as told (at most a second), with jitter
                        await asyncio.sleep(min(1.0, float(response.headers.get("retry-after", "1"))) * jitter.uniform(0.5, 1.0))
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


def run_load(url: str, path: str, payloads: list[dict], concurrency: int, duration_s: float, max_requests: int, timeout_s: float = 60, on_tick=None, on_answer=None) -> LoadResult:
    """`concurrency` clients send requests until `duration_s` passes or `max_requests` are sent; `on_tick(issued)`
    and `on_answer(status)` (an HTTP status, or "transport") are called after each request."""
    return asyncio.run(_run(url, path, payloads, concurrency, duration_s, max_requests, timeout_s, on_tick, on_answer))


def sample_payloads(count: int = 16, seed: int = 0) -> list[dict]:
    """Multipart /recommend payloads: generated built-in-style photos, the same for a seed on every machine
    (never the repository's data/, so what a developer has there cannot change a result)."""
    import cv2

    from jewelry_pipeline.synth import CATEGORIES, SUBSTYLES, render

    rng = np.random.default_rng(seed)
    blobs = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        image = render(category, sorted(SUBSTYLES[category])[i % 3], rng, 128)
        blobs.append((f"synthetic{i}.jpg", cv2.imencode(".jpg", image)[1].tobytes()))
    return [{"files": {"image": (name, data, "image/jpeg")}, "data": {"k": "10"}} for name, data in blobs]
