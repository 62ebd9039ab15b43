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
