"""The README's first command: the demo runs end to end and leaves its outputs behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.prefect
@pytest.mark.timeout(600)  # the demo subprocess itself may take up to 420 s on a shared machine
def test_the_demo_runs_cases_of_every_process_and_writes_charts_and_reports(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SVCFLOW_"))}
    out = tmp_path / "demo-output"
    result = subprocess.run(
        [sys.executable, "-m", "svcflow", "demo", "--seconds", "25", "--out", str(out), "--port", str(_free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Prefect UI: http://127.0.0.1:" in result.stdout
    assert "cases" in result.stdout and "SLA:" in result.stdout
    charts = {p.stem for p in (out / "flowcharts").glob("*.svg")}
    assert {"complaint_handling", "major_complaint", "after_sales_repair", "customer_retention"} <= charts
    assert (out / "review-complaint_handling.html").stat().st_size > 10_000
    assert list(out.glob("complaints-*.md"))
    assert (out / "svcflow-demo.db").exists()


def test_the_local_prefect_servers_ui_talks_to_the_port_actually_used(monkeypatch: pytest.MonkeyPatch):
    from svcflow.commands_prefect import server_environment

    monkeypatch.setenv("PREFECT_UI_API_URL", "http://127.0.0.1:4200/api")  # a stale setting must not win
    env = server_environment("http://127.0.0.1:4213/api")
    assert env["PREFECT_UI_API_URL"] == env["PREFECT_SERVER_UI_API_URL"] == "http://127.0.0.1:4213/api"


def test_keep_serving_starts_a_serve_that_died_again_until_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from svcflow import demo

    started: list[subprocess.Popen] = []

    def fake_serve(out_dir: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", "pass"])  # dies at once, like a crashed serve
        started.append(process)
        return process

    monkeypatch.setattr(demo, "_start_serve", fake_serve)
    first = subprocess.Popen([sys.executable, "-c", "pass"])
    first.wait()
    lines: list[str] = []
    last = demo.keep_serving(first, tmp_path, lines.append, check_seconds=0.05, until=lambda: len(started) >= 2)
    assert last is started[-1] and len(started) == 2
    assert all("starting it again" in line for line in lines)
