"""Start a server process on a free 127.0.0.1 port, wait until it is ready, stop it bounded in
time; the project's `bentoml serve` and its worker processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from jewelry_pipeline import QUIET_ENV

# The repository checkout this package lives in (it is not installed): servers start there.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENTOML_SERVICE = "jewelry_pipeline.serving.service:JewelryService"


def clean_env() -> dict[str, str]:
    """This environment without MLflow run state an earlier in-process run left behind,
    telemetry off."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**kept, **QUIET_ENV}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bentoml_serve_command(port: str, service: str = BENTOML_SERVICE) -> list[str]:
    """`bentoml serve` of `service` (default: the project's) on 127.0.0.1:`port`, with this
    interpreter's bentoml."""
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    return [bentoml, "serve", service, "--host", "127.0.0.1", "--port", port]


@dataclass
class Server:
    """A server process started for a test or a benchmark, with its log file."""

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


def start(
    command: list[str],
    env: dict[str, str],
    ready_path: str,
    log: Path,
    timeout_s: float = 180,
    statuses: list[int] | None = None,
) -> Server:
    """Start `command` (which must listen on the port in `env['PORT']`) and wait until
    `ready_path` is 200.

    Each answer of the readiness path is appended to `statuses` when given.
    """
    port = env["PORT"]
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        env={**clean_env(), **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )
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
    log_end = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{command[:3]} did not become ready; the end of {log}:\n{log_end}")


def start_bentoml(
    bundle: Path | None,
    log: Path,
    extra_env: dict[str, str] | None = None,
    statuses: list[int] | None = None,
    service: str = BENTOML_SERVICE,
) -> Server:
    """`service` (default: the project's BentoML service) on a free loopback port, serving
    `bundle` (None: the store's champion)."""
    port = str(free_port())
    env = {"PORT": port, **({"JEWELRY_BUNDLE": str(bundle)} if bundle is not None else {})}
    command = bentoml_serve_command(port, service)
    return start(command, {**env, **(extra_env or {})}, "/readyz", log, statuses=statuses)


# A worker's log line once its bundle is loaded, with the worker's component name first.
LOADED_LINE = re.compile(r"^\S+ \[INFO\] \[([^\]]+)\] Serving bundle .+ loaded$", re.MULTILINE)


def wait_until_every_worker_is_ready(server: Server, timeout: float = 120) -> None:
    """Wait until every worker process has logged its bundle as loaded: a `/readyz` answer speaks
    only for the worker that took the connection, and one still loading may be too busy to take
    any."""
    deadline = time.monotonic() + timeout
    while True:
        workers = len(worker_pids(server))
        loaded = set(LOADED_LINE.findall(server.log.read_text(errors="replace")))
        if workers and len(loaded) >= workers:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(loaded)} of {workers} workers of {server.url} loaded in {timeout:.0f} s"
            )
        time.sleep(0.2)


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
    supervisor = psutil.Process(server.process.pid).memory_info().rss
    return {
        "workers": len(rss),
        "worker_rss_mb": rss,
        "supervisor_rss_mb": round(supervisor / 2**20),
    }
