"""`svcflow export bpmn` and `svcflow import bpmn` as a designer types them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_file
from svcflow.cli import app
from tests.bpmn_fixtures import FIXTURES

runner = CliRunner()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_export_then_import_from_the_command_line_gives_a_valid_identical_definition(tmp_path: Path) -> None:
    exported = runner.invoke(app, ["export", "bpmn", "major_complaint", "--out", str(tmp_path / "m.bpmn")])
    assert exported.exit_code == 0, exported.output
    imported = runner.invoke(app, ["import", "bpmn", str(tmp_path / "m.bpmn")])
    assert imported.exit_code == 0, imported.output
    assert "0 element(s) not carried over, valid" in imported.output
    back = load_file(tmp_path / "major_complaint.yaml").definition
    assert back == ProcessLibrary.from_dir().get("major_complaint").definition


def test_import_reports_each_refused_element_with_its_line_and_exits_non_zero() -> None:
    result = runner.invoke(app, ["import", "bpmn", str(FIXTURES["camunda_unsupported"])])
    assert result.exit_code == 1
    assert "camunda_unsupported.bpmn:26" in result.output and "subProcess 'Warranty'" in result.output
    assert "no handler named 'quote'" in result.output and "Traceback" not in result.output


def test_import_of_a_missing_file_is_a_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", "bpmn", str(tmp_path / "nope.bpmn")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_export_of_an_unknown_process_names_the_known_ones() -> None:
    result = runner.invoke(app, ["export", "bpmn", "no_such_process"])
    assert result.exit_code == 1 and "complaint_handling" in result.output
