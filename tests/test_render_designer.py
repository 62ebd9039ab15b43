"""`svcflow render` in the designer's loop: drafts outside the library, both views, redraw on save."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent

DRAFT = """
id: refund_request
version: 1
name: {zh: 退款申请, en: Refund request}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
  - {id: finance, name: {zh: 财务, en: Finance}}
nodes:
  - {id: start, kind: start, name: {zh: 收到申请, en: Request received}}
  - {id: check, kind: human, lane: agent, name: {zh: 核对订单, en: Check the order}, sla: {target: 4h}}
  - {id: pay, kind: human, lane: finance, name: {zh: 退款, en: Pay back}, sla: {target: 1d}}
  - {id: done, kind: end, outcome: refunded, name: {zh: 完成, en: Done}}
edges:
  - {from: start, to: check}
  - {from: check, to: pay}
  - {from: pay, to: done}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_render_draws_a_draft_file_outside_the_library(cli: CliRunner, tmp_path: Path) -> None:
    from svcflow.cli import app

    (tmp_path / "drafts").mkdir()
    (tmp_path / "drafts" / "refund.yaml").write_text(DRAFT, encoding="utf-8")
    result = cli.invoke(app, ["render", "drafts/refund.yaml", "--format", "svg"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "refund.svg"
    assert result.stdout.strip() == str(written)
    svg = written.read_text(encoding="utf-8")
    assert "核对订单" in svg and "SLA 4h" in svg


def test_render_of_a_draft_with_a_schema_error_names_the_file_and_line(cli: CliRunner, tmp_path: Path) -> None:
    from svcflow.cli import app

    (tmp_path / "broken.yaml").write_text(DRAFT.replace("kind: human, lane: finance", "kind: humane, lane: finance"),
                                          encoding="utf-8")
    result = cli.invoke(app, ["render", "broken.yaml"])
    assert result.exit_code == 2
    assert "broken.yaml" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "broken.svg").exists()


def test_render_view_both_writes_the_summary_beside_the_detailed_chart(cli: CliRunner, tmp_path: Path) -> None:
    from svcflow.cli import app

    result = cli.invoke(app, ["render", "complaint_handling", "--view", "both", "--format", "dot"])
    assert result.exit_code == 0, result.output
    detail, summary = tmp_path / "complaint_handling.dot", tmp_path / "complaint_handling-summary.dot"
    assert result.stdout.split() == [str(detail), str(summary)]
    assert "摘要 summary view" in summary.read_text(encoding="utf-8")
    assert "摘要 summary view" not in detail.read_text(encoding="utf-8")


def test_watch_needs_a_definition_file(cli: CliRunner) -> None:
    from svcflow.cli import app

    result = cli.invoke(app, ["render", "complaint_handling", "--watch"])
    assert result.exit_code == 1 and "--watch redraws a definition file" in result.output


def wait_for(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_watch_redraws_the_draft_when_it_is_saved(tmp_path: Path) -> None:
    draft = tmp_path / "refund.yaml"
    draft.write_text(DRAFT, encoding="utf-8")
    chart = tmp_path / "refund.dot"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SVCFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'svcflow.db'}"}
    process = subprocess.Popen([sys.executable, "-m", "svcflow", "render", str(draft), "--format", "dot",
                                "--out", str(chart), "--watch", "--max-renders", "2"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: chart.exists(), 60), "the first drawing never came"
        assert "核对订单" in chart.read_text(encoding="utf-8")
        draft.write_text(DRAFT.replace("核对订单", "复核订单"), encoding="utf-8")  # the designer saves
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stdout.split() == [str(chart), str(chart)]
    assert "复核订单" in chart.read_text(encoding="utf-8")


def test_watch_reports_a_broken_save_and_draws_the_next_good_one(tmp_path: Path) -> None:
    from svcflow.commands_render import watch

    draft = tmp_path / "draft.yaml"
    draft.write_text("first", encoding="utf-8")
    reports: list[str] = []
    drawn: list[str] = []

    def draw() -> None:
        from engine.errors import InputError

        text = draft.read_text(encoding="utf-8")
        if text == "broken":
            raise InputError("draft.yaml line 1: not a definition")
        drawn.append(text)
        if text == "first":
            draft.write_text("broken", encoding="utf-8")

    def report(message: str) -> None:
        reports.append(message)
        draft.write_text("fixed", encoding="utf-8")

    assert watch(draft, draw, max_renders=3, interval=0.01, report=report) == 3
    assert drawn == ["first", "fixed"]
    assert reports == ["error: draft.yaml line 1: not a definition"]
