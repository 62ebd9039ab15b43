"""The reconciler: cases whose flow runs died are run again; runs that died are not left Running.

Prefect notices a flow-run process that exits badly while its worker lives (Crashed), but when
the worker dies with it (a machine goes down, SIGKILL, OOM) the run stays Running or Pending
for ever, and nothing runs the case's outstanding automatic steps. A sweep killed mid-pass, or
a driver that completed a task in the store and died before waking the run, leaves a case
with work and no run at all. The store is the truth, so one pass can repair all of these:

1. **Dead runs.** A Running/Pending run of the case flow or the sweep is dead when its process
   is gone (`local=True`: the pid Prefect recorded is not alive on this machine — only for a
   reconciler running beside the workers) or when neither its state nor a heartbeat event is
   newer than `stale_after` seconds (any machine; set PREFECT_FLOWS_HEARTBEAT_FREQUENCY well
   below it). A dead case run is **rescheduled as the same run** (it keeps its Resume input,
   so a human step submitted in the UI just before the crash is still applied, once), unless
   another live run of the case exists — then it is marked Crashed. A dead sweep is marked
   Crashed: the schedule brings the next one. A case run that crashed before its case existed
   (its parameters hold the process and data; the store knows nothing) is rescheduled too.
2. **Cases without a run.** A running case with outstanding work — an automatic step not yet
   applied, a sub-case to create or to report — whose last change is older than `grace`
   seconds: its paused run is woken if it has one, else a new run of the case deployment is
   triggered. With `forms=True`, a case waiting for a person with no run at all gets one too
   (it suspends at once, showing the Resume form in the UI).

Re-running is always safe: a run recovers from the store, and the engine applies each step
result once (token attempt + idempotency key), so the worst a needless run costs is a process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from engine.run.state import InstanceState
from flows.case_flow import CASE_FLOW_NAME, trigger_deployment_run
from flows.human import resume_runs_for_case
from flows.runtime import FlowEngine
from flows.settings import FlowSettings, get_flow_settings
from flows.sweep import SWEEP_FLOW_NAME

log = logging.getLogger("svcflow.reconcile")

LIVE_TYPES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
ACTIVE_TYPES = ("PENDING", "RUNNING")
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
MAX_RESTARTS = 5  # a run that crashed before its case started is run again at most this often


@dataclass
class Reconciled:
    """What one pass found and did (run names, case ids)."""

    checked_runs: int = 0
    checked_cases: int = 0
    rescheduled: list[str] = field(default_factory=list)  # dead case runs scheduled again (same run)
    crashed: list[str] = field(default_factory=list)      # dead runs marked Crashed
    woken: list[str] = field(default_factory=list)        # cases whose paused run was resumed
    triggered: list[str] = field(default_factory=list)    # cases given a new deployment run

    @property
    def repaired(self) -> int:
        return len(self.rescheduled) + len(self.crashed) + len(self.woken) + len(self.triggered)

    def as_dict(self) -> dict[str, Any]:
        return {"checked_runs": self.checked_runs, "checked_cases": self.checked_cases,
                "rescheduled": self.rescheduled, "crashed": self.crashed, "woken": self.woken,
                "triggered": self.triggered}


def outstanding_work(engine: FlowEngine, state: InstanceState) -> list[str]:
    """What a run of this case would do now without anyone acting: the same items `Engine.recover`
    picks up (automatic steps not yet applied, sub-cases to create or to report back)."""
    graph = engine.graph_for(state)
    work: list[str] = []
    for token in state.tokens.values():
        if getattr(graph.nodes[token.node], "kind", "") == "auto" and token.attempt and not token.incident:
            work.append(f"step {token.node}")
        if token.child_case:
            if not engine.store.case_exists(token.child_case):
                work.append(f"start sub-case {token.child_case}")
            elif engine.store.load_case(token.child_case)[0].status in ("completed", "cancelled"):
                work.append(f"report sub-case {token.child_case}")
    return work


def _case_of(run: Any) -> str | None:
    for tag in run.tags or []:
        if tag.startswith("case:"):
            return str(tag[len("case:"):])
    return None


def _pid_alive(pid_text: str | None) -> bool | None:
    """None when the run records no pid of this machine's kind (digits only). A zombie is dead: a
    killed flow run whose worker died too may never be reaped (a container's init often reaps nothing)."""
    if not pid_text or not str(pid_text).isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid_text)}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _last_heartbeat(client: Any, run_id: UUID, since: datetime) -> datetime | None:
    """The newest heartbeat event of the run since `since` (None: none, or events not readable)."""
    body = {"filter": {"occurred": {"since": since.isoformat(), "until": datetime.now(UTC).isoformat()},
                       "event": {"name": [HEARTBEAT_EVENT]},
                       "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                       "order": "DESC"},
            "limit": 1}
    try:
        response = client.request("POST", "/events/filter", json=body)
        events = response.json().get("events") or []
    except Exception as exc:  # an old server, events off: judge by the state's age alone
        log.debug("could not read heartbeats of %s: %s", run_id, exc)
        return None
    if not events:
        return None
    return datetime.fromisoformat(str(events[0]["occurred"]).replace("Z", "+00:00"))


def _runs(client: Any, flow_names: Iterable[str], types: Iterable[str]) -> Iterator[Any]:
    """Flow runs of these flows in these state types, all pages."""
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    offset = 0
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flow_names))),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType(t) for t in types]))),
            limit=200, offset=offset)
        yield from page
        if len(page) < 200:
            return
        offset += 200


