"""A team's MLflow tracking server on this machine: PostgreSQL (Debian's package) as the backend
store and `mlflow server --serve-artifacts`, both on 127.0.0.1, with their state in one folder.

`jewelry-pipeline tracking-server start|stop|status` (and `make tracking-server`) use it; so do the
tests. The folder holds `postgres/` (the cluster, created on first start), `artifacts/` (what the
server stores for its clients), `pgpass` (the database password, 0600, read by libpq, never put on
a command line), the two logs and `server.json` (ports, URL, process ids).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = Path(".tracking")
DEFAULT_POSTGRES_PORT = 55432
DEFAULT_MLFLOW_PORT = 5055
DATABASE = ROLE = "mlflow"
HOST = "127.0.0.1"


class TrackingServerError(RuntimeError):
    """The tracking server could not be started or stopped; the message says why and what to do."""


@dataclass
class ServerState:
    """What `server.json` records about a started server."""

    postgres_port: int
    mlflow_port: int
    mlflow_pid: int

    @property
    def url(self) -> str:
        """The tracking URI clients use (`MLFLOW_TRACKING_URI`)."""
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def backend_uri(self) -> str:
        """The PostgreSQL URI of the backend store (the password comes from `pgpass`)."""
        return f"postgresql://{ROLE}@{HOST}:{self.postgres_port}/{DATABASE}"


def postgres_bin() -> Path:
    """The folder of the newest installed PostgreSQL server binaries (Debian's layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise TrackingServerError(
            "PostgreSQL is not installed: `make tracking-server` installs Debian's `postgresql` "
            "(or run `apt-get install postgresql`)."
        )
    return found[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise TrackingServerError(f"{what} failed: " + " | ".join(detail))
    return result.stdout


def _check_reachable_by_postgres(folder: Path) -> None:
    """As root the cluster belongs to `postgres`, which must be able to reach the folder."""
    if os.geteuid() != 0:
        return
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise TrackingServerError(
                f"the `postgres` user cannot enter {parent} (mode "
                f"{oct(parent.stat().st_mode & 0o777)}); put the tracking folder elsewhere or "
                f"`chmod o+x {parent}`"
            )


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def _init_cluster(folder: Path, binaries: Path) -> None:
    """Create the cluster on first start: one role and database for MLflow, password from pgpass."""
    data = folder / "postgres"
    data.mkdir(parents=True)
    password = secrets.token_urlsafe(24)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    data.chmod(0o700)
    bootstrap = folder / "bootstrap.sql"
    _write_private(
        bootstrap,
        f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}';\n"
        f"CREATE DATABASE {DATABASE} OWNER {ROLE};\n",
    )
    if os.geteuid() == 0:
        shutil.chown(bootstrap, "postgres", "postgres")
    try:
        _run(
            _as_postgres(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                ]
            ),
            "initdb",
        )
        # single-user mode runs the bootstrap SQL without opening any port
        for statement in bootstrap.read_text().splitlines():
            subprocess.run(
                _as_postgres([str(binaries / "postgres"), "--single", "-D", str(data), "postgres"]),
                input=statement,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
    except BaseException:  # a failed, timed-out or interrupted first start leaves nothing behind
        shutil.rmtree(data, ignore_errors=True)
        raise
    finally:
        bootstrap.unlink(missing_ok=True)
    _write_private(folder / "pgpass", f"{HOST}:*:{DATABASE}:{ROLE}:{password}\n")
    logger.info("Created the PostgreSQL cluster in %s", data)


def _postgres_running(folder: Path, binaries: Path) -> bool:
    status = subprocess.run(
        _as_postgres([str(binaries / "pg_ctl"), "status", "-D", str(folder / "postgres")]),
        capture_output=True,
    )
    return status.returncode == 0


def start_postgres(folder: Path, port: int) -> None:
    """Start (creating on first use) the cluster on 127.0.0.1:`port`; no-op when running."""
    binaries = postgres_bin()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    _check_reachable_by_postgres(folder)
    # pgpass is written last on a first start: without it the cluster was never finished
    if not (folder / "pgpass").exists() or not (folder / "postgres" / "PG_VERSION").exists():
        shutil.rmtree(folder / "postgres", ignore_errors=True)
        _init_cluster(folder, binaries)
    if _postgres_running(folder, binaries):
        return
    log = folder / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    options = f"-h {HOST} -p {port} -k {shlex.quote(str(folder / 'postgres'))}"  # pg_ctl uses sh
    _run(
        _as_postgres(
            [
                str(binaries / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(folder / "postgres"),
                "-l",
                str(log),
                "-o",
                options,
            ]
        ),
        f"starting PostgreSQL on {HOST}:{port} (log: {log})",
    )


def stop_postgres(folder: Path, mode: str = "fast") -> None:
    """Stop the cluster (`fast`: roll back open transactions and shut down)."""
    if not (folder / "postgres" / "PG_VERSION").exists():
        return
    binaries = postgres_bin()
    if _postgres_running(folder, binaries):
        _run(
            _as_postgres(
                [str(binaries / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(folder / "postgres")]
            ),
            "stopping PostgreSQL",
        )


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether an MLflow server answers `/health` at `url`."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _server_env(folder: Path, state: ServerState) -> dict[str, str]:
    env = {
        **os.environ,
        "PGPASSFILE": str(folder / "pgpass"),
        "MLFLOW_BACKEND_STORE_URI": state.backend_uri,
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start(
    folder: Path = DEFAULT_FOLDER,
    postgres_port: int = DEFAULT_POSTGRES_PORT,
    mlflow_port: int = DEFAULT_MLFLOW_PORT,
    wait: float = 120.0,
) -> ServerState:
    """Start PostgreSQL, upgrade the MLflow schema, start `mlflow server`; return its state."""
    folder = folder.resolve()
    running = status(folder)
    if running is not None:
        logger.info("The tracking server is already running at %s", running.url)
        return running
    start_postgres(folder, postgres_port)
    state = ServerState(postgres_port, mlflow_port, 0)
    env = _server_env(folder, state)
    mlflow = [sys.executable, "-m", "mlflow"]
    try:
        _run([*mlflow, "db", "upgrade", state.backend_uri], "mlflow db upgrade", env)
    except BaseException:
        stop_postgres(folder)
        raise
    (folder / "artifacts").mkdir(exist_ok=True)
    log = open(folder / "mlflow.log", "ab")  # noqa: SIM115 - the server keeps it open
    process = subprocess.Popen(
        [
            *mlflow,
            "server",
            "--host",
            HOST,
            "--port",
            str(mlflow_port),
            "--workers",
            "2",
            "--serve-artifacts",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    state.mlflow_pid = process.pid
    (folder / "server.json").write_text(json.dumps(asdict(state), indent=2))
    deadline = time.monotonic() + wait
    while not healthy(state.url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(folder)
            tail = (folder / "mlflow.log").read_text(errors="replace").splitlines()[-5:]
            raise TrackingServerError(
                f"mlflow server did not come up on {state.url}: " + " | ".join(tail)
            )
        time.sleep(0.5)
    logger.info("MLflow tracking server at %s (PostgreSQL on port %d)", state.url, postgres_port)
    return state


def status(folder: Path = DEFAULT_FOLDER) -> ServerState | None:
    """The running server's state, or None when it is not running."""
    record = folder.resolve() / "server.json"
    if not record.exists():
        return None
    state = ServerState(**json.loads(record.read_text()))
    return state if healthy(state.url) else None


def _is_our_server(state: ServerState) -> bool:
    """Whether the recorded pid is still this folder's `mlflow server` (a stale record after a crash
    or a reboot may name an unrelated process, which must not be signalled)."""
    try:
        command = Path(f"/proc/{state.mlflow_pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [w.decode(errors="replace") for w in command]
    return "mlflow" in " ".join(words) and "server" in words and str(state.mlflow_port) in words


def stop_mlflow(folder: Path = DEFAULT_FOLDER) -> None:
    """Stop the `mlflow server` process group (its workers too)."""
    record = folder.resolve() / "server.json"
    if not record.exists():
        return
    state = ServerState(**json.loads(record.read_text()))
    if not _is_our_server(state):
        logger.info("No mlflow server of this folder runs as pid %d any more", state.mlflow_pid)
        return
    try:
        os.killpg(state.mlflow_pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.waitpid(state.mlflow_pid, os.WNOHANG)  # reap it when this process started it
        except ChildProcessError:
            pass
        try:
            os.killpg(state.mlflow_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(state.mlflow_pid, signal.SIGKILL)


def stop(folder: Path = DEFAULT_FOLDER) -> None:
    """Stop the MLflow server, then PostgreSQL."""
    folder = folder.resolve()
    stop_mlflow(folder)
    (folder / "server.json").unlink(missing_ok=True)
    stop_postgres(folder)
