"""Nothing invalid runs: every path that loads definitions to run cases applies the validator.

Each test takes a real library definition, breaks it the way a designer might, and loads it the
way the engine, the simulator or the CLI does: it must be refused with the same located problem
`svcflow validate` reports — while warnings let it through.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.definition.library import DEFAULT_DIR, ProcessLibrary
from engine.definition.validation import validate_paths
from engine.errors import DefinitionError, Problem
from engine.run.handlers import HandlerRegistry, default_registry
from engine.run.runtime import Engine, LogNotifier
from engine.store.sql import Store
from engine.time.clock import FakeClock
from tests.conftest import MONDAY_9AM
from simulation.scenario import scenario_for
from simulation.simulator import simulate
from svcflow.cli import app

CLOCK = FakeClock(MONDAY_9AM)
COMPLAINT = (DEFAULT_DIR / "complaint_handling.yaml").read_text(encoding="utf-8")
NO_DEFAULT = COMPLAINT.replace(
    "  - {from: major_check, to: assign_owner, default: true,",
    "  - {from: major_check, to: assign_owner, when: 'data.tier == \"gold\"',",
)
UNKNOWN_CHOICE = COMPLAINT.replace('when: \'data.supervisor_decision == "refer_major"\'',
                                   'when: \'data.supervisor_decision == "refer_majro"\'')


def library_dir(tmp_path: Path, complaint_text: str) -> Path:
    """A copy of the real library with complaint_handling.yaml replaced."""
    directory = tmp_path / "process_defs"
    shutil.copytree(DEFAULT_DIR, directory)
    (directory / "complaint_handling.yaml").write_text(complaint_text, encoding="utf-8")
    return directory


def codes(problems: list[Problem]) -> set[str]:
    return {problem.code for problem in problems}


def refusal(tmp_path: Path, text: str) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        ProcessLibrary.from_dir(library_dir(tmp_path, text))
    return caught.value


def test_the_mutations_are_errors_that_svcflow_validate_reports() -> None:
    assert NO_DEFAULT != COMPLAINT and UNKNOWN_CHOICE != COMPLAINT


def test_from_dir_refuses_an_exclusive_gateway_without_default_with_the_validators_problem(tmp_path: Path) -> None:
    error = refusal(tmp_path, NO_DEFAULT)
    reported = validate_paths([library_dir(tmp_path / "again", NO_DEFAULT)], None)
    assert codes(error.problems) == {"no_default"}
    assert [(p.line, p.node, p.message) for p in error.problems] == [
        (p.line, p.node, p.message) for p in reported if p.is_error]
    assert error.problems[0].node == "major_check"
    assert error.problems[0].file is not None and error.problems[0].file.endswith("complaint_handling.yaml")


def test_from_dir_refuses_an_enum_literal_that_is_not_a_choice(tmp_path: Path) -> None:
    error = refusal(tmp_path, UNKNOWN_CHOICE)
    assert "unknown_choice" in codes(error.problems)
    assert any("refer_majro" in p.message for p in error.problems)


def test_the_engine_refuses_a_library_that_was_loaded_without_validation(tmp_path: Path) -> None:
    library, load_problems = ProcessLibrary.load([library_dir(tmp_path, NO_DEFAULT)])
    assert load_problems == []  # the schema is fine: only the validator sees the mistake
    with pytest.raises(DefinitionError) as caught:
        Engine(Store("sqlite://"), library, clock=CLOCK, notifier=LogNotifier())
    assert codes(caught.value.problems) == {"no_default"}


def test_the_engine_refuses_an_automatic_step_whose_handler_it_does_not_have() -> None:
    library = ProcessLibrary.from_dir()
    with pytest.raises(DefinitionError) as caught:
        Engine(Store("sqlite://"), library, clock=CLOCK, handlers=HandlerRegistry(), notifier=LogNotifier())
    assert codes(caught.value.problems) == {"unknown_handler"}


def test_add_text_refuses_an_invalid_definition_before_any_case_can_start() -> None:
    library = ProcessLibrary()
    with pytest.raises(DefinitionError) as caught:
        library.add_text(NO_DEFAULT, "complaint_handling.yaml")
    assert codes(caught.value.problems) == {"no_default"}
    assert library.process_ids() == []


def test_a_sub_process_missing_from_the_library_is_refused_when_the_engine_gets_it() -> None:
    library = ProcessLibrary()
    library.add_text(COMPLAINT, "complaint_handling.yaml")  # calls major_complaint, not yet added
    with pytest.raises(DefinitionError) as caught:
        Engine(Store("sqlite://"), library, clock=CLOCK, notifier=LogNotifier())
    assert codes(caught.value.problems) == {"unknown_process"}


def test_warnings_do_not_refuse(tmp_path: Path) -> None:
    directory = library_dir(tmp_path, COMPLAINT)
    (directory / "complaint_handling.yaml").rename(directory / "complaints.yaml")  # id differs from the file
    library = ProcessLibrary.from_dir(directory)
    engine = Engine(Store("sqlite://"), library, clock=CLOCK, notifier=LogNotifier())
    assert "complaint_handling" in engine.library.process_ids()
    assert [p.code for p in library.problems()] == ["id_mismatch"]
    assert not library.problems()[0].is_error


def test_the_simulator_refuses_a_library_with_an_invalid_definition(tmp_path: Path) -> None:
    library, _ = ProcessLibrary.load([library_dir(tmp_path, UNKNOWN_CHOICE)])
    with pytest.raises(DefinitionError) as caught:
        simulate(scenario_for("complaint_handling"), cases=1, seed=1, library=library)
    assert "unknown_choice" in codes(caught.value.problems)


def test_the_simulator_refuses_an_invalid_variant_definition(tmp_path: Path) -> None:
    variant = tmp_path / "complaint_variant.yaml"
    variant.write_text(NO_DEFAULT, encoding="utf-8")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"name: variant\ndefinition: {variant}\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        simulate(scenario_for(str(scenario)), cases=1, seed=1)
    assert "no_default" in codes(caught.value.problems)


def test_cli_start_refuses_to_run_a_case_of_an_invalid_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVCFLOW_PROCESS_DIR", str(library_dir(tmp_path, NO_DEFAULT)))
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    result = CliRunner().invoke(app, ["start", "complaint_handling", "--set", "customer_id=C1"])
    assert result.exit_code != 0
    assert "complaint_handling.yaml:" in result.output and "major_check" in result.output
    assert "Traceback" not in result.output


def test_the_real_library_passes_every_load_path() -> None:
    library = ProcessLibrary.from_dir()
    Engine(Store("sqlite://"), library, clock=CLOCK, handlers=default_registry(), notifier=LogNotifier())
    assert [p for p in library.problems(default_registry()) if p.is_error] == []
