"""Case artifacts follow changes made outside flow runs (HTTP API, inbox, CLI), against the session's
real Prefect server; the refresh never slows down or fails the change itself."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.access import library_roles
from engine.run.runtime import Engine
from engine.store.directory import Directory
from engine.time.clock import SystemClock
from flows.refresh import ArtifactRefresher, refresh_artifacts

pytest_plugins = ["tests.conftest_prefect"]

ROOT = Path(__file__).resolve().parent.parent
COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine.from_settings(f"sqlite:///{tmp_path / 'svcflow.db'}", ROOT / "process_defs", clock=SystemClock())
    yield engine
    engine.store.dispose()


def case_artifacts(case_id: str) -> list[Any]:
    """Every version of the case's artifact, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.artifacts import artifact_key

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(case_id)])))
    return sorted(found, key=lambda artifact: artifact.created)  # oldest first: the last is the current one


def refresher_of(engine: Engine) -> ArtifactRefresher:
    return next(hook for hook in engine.on_stored if isinstance(hook, ArtifactRefresher))


@pytest.mark.prefect
def test_a_completion_through_the_api_refreshes_the_case_artifact(
        prefect_api: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from svcflow.server.app import create_app

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("SVCFLOW_ARTIFACT_FLOWCHART", "false")
    directory = Directory(engine.store, library_roles(engine.library))
    _, secret = directory.create_token("desk", ["front_desk"], engine.clock.now())
    client = TestClient(create_app(engine))
    headers = {"Authorization": f"Bearer {secret}"}
    case = client.post("/api/cases", json={"process": "complaint_handling", "data": COMPLAINT}, headers=headers)
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    refresher = refresher_of(engine)
    assert refresher.flush(120)
    opened = case_artifacts(case_id)
    assert opened and "`register`" in opened[-1].data and "waiting" in opened[-1].data

    task_id = next(t.id for t in engine.store.load_case(case_id)[0].open_tasks() if t.node == "register")
    done = client.post(f"/api/tasks/{task_id}/complete", json={"data": {"channel": "phone", **COMPLAINT}},
                       headers=headers)
    assert done.status_code == 200, done.text
    assert refresher.flush(120)
    versions = case_artifacts(case_id)
    assert len(versions) > len(opened)
    assert "task completed by token:desk" in versions[-1].data  # the path table: register left by the completion


@pytest.mark.prefect
def test_an_update_through_the_cli_refreshes_the_case_artifact_before_the_command_exits(
        prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from svcflow.cli import app

    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("SVCFLOW_ARTIFACT_FLOWCHART", "false")
    at_exit: list[Any] = []  # what the command leaves for its exit: the bounded wait for the publication
    monkeypatch.setattr("atexit.register", lambda function, *args: at_exit.append((function, args)))
    runner = CliRunner()
    sets = [arg for key, value in COMPLAINT.items() for arg in ("--set", f"{key}={value}")]
    started = runner.invoke(app, ["start", "complaint_handling", *sets])
    assert started.exit_code == 0, started.output
    case_id = started.stdout.strip()
    updated = runner.invoke(app, ["update", case_id, "--set", "tier=standard"])
    assert updated.exit_code == 0, updated.output
    assert at_exit and all(function(*args) for function, args in at_exit)
    versions = case_artifacts(case_id)
    assert versions and "standard" in versions[-1].data


def test_without_a_prefect_api_nothing_is_hooked(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert refresh_artifacts(engine) is None and engine.on_stored == []


def test_a_failing_publication_is_logged_and_the_change_stays_stored(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_engine: Engine, case_id: str) -> None:
        raise ConnectionError("Prefect is down")

    refresher = ArtifactRefresher(engine, publish=broken)
    engine.on_stored.append(refresher)
    with caplog.at_level(logging.WARNING, logger="svcflow.flows"):
        case_id = engine.start("complaint_handling", COMPLAINT, actor="li")
        assert refresher.flush(10)
    assert engine.store.load_case(case_id)[0].status == "running"
    assert f"artifact of case {case_id} not refreshed: Prefect is down" in caplog.text


def test_a_hook_that_raises_does_not_fail_the_change(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    def raising(case_id: str) -> None:
        raise RuntimeError("hook trouble")

    engine.on_stored.append(raising)
    with caplog.at_level(logging.WARNING, logger="svcflow"):
        case_id = engine.start("complaint_handling", COMPLAINT, actor="li")
        engine.update(case_id, {"tier": "standard"}, actor="li")
    assert engine.store.load_case(case_id)[0].data["tier"] == "standard"
    assert "hook trouble" in caplog.text


def test_a_burst_of_changes_to_a_case_costs_few_publications_and_the_last_one_shows_the_end(engine: Engine) -> None:
    gate = threading.Event()
    seen: list[str] = []

    def slow(_engine: Engine, case_id: str) -> None:
        gate.wait(10)  # a slow Prefect API: changes pile up meanwhile
        seen.append(_engine.store.load_case(case_id)[0].data["description"])

    refresher = ArtifactRefresher(engine, publish=slow)
    engine.on_stored.append(refresher)
    case_id = engine.start("complaint_handling", COMPLAINT, actor="li")
    started = time.monotonic()
    for i in range(10):
        engine.update(case_id, {"description": f"change {i}"}, actor="li")
    assert time.monotonic() - started < 5  # the changes did not wait for the publication
    gate.set()
    assert refresher.flush(10)
    assert len(seen) <= 2 and seen[-1] == "change 9"
