"""Every case that waits for a person has exactly one live waiting run: finding and mending the gaps.

Prefect loses waiting runs in ordinary operation: a suspended run fails when its pause times out
("The flow was paused and never resumed"), a case run with `svcflow run --no-wait` ends at its
first human step, and a `svcflow serve` killed with SIGKILL leaves the runs it was executing in
Running or Pending for ever — with the form submission Prefect had already accepted stored on
them. The store is the truth about which cases wait, so a reconciliation pass compares it with
Prefect's runs and mends each case:

- a run that died holding work (Crashed, or Running / Pending past `stale_run_seconds`, or any
  Running / Pending run of the served deployment when a new `svcflow serve` takes over) is put
  back to Scheduled: the runner re-runs it from the top, and the submission saved under its
  pause key is applied once (the engine applies each completion once; an applied one is simply
  not waited for again);
- a waiting case with no live run gets a new deployment run, which suspends with the form;
- a case with several paused runs keeps the newest and the others are cancelled; paused runs of
  cases that ended are cancelled.

The decision (`plan_repairs`) is pure and tested without Prefect; `reconcile_waiting_runs` reads
the store and the API, applies the plan and returns the counts. The sweep runs it on every pass
when served, and `svcflow serve` runs it (taking over) before it starts serving.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from engine.run.runtime import Engine
from engine.run.state import InstanceState
from flows.settings import FlowSettings, get_flow_settings

log = logging.getLogger("svcflow.flows")

CASE_FLOW = "svcflow-case"
LIVE = ("PAUSED", "SCHEDULED", "PENDING", "RUNNING")
BUSY = ("PENDING", "RUNNING")
ENDED = ("completed", "cancelled")


@dataclass(frozen=True)
class RunView:
    """What the reconciliation needs of one flow run of the case flow."""

    id: UUID
    case_id: str
    state: str  # the state type: PAUSED, SCHEDULED, PENDING, RUNNING, CRASHED
    state_name: str
    since: datetime  # when it entered that state
    deployed: bool  # a deployment run: a runner can run it again
    run_count: int = 0
    expires: datetime | None = None  # a paused run's timeout: past it, Prefect fails the run


@dataclass
class RepairPlan:
    """What to do: runs to put back to Scheduled, cases to start a run for, runs to cancel / mark crashed."""

    revive: list[RunView] = field(default_factory=list)
    start: list[str] = field(default_factory=list)
    cancel: list[RunView] = field(default_factory=list)
    crash: list[RunView] = field(default_factory=list)
    expire: list[RunView] = field(default_factory=list)
    healthy: int = 0

    def counts(self) -> dict[str, int]:
        return {"healthy": self.healthy, "revived": len(self.revive), "started": len(self.start),
                "cancelled": len(self.cancel), "marked_crashed": len(self.crash), "expired": len(self.expire)}


def plan_repairs(waiting: Iterable[str], ended: Iterable[str], runs: Iterable[RunView], *, now: datetime,
                 stale_seconds: float, takeover: bool = False, revive_max: int = 5) -> RepairPlan:
    """Decide, per case, how to reach one live run for each case that waits for a person.

    `waiting`: cases (not ended) with an open human task. `ended`: cases that ended. `runs`: the
    case flow's runs that are live or Crashed. A Running / Pending run is dead when it is stale, or
    — under `takeover` — when it is a deployment run (the runner that ran it is gone)."""
    waiting_set, ended_set = set(waiting), set(ended)
    by_case: dict[str, list[RunView]] = {}
    for run in runs:
        by_case.setdefault(run.case_id, []).append(run)
    plan = RepairPlan()
    stale = timedelta(seconds=stale_seconds)

    def dead(run: RunView) -> bool:
        if run.state == "CRASHED":
            return True
        return run.state in BUSY and ((takeover and run.deployed) or now - run.since > stale)

    def expired(run: RunView) -> bool:
        return run.state == "PAUSED" and run.expires is not None and run.expires <= now

    for case_id in sorted(waiting_set | set(by_case)):
        case_runs = sorted(by_case.get(case_id, []), key=lambda r: (r.since, str(r.id)))
        plan.expire += [r for r in case_runs if expired(r)]  # Prefect fails it soon; the case needs another
        case_runs = [r for r in case_runs if not expired(r)]
        gone = [r for r in case_runs if dead(r)]
        live = [r for r in case_runs if r.state in LIVE and r not in gone]
        busy_dead = [r for r in gone if r.state in BUSY]
        if case_id in ended_set:  # nothing to wait for: tidy up what is left
            plan.cancel += [r for r in live if r.state == "PAUSED"]
            plan.crash += busy_dead
            continue
        if live:
            paused = [r for r in live if r.state == "PAUSED"]
            if len(paused) > 1 and len(paused) == len(live):
                plan.cancel += paused[:-1]  # keep the newest form
            plan.crash += busy_dead
            plan.healthy += 1
            continue
        revivable = [r for r in gone if r.deployed and r.run_count < revive_max]
        if revivable:  # the newest dead run may hold an accepted submission: run it again
            chosen = revivable[-1]
            plan.revive.append(chosen)
            plan.crash += [r for r in busy_dead if r is not chosen]
            continue
        plan.crash += busy_dead
        if case_id in waiting_set:
            plan.start.append(case_id)
    return plan


# -- reading the store and the API --------------------------------------------------------------
def outstanding_work(engine: Engine, state: InstanceState) -> list[str]:
    """Automatic steps of the case still to run (and sub-cases still to create): work a flow run owes it."""
    graph = engine.graph_for(state)
    owed = []
    for token in state.tokens.values():
        node = graph.nodes[token.node]
        if getattr(node, "kind", None) == "auto" and token.attempt and not token.incident:
            owed.append(token.node)
        elif token.child_case and not engine.store.case_exists(token.child_case):
            owed.append(token.node)
    return sorted(owed)


def waiting_cases(engine: Engine) -> set[str]:
    """Cases that wait for a person: an open human task on a case that has not ended."""
    return {row["case_id"] for row in engine.store.tasks(status="open", limit=1_000_000)}


def _case_of(run: Any) -> str | None:
    case_id = (run.parameters or {}).get("case_id")
    if case_id:
        return str(case_id)
    for tag in run.tags or []:
        if tag.startswith("case:"):
            return str(tag[5:])
    return None


def _view(run: Any) -> RunView | None:
    case_id = _case_of(run)
    state = run.state
    if case_id is None or state is None:
        return None
    since = state.timestamp or run.created or datetime.now(UTC)
    return RunView(id=run.id, case_id=case_id, state=state.type.value, state_name=state.name or "",
                   since=since, deployed=run.deployment_id is not None, run_count=int(run.run_count or 0),
                   expires=state.state_details.pause_timeout if state.state_details else None)


def case_runs(client: Any, *, page: int = 200) -> list[RunView]:
    """The case flow's live and crashed runs (one query per page of 200)."""
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    wanted = [StateType(s) for s in (*LIVE, "CRASHED")]
    views: list[RunView] = []
    offset = 0
    while True:
        batch = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[CASE_FLOW])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=wanted))),
            limit=page, offset=offset)
        views += [v for v in (_view(run) for run in batch) if v is not None]
        if len(batch) < page:
            return views
        offset += page


