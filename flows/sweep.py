"""The escalation sweep as a Prefect flow, served on an interval.

`Engine.sweep` applies due timers, warnings, breaches and escalations once, even with several
sweeps at once (the case row's version lets one of them win). This flow adds what operators
see: one Prefect event per warning / breach / escalation, a table artifact per sweep, fresh
case artifacts, and it hands cases the sweep moved (an interrupting escalation that routes the
case to new automatic steps or a sub-process) to their own case flow runs, which run the steps
as tasks. The sweep itself runs no step.
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from flows.artifacts import publish_case_artifact
from flows.case_flow import ENDED, deployment_context, continue_cases
from flows.human import resume_runs_for_case
from flows.notify import emit_sla_events, sla_rows
from flows.runtime import DEFER_ALL, collecting, get_engine, segment
from flows.settings import get_flow_settings
from flows.waiting import reconcile_waiting_runs

SWEEP_FLOW_NAME = "escalation-sweep"
SWEEP_ARTIFACT_KEY = "escalation-sweep"


def _sweep_run_name() -> str:
    """Runs named by their wall-clock minute, so the UI's list reads as a timeline."""
    return "sweep-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


@flow(name=SWEEP_FLOW_NAME, flow_run_name=_sweep_run_name, log_prints=False, persist_result=False)
def escalation_sweep(now: datetime | None = None, limit: int = 500, continue_moved: bool = True,
                     reconcile: bool | None = None) -> dict[str, Any]:
    """Sweep once; returns the counts and what happened to the cases it moved.

    `reconcile` (default: when served and the setting is on) then gives every case that waits for a
    person one live waiting run (flows/waiting.py): pauses time out, runs die with their process."""
    engine = get_engine()
    settings = get_flow_settings()
    logger = get_run_logger()
    with collecting() as touched, segment(DEFER_ALL):
        results = engine.sweep(now, limit)
    rows = sla_rows(results)
    emit_sla_events(rows)
    counts = {kind: sum(1 for r in rows if r["event"] == kind) for kind in ("sla_warned", "sla_breached", "escalated")}
    if rows:  # a version per sweep that did something: an idle minute adds nothing to scroll past
        create_table_artifact(
            table=[{k: (", ".join(v) if isinstance(v, list) else str(v) if isinstance(v, dict) else v)
                    for k, v in row.items()} for row in rows],
            key=SWEEP_ARTIFACT_KEY,
            description=f"sweep at {(now or engine.clock.now()).isoformat()}: {len(results)} case(s); "
                        f"{counts['sla_warned']} warned, {counts['sla_breached']} breached, "
                        f"{counts['escalated']} escalated",
        )
    escalated = {row["case"] for row in rows if row["event"] == "escalated"}
    if settings.artifacts:
        for case_id in sorted({case_id for case_id, _ in results}):
            publish_case_artifact(engine, case_id, zone=settings.display_timezone,
                                      flowchart=settings.artifact_flowchart)
    # served, a case routed to a new human step gets a run too (it suspends with the form)
    wanted = {"step", "child", "task_opened"} if deployment_context() else {"step", "child"}
    moved = sorted(case_id for case_id, kinds in touched.items() if kinds & wanted)
    refreshed: dict[str, str] = {}
    if continue_moved:
        # a run paused on a task the sweep reassigned or interrupted shows a stale form: let it re-read
        for case_id in sorted((escalated | {c for c, k in touched.items() if "task_closed" in k}) - set(moved)):
            if resume_runs_for_case(case_id):
                refreshed[case_id] = "resumed"
        live = [c for c in moved if engine.store.load_case(c)[0].status not in ENDED]
        refreshed.update(continue_cases(live, engine=engine, settings=settings))
    repaired: dict[str, int] = {}
    if reconcile if reconcile is not None else (continue_moved and settings.reconcile and deployment_context()):
        repaired = reconcile_waiting_runs(engine, settings)
    if rows:
        logger.info("swept %s case(s): %s", len(results), counts)
    if any(v for k, v in repaired.items() if k != "healthy"):
        logger.info("waiting runs mended: %s", repaired)
    return {"cases": len(results), **counts, "moved": moved, "continued": refreshed, "runs": repaired}


def sweep_deployment(interval_seconds: int | None = None, name: str = "sweep") -> Any:
    """The sweep as a deployment on an interval schedule (settings `sweep_interval_seconds`, default 60 s)."""
    interval = interval_seconds or get_flow_settings().sweep_interval_seconds
    return escalation_sweep.to_deployment(name=name, interval=interval,
                                          description="Apply due SLA warnings, breaches and escalations once.")


__all__ = ["SWEEP_ARTIFACT_KEY", "SWEEP_FLOW_NAME", "escalation_sweep", "sweep_deployment"]
