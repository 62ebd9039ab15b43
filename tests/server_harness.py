"""`svcflow server` as a real subprocess on a free 127.0.0.1 port, over SQLite or PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_DATABASE = "svcflow_front_tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_postgres(admin_url: str, name: str = PG_DATABASE) -> str:
    """Our own database (never another's), emptied: the URL of it."""
    import psycopg

    base = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


@contextmanager
def running_server(database_url: str, workdir: Path, **env: str) -> Iterator[str]:
    """Start the server, wait until it answers, yield its base URL, stop it."""
    with server_process(database_url, workdir, **env) as (base, _process):
        yield base


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), for cost measurements."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(database_url: str, workdir: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server's base URL and its process (for its CPU time)."""
    port = free_port()
    environment = {**os.environ, "SVCFLOW_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT),
                   "SVCFLOW_SESSION_SECRET": "test-session-key", **env}
    log = (workdir / f"server-{port}.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "svcflow", "server", "--port", str(port)], cwd=workdir,
                               env=environment, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("svcflow server did not start: " + (workdir / f"server-{port}.log").read_text())
            time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