def _ended(engine: Engine, case_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """(ended, unknown): cases of this store that ended, and cases it does not hold — another
    store's, sharing the Prefect server — whose runs are left alone."""
    ended, unknown = set(), set()
    for case_id in case_ids:
        if not engine.store.case_exists(case_id):
            unknown.add(case_id)
        elif engine.store.load_case(case_id)[0].status in ENDED:
            ended.add(case_id)
    return ended, unknown


# -- applying the plan ------------------------------------------------------------------------------
def apply_repairs(client: Any, engine: Engine, plan: RepairPlan, settings: FlowSettings) -> dict[str, int]:
    """Carry the plan out; one failing call costs that case this pass, not the others."""
    from prefect.states import Cancelled, Crashed, Failed, Scheduled

    from flows.case_flow import trigger_deployment_run

    counts = plan.counts()
    now = datetime.now(UTC)
    for run in plan.expire:
        _force(client, run, Failed(message="The flow was paused and never resumed; svcflow gave the case a new "
                                           "waiting run"))
    for run in plan.crash:
        _force(client, run, Crashed(message="svcflow: its process is gone (reconciliation)"))
    for run in plan.revive:
        if not _force(client, run, Scheduled(name="Rescheduled", scheduled_time=now,
                                             message="svcflow: its process died; run again to apply what it "
                                                     "had accepted and wait for the case's next step")):
            counts["revived"] -= 1
    for run in plan.cancel:
        _force(client, run, Cancelled(message="svcflow: not needed: the case has ended, or a newer run of it "
                                              "waits for the same step"))
    if len(plan.start) > settings.reconcile_batch:  # the next passes start the rest: no flood of runs at once
        counts["started"] = settings.reconcile_batch
    for case_id in plan.start[: settings.reconcile_batch]:
        state, _ = engine.store.load_case(case_id)
        if trigger_deployment_run(case_id, settings, state) is None:
            counts["started"] -= 1
    return counts


def _force(client: Any, run: RunView, state: Any) -> bool:
    try:
        client.set_flow_run_state(run.id, state=state, force=True)
        return True
    except Exception as exc:
        log.warning("could not move flow run %s of case %s to %s: %s", run.id, run.case_id, state.name, exc)
        return False


def reconcile_waiting_runs(engine: Engine, settings: FlowSettings | None = None, *, takeover: bool = False,
                           now: datetime | None = None) -> dict[str, int]:
    """One pass: give every waiting case one live run, revive dead runs, cancel duplicates.

    `now` is wall-clock time (Prefect's states are stamped with it), not the engine's clock."""
    from prefect.client.orchestration import get_client

    settings = settings or get_flow_settings()
    with get_client(sync_client=True) as client:
        runs = case_runs(client)
        waiting = waiting_cases(engine)
        ended, unknown = _ended(engine, {r.case_id for r in runs} - waiting)
        runs = [r for r in runs if r.case_id not in unknown]
        plan = plan_repairs(waiting, ended, runs, now=now or datetime.now(UTC),
                            stale_seconds=settings.stale_run_seconds, takeover=takeover,
                            revive_max=settings.revive_max)
        counts = apply_repairs(client, engine, plan, settings)
    if any(v for k, v in counts.items() if k != "healthy"):
        log.info("reconciled waiting runs: %s", counts)
    return counts


def live_runs_by_case(client: Any) -> Mapping[str, list[RunView]]:
    """Live runs of the case flow per case (checks and reports)."""
    result: dict[str, list[RunView]] = {}
    for run in case_runs(client):
        if run.state in LIVE:
            result.setdefault(run.case_id, []).append(run)
    return result


__all__ = ["RepairPlan", "RunView", "apply_repairs", "case_runs", "live_runs_by_case", "outstanding_work",
           "plan_repairs", "reconcile_waiting_runs", "waiting_cases"]