def is_dead(client: Any, run: Any, *, now: datetime, stale_after: float, local: bool) -> bool:
    """Whether a Running/Pending run's process is gone (see the module's rule 1)."""
    if local:
        if _pid_alive(run.infrastructure_pid) is False:
            return True  # no pid recorded (a run started outside a worker): judged by heartbeats below
    since = now - timedelta(seconds=stale_after)
    state_time = run.state.timestamp if run.state is not None else None
    if state_time is not None and state_time > since:
        return False
    beat = _last_heartbeat(client, run.id, since)
    return beat is None or beat <= since


def _kill_run(client: Any, run: Any, message: str) -> bool:
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Crashed

    result = client.set_flow_run_state(run.id, state=Crashed(message=message), force=True)
    return bool(result.status == SetStateStatus.ACCEPT)


def _reschedule_run(client: Any, run: Any, message: str) -> bool:
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Scheduled

    state: Any = Scheduled(scheduled_time=datetime.now(UTC), name="Rescheduled")
    state.message = message
    result = client.set_flow_run_state(run.id, state=state, force=True)
    return bool(result.status == SetStateStatus.ACCEPT)


def reconcile(engine: FlowEngine, *, stale_after: float = 600.0, grace: float = 30.0, local: bool = False,
              forms: bool = False, dry_run: bool = False, settings: FlowSettings | None = None) -> Reconciled:
    """One pass over Prefect's live runs and the store's running cases; see the module docstring."""
    from prefect.client.orchestration import get_client

    settings = settings or get_flow_settings()
    result = Reconciled()
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        # 1. dead runs
        live = list(_runs(client, [CASE_FLOW_NAME, SWEEP_FLOW_NAME], LIVE_TYPES))
        result.checked_runs = len(live)
        dead: set[UUID] = set()
        for run in live:
            if run.state_type is None or run.state_type.value not in ACTIVE_TYPES:
                continue
            if not is_dead(client, run, now=now, stale_after=stale_after, local=local):
                continue
            dead.add(run.id)
            case_id = _case_of(run)
            others = [r for r in live if r.id != run.id and r.id not in dead and case_id and _case_of(r) == case_id
                      and r.state_type is not None and r.state_type.value in LIVE_TYPES]
            if case_id is None or run.deployment_id is None or others:
                why = "another run of the case is live" if others else "its process is gone"
                if dry_run or _kill_run(client, run, f"svcflow reconcile: {why}"):
                    result.crashed.append(run.name)
            elif dry_run or _reschedule_run(client, run, "svcflow reconcile: its process was gone; running again"):
                result.rescheduled.append(run.name)
        # 1b. a case run that crashed before its case existed (killed while starting, the server gone
        #     meanwhile): the store knows nothing of it, so only its run can start it — run it again
        for run in _runs(client, [CASE_FLOW_NAME], ("CRASHED",)):
            case_id = _case_of(run)
            if (case_id is None or run.deployment_id is None or engine.store.case_exists(case_id)
                    or not (run.parameters or {}).get("process_id") or run.run_count > MAX_RESTARTS):
                continue
            if any(_case_of(r) == case_id and r.id not in dead for r in live):
                continue
            if dry_run or _reschedule_run(client, run, "svcflow reconcile: crashed before its case started"):
                result.rescheduled.append(run.name)
                live.append(run)
        # 2. running cases with work and no run doing it
        live_cases: dict[str, set[str]] = {}
        for run in live:
            case_id = _case_of(run)
            if case_id is not None and run.id not in dead:
                live_cases.setdefault(case_id, set()).add(run.state_type.value if run.state_type else "")
        for case_id in (row["id"] for row in engine.store.cases(status="running", limit=1_000_000)):
            result.checked_cases += 1
            if case_id in live_cases and live_cases[case_id] != {"PAUSED"}:
                continue  # a run is on it (scheduled, starting, running)
            state, _ = engine.store.load_case(case_id)
            if state.status != "running" or _changed_since(engine, case_id, grace):
                continue
            work = outstanding_work(engine, state)
            if not work and not (forms and state.open_tasks() and case_id not in live_cases):
                continue
            if case_id in live_cases:  # only paused runs: wake them, they re-read the store
                if dry_run or resume_runs_for_case(case_id):
                    result.woken.append(case_id)
                continue
            if dry_run or trigger_deployment_run(case_id, settings, state) is not None:
                result.triggered.append(case_id)
                log.info("case %s had no run (%s): triggered %s", case_id, ", ".join(work) or "waiting for a person",
                         settings.case_deployment)
    return result


def _changed_since(engine: FlowEngine, case_id: str, grace: float) -> bool:
    """Whether the case changed in the last `grace` seconds of the engine's clock (the log's time):
    a run may be about to pick it up, so leave it alone this pass."""
    return bool(engine.store.events(case_id, since=engine.clock.now() - timedelta(seconds=grace)))


__all__ = ["Reconciled", "is_dead", "outstanding_work", "reconcile"]
