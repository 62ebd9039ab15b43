"""Every case waiting for a person keeps one live waiting run: the reconciliation's decisions
(pure, no Prefect) and the operator check of issue 14 in its reduced form (served, real server)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.waiting import RunView, plan_repairs

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def run(case_id: str, state: str, *, minutes_ago: float = 1, deployed: bool = True, name: str = "",
        run_count: int = 1, expires_in: float | None = None) -> RunView:
    expires = NOW + timedelta(minutes=expires_in) if expires_in is not None else None
    return RunView(id=uuid.uuid4(), case_id=case_id, state=state, state_name=name or state.title(),
                   since=NOW - timedelta(minutes=minutes_ago), deployed=deployed, run_count=run_count,
                   expires=expires)


def plan(waiting: set[str], runs: list[RunView], ended: set[str] = frozenset(), **kw: object):  # type: ignore[assignment]
    return plan_repairs(waiting, ended, runs, now=NOW, stale_seconds=1800, **kw)  # type: ignore[arg-type]


def test_a_waiting_case_without_any_run_gets_a_new_one() -> None:
    result = plan({"C-1"}, [])
    assert result.start == ["C-1"] and not result.revive


def test_a_case_whose_suspended_run_is_live_is_left_alone() -> None:
    result = plan({"C-1"}, [run("C-1", "PAUSED", expires_in=30)])
    assert result.counts() == {"healthy": 1, "revived": 0, "started": 0, "cancelled": 0, "marked_crashed": 0,
                               "expired": 0}


def test_a_suspended_run_past_its_pause_timeout_is_failed_and_replaced() -> None:
    old = run("C-1", "PAUSED", expires_in=-1)
    result = plan({"C-1"}, [old])
    assert result.expire == [old] and result.start == ["C-1"]


def test_a_crashed_deployment_run_is_run_again_rather_than_replaced() -> None:
    crashed = run("C-1", "CRASHED")
    result = plan({"C-1"}, [crashed])
    assert result.revive == [crashed] and result.start == []


def test_a_run_that_keeps_crashing_is_replaced_after_the_revival_limit() -> None:
    result = plan({"C-1"}, [run("C-1", "CRASHED", run_count=5)], revive_max=5)
    assert result.revive == [] and result.start == ["C-1"]


def test_a_running_run_counts_as_live_until_it_is_stale() -> None:
    fresh = plan({"C-1"}, [run("C-1", "RUNNING", minutes_ago=5)])
    assert fresh.healthy == 1 and not fresh.revive
    stale = run("C-1", "RUNNING", minutes_ago=31)
    assert plan({"C-1"}, [stale]).revive == [stale]


def test_taking_over_after_a_killed_serve_runs_its_pending_and_running_runs_again() -> None:
    pending, running = run("C-1", "PENDING"), run("C-2", "RUNNING")
    result = plan({"C-1"}, [pending, running], takeover=True)
    # C-2 no longer waits for a person but its run died mid-way: it is run again too
    assert set(result.revive) == {pending, running} and result.start == []


def test_a_local_run_that_died_is_marked_crashed_and_the_case_gets_a_served_run() -> None:
    local = run("C-1", "RUNNING", minutes_ago=40, deployed=False)
    result = plan({"C-1"}, [local])
    assert result.crash == [local] and result.start == ["C-1"]


def test_of_several_suspended_runs_of_a_case_the_newest_stays() -> None:
    older, newer = run("C-1", "PAUSED", minutes_ago=10), run("C-1", "PAUSED", minutes_ago=2)
    result = plan({"C-1"}, [newer, older])
    assert result.cancel == [older] and result.healthy == 1


def test_a_suspended_run_of_an_ended_case_is_cancelled() -> None:
    left = run("C-1", "PAUSED")
    result = plan(set(), [left], ended={"C-1"})
    assert result.cancel == [left] and not result.start


def test_a_refusal_on_the_form_names_fields_by_their_bilingual_labels() -> None:
    from engine.definition.library import ProcessLibrary
    from engine.definition.model import HumanTask
    from flows.human import readable_refusal

    graph = ProcessLibrary.from_dir().get("complaint_handling")
    node = next(n for n in graph.nodes.values() if isinstance(n, HumanTask) and n.form)
    spec = node.form[0]
    text = readable_refusal(f"invalid input for task T-1: field '{spec.id}': not one of the choices", node)
    assert text == f"«{spec.label.zh} / {spec.label.en}»: not one of the choices"  # type: ignore[union-attr]


@pytest.mark.prefect
@pytest.mark.timeout(1500)  # about 2 minutes on an idle 2-core machine; each wait in it has a 10-minute deadline
def test_operator_check_nothing_waiting_or_accepted_is_lost_across_timeouts_refusals_and_kills(
        prefect_api: str, tmp_path: Path) -> None:
    """scripts/operator_check.py reduced: 4 cases, 12-second pause timeouts, a refused then a valid
    resume, SIGKILL of a worker and of `svcflow serve` with submissions in flight."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "operator_check.py"), "--api-url", prefect_api, "--cases", "4",
         "--pause-seconds", "12", "--workdir", str(tmp_path)],
        env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=1450)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:] + \
        (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
    assert "operator check: OK" in result.stdout
    assert '"worker_kills": 1' in result.stdout and '"serve_kills": 2' in result.stdout


pytest_plugins = ["tests.conftest_prefect"]
