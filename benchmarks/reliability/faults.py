"""Service fault checks: SIGKILL of one worker under load, and a missing, corrupt or truncated
bundle at start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from benchmarks._report import ROOT
from benchmarks.load_generator import run_load, sample_payloads
from benchmarks.reliability.checks import Check, Settings, wide_output_env
from jewelry_pipeline.core.bundle import CLASSIFIER_FILE, INDEX_FILE
from jewelry_testing.servers import bentoml_serve_command, free_port, start_bentoml, worker_pids

RECOVERY_LIMIT_S = 10.0
WORKERS_MIN = 2  # the service default (`JEWELRY_WORKERS`)
GAP_MIN_S = 2.0  # the shortest window after the kill in which the survivors' answers are counted


def _client_connections(pid: int, port: int) -> int:
    """Established client connections a worker holds on the service port: its share of the
    clients."""
    import psutil

    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return 0
    return sum(
        1
        for c in connections
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


def check_worker_kill(bundle: Path, workdir: Path, settings: Settings) -> Check:
    """SIGKILL one worker under load: only its own requests in flight may fail, never with a 5xx;
    the other worker keeps answering and the supervisor replaces the dead one.

    Broken on purpose once: with `JEWELRY_WORKERS=1` (and the worker count check removed) it
    failed, with `answered_before_replacement` 1 (4 clients): nothing but a reply already on the
    wire answered between the kill and the new worker's start.
    """
    server = start_bentoml(bundle, workdir / "kill.log", {"JEWELRY_MAX_CONCURRENCY": "1000"})
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    clients = 4
    try:
        payloads = sample_payloads()
        outcome, answers = {}, []

        def on_answer(status: int | str) -> None:
            answers.append((time.monotonic(), status))

        def load() -> None:
            outcome["load"] = run_load(
                server.url,
                "/recommend",
                payloads,
                clients,
                settings.kill_load_seconds,
                10**9,
                timeout_s=15,
                on_answer=on_answer,
            ).summary()

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(2)
        workers = worker_pids(server)
        victim = max(workers, key=lambda pid: _client_connections(pid, port)) if workers else None
        victim_share = _client_connections(victim, port) if victim else 0
        killed_at = time.monotonic()
        if victim:
            os.kill(victim, signal.SIGKILL)
        replaced = None
        while victim and time.monotonic() - killed_at < 60:
            if len([pid for pid in worker_pids(server) if pid != victim]) >= len(workers):
                replaced = time.monotonic() - killed_at
                break
            time.sleep(0.1)
        loader.join(timeout=settings.kill_load_seconds + 60)
        after = None
        with httpx.Client(base_url=server.url, timeout=15) as client:
            after = client.post("/recommend", **payloads[0]).status_code
        alive = server.process.poll() is None
    finally:
        server.stop()
    load = outcome.get("load", {})
    failed = (load.get("transport_errors", 0) + load.get("errors_5xx", 0)) if load else None
    # Answers while the dead worker had no replacement yet: only the surviving workers can give
    # them (beyond the `clients` answers that may have been on the wire at the kill). The window
    # is at least GAP_MIN_S: a replacement process appears within a second but needs seconds more
    # to import TensorFlow and load the bundle, so a lone worker answers nothing in it.
    gap_end = killed_at + max(replaced if replaced is not None else 60, GAP_MIN_S)
    answered_in_gap = sum(1 for at, status in answers if killed_at < at < gap_end and status == 200)
    figures = {
        "workers": len(workers),
        "clients": clients,
        "dead_worker_connections": victim_share,
        "replaced_after_s": round(replaced, 2) if replaced is not None else None,
        "answered_before_replacement": answered_in_gap,
        "server_process_alive": alive,
        "requests_during_test": load.get("requests"),
        "ok": load.get("ok"),
        "failed_requests": failed,
        "errors_5xx": load.get("errors_5xx") if load else None,
        "status_after": after,
    }
    share_only = failed is not None and failed <= victim_share
    no_5xx = bool(load) and load.get("errors_5xx", 0) == 0
    recovered_in_time = replaced is not None and (
        replaced <= RECOVERY_LIMIT_S or not settings.judge_figures
    )
    passed = (
        len(workers) >= WORKERS_MIN
        and recovered_in_time
        and alive
        and no_5xx
        and share_only
        and answered_in_gap > clients
        and after == 200
    )
    return Check(
        "fault: SIGKILL of one worker under load",
        passed,
        figures,
        "only the dead worker's requests in flight fail (at most its client connections), never "
        "as 5xx; the others answer before it is replaced, within "
        f"{RECOVERY_LIMIT_S:.0f} s",
    )


def _broken_bundles(bundle: Path, workdir: Path) -> dict[str, tuple[Path, str]]:
    """A missing, a corrupt and a truncated copy of the bundle, each with the name its error must
    give."""
    missing = workdir / "no-such-bundle"
    corrupt = workdir / "corrupt-bundle"
    shutil.copytree(bundle, corrupt)
    data = bytearray((corrupt / CLASSIFIER_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corrupt / CLASSIFIER_FILE).write_bytes(bytes(data))
    truncated = workdir / "truncated-bundle"
    shutil.copytree(bundle, truncated)
    index = truncated / INDEX_FILE
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    return {
        "missing": (missing, "no-such-bundle"),
        "corrupt": (corrupt, "classifier.keras"),
        "truncated": (truncated, "index.npz"),
    }


def check_bad_bundles(bundle: Path, workdir: Path, settings: Settings) -> Check:
    """A missing, corrupt or truncated bundle at start: exit non-zero with a message naming it."""
    figures, passed = {}, True
    for kind, (path, named) in _broken_bundles(bundle, workdir).items():
        started = time.monotonic()
        done = subprocess.run(
            bentoml_serve_command(str(free_port())),
            env={**wide_output_env(), "JEWELRY_BUNDLE": str(path)},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        output = done.stdout + done.stderr
        message = next((line.strip() for line in output.splitlines() if "BundleError:" in line), "")
        ok = done.returncode != 0 and named in message
        passed &= ok
        figures[kind] = {
            "exit_code": done.returncode,
            "seconds": round(time.monotonic() - started, 1),
            "message": message[-160:],
        }
    return Check(
        "fault: missing, corrupt or truncated bundle at start",
        passed,
        figures,
        "non-zero exit, the message names the file",
    )
