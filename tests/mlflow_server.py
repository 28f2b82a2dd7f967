"""A real ``mlflow server`` on 127.0.0.1 for tests: started, health-checked, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow(port: int, store: Path, artifacts: Path | None = None, *,
                 command: list[str] | None = None, cwd: Path | None = None,
                 ) -> subprocess.Popen:
    """Start a server over a SQLite store; return once it answers ``/health``.

    ``command``: the exact words to run instead (e.g. the README's command), in ``cwd``.
    The server's own process group is killed by :func:`stop_mlflow`, so a restart on the
    same port never talks to the previous server's last worker.
    """
    wait_for(lambda: not listening(port), 30, f"port {port} to be free")
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if command is None:
        command = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{store}"]
        # artifacts beside the store, never in the server's working directory
        command += ["--artifacts-destination",
                    str(artifacts or store.parent / "mlartifacts")]
    # no telemetry (the network is closed); no job runner: its 7 background processes
    # (GenAI jobs, not needed for tracking) slowed the start by 10-15 s on 2 busy cores
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=env, cwd=cwd)
    try:
        wait_for(lambda: healthy(port) or process.poll() is not None, 120, "the MLflow server")
    except AssertionError:
        stop_mlflow(process)
        raise
    assert process.poll() is None, f"mlflow server exited with {process.returncode}"
    process.merge3_port = port  # type: ignore[attr-defined]
    return process


def stop_mlflow(process: subprocess.Popen) -> None:
    """Kill the server's whole process group and wait until its port is closed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    port = getattr(process, "merge3_port", None)
    if port is not None:  # a killed worker may hold the socket a moment longer
        wait_for(lambda: not listening(port), 30, "the MLflow server's port to close")
