"""The reconciler: cases whose flow runs died are run again; runs that died are not left Running.

Prefect notices a flow-run process that exits badly while its worker lives (Crashed), but when
the worker dies with it (a machine goes down, SIGKILL, OOM) the run stays Running or Pending
for ever, and nothing runs the case's outstanding automatic steps. A sweep killed mid-pass, or
a driver that completed a task in the store and died before waking the run, leaves a case
with work and no run at all. The store is the truth, so one pass can repair all of these:

1. **Dead runs.** A Running/Pending run of the case flow or the sweep is dead when its process
   is gone (`local=True`: no live process on this machine carries the run's id, and its state
   is older than `settle` seconds (default `LOCAL_SETTLE`) — only for a reconciler running beside the workers) or
   when neither its state nor a heartbeat event is newer than `stale_after` seconds (any
   machine; set PREFECT_FLOWS_HEARTBEAT_FREQUENCY well below it). The pid Prefect records is
   not the evidence: a resumed or rescheduled run keeps its previous process's (dead) pid until
   a worker has started the new one, and judging by it re-ran live runs a second time. A dead case run is **rescheduled as the same run** (it keeps its Resume input,
   so a human step submitted in the UI just before the crash is still applied, once), unless
   another live run of the case exists — then it is marked Crashed. A dead sweep is marked
   Crashed: the schedule brings the next one. A case run that crashed before its case existed
   (its parameters hold the process and data; the store knows nothing) is rescheduled too.
2. **Cases without a run.** A running case with outstanding work — an automatic step not yet
   applied, a sub-case to create or to report — whose last change is older than `grace`
   seconds: its paused run is woken if it has one, else a new run of the case deployment is
   triggered. A case with a live run (one rescheduled in this pass included) is never given
   another, so one pass after another a case whose runs all ended gets exactly one new run.
   With `forms=True`, a case waiting for a person with no run at all gets one too (it suspends
   at once, showing the Resume form in the UI).
3. **Duplicate forms.** A case whose live runs are all paused keeps the newest; the others are
   cancelled (the rule `flows.waiting` applies for served runs), so no case is left with two.

Re-running is always safe: a run recovers from the store, and the engine applies each step
result once (token attempt + idempotency key), so the worst a needless run costs is a process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
# A worker records a run's Pending state, then starts its process: a run younger than this is not
# judged by the processes on this machine (generous, for a loaded machine).
LOCAL_SETTLE = 30.0
RUN_ID_VARIABLE = b"PREFECT__FLOW_RUN_ID="


@dataclass
class Reconciled:
    """What one pass found and did (run names, case ids)."""

    checked_runs: int = 0
    checked_cases: int = 0
    rescheduled: list[str] = field(default_factory=list)  # dead case runs scheduled again (same run)
    crashed: list[str] = field(default_factory=list)      # dead runs marked Crashed
    woken: list[str] = field(default_factory=list)        # cases whose paused run was resumed
    triggered: list[str] = field(default_factory=list)    # cases given a new deployment run
    cancelled: list[str] = field(default_factory=list)    # paused duplicates of a newer paused run

    @property
    def repaired(self) -> int:
        return (len(self.rescheduled) + len(self.crashed) + len(self.woken) + len(self.triggered)
                + len(self.cancelled))

    def merge(self, other: Reconciled) -> None:
        """Add another pass's repairs (a check running many passes reports their sum)."""
        self.checked_runs += other.checked_runs
        self.checked_cases += other.checked_cases
        for name in ("rescheduled", "crashed", "woken", "triggered", "cancelled"):
            getattr(self, name).extend(getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        return {"checked_runs": self.checked_runs, "checked_cases": self.checked_cases,
                "rescheduled": self.rescheduled, "crashed": self.crashed, "woken": self.woken,
                "triggered": self.triggered, "cancelled": self.cancelled}


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


def flow_run_processes(proc: Path = Path("/proc")) -> dict[str, list[int]]:
    """Flow-run id -> pids of the live processes on this machine that carry it (a worker starts each
    flow-run process with PREFECT__FLOW_RUN_ID in its environment). Zombies are left out: their
    environment is gone, and a killed run whose worker died too may never be reaped."""
    found: dict[str, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        for item in environ.split(b"\0"):
            if item.startswith(RUN_ID_VARIABLE):
                found.setdefault(item[len(RUN_ID_VARIABLE):].decode(errors="replace"), []).append(int(entry.name))
                break
    return found


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


def is_dead(client: Any, run: Any, *, now: datetime, stale_after: float,
            processes: Mapping[str, list[int]] | None = None, settle: float = LOCAL_SETTLE) -> bool:
    """Whether a Running/Pending run's process is gone (see the module's rule 1). `processes`
    (`flow_run_processes()`, read *before* the run was) makes it a local judgement: a sub-flow
    run lives in its parent's process, so it is judged by heartbeats alone."""
    state_time = run.state.timestamp if run.state is not None else None
    if processes is not None and getattr(run, "parent_task_run_id", None) is None:
        if str(run.id) in processes:
            return False
        if state_time is None or now - state_time > timedelta(seconds=settle):
            return True
    since = now - timedelta(seconds=stale_after)
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
              forms: bool = False, dry_run: bool = False, settings: FlowSettings | None = None,
              settle: float = LOCAL_SETTLE) -> Reconciled:
    """One pass over Prefect's live runs and the store's running cases; see the module docstring.
    `settle`: with `local`, how old a run's state must be before a missing process makes it dead
    (a check that has just killed a Running run's process may pass 0)."""
    from prefect.client.orchestration import get_client

    settings = settings or get_flow_settings()
    result = Reconciled()
    processes = flow_run_processes() if local else None  # before the runs: a process gone since is a final state
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        # 1. dead runs
        live = list(_runs(client, [CASE_FLOW_NAME, SWEEP_FLOW_NAME], LIVE_TYPES))
        result.checked_runs = len(live)
        dead: set[UUID] = set()
        for run in live:
            if run.state_type is None or run.state_type.value not in ACTIVE_TYPES:
                continue
            if not is_dead(client, run, now=now, stale_after=stale_after, processes=processes, settle=settle):
                continue
            dead.add(run.id)
            case_id = _case_of(run)
            others = [r for r in live if r.id != run.id and r.id not in dead and case_id and _case_of(r) == case_id]
            if case_id is None or run.deployment_id is None or others:
                why = "another run of the case is live" if others else "its process is gone"
                if dry_run or _kill_run(client, run, f"svcflow reconcile: {why}"):
                    result.crashed.append(run.name)
            elif dry_run or _reschedule_run(client, run, "svcflow reconcile: its process was gone; running again"):
                result.rescheduled.append(run.name)
                dead.discard(run.id)  # Scheduled again: the case's one live run
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
        live_cases: dict[str, list[Any]] = {}
        for run in live:
            case_id = _case_of(run)
            if case_id is not None and run.id not in dead:
                live_cases.setdefault(case_id, []).append(run)
        # 3. paused duplicates (before 2: a case left with one paused run may be woken below)
        for case_id, runs in live_cases.items():
            if len(runs) > 1 and all(_state_of(r) == "PAUSED" for r in runs):
                newest = max(runs, key=_since)
                for run in runs:
                    if run is not newest and (dry_run or _cancel_run(client, run)):
                        result.cancelled.append(run.name)
                live_cases[case_id] = [newest]
        # 2. running cases with work and no run doing it
        for case_id in (row["id"] for row in engine.store.cases(status="running", limit=1_000_000)):
            result.checked_cases += 1
            states = {_state_of(r) for r in live_cases.get(case_id, [])}
            if states - {"PAUSED"}:
                continue  # a run is on it (scheduled, rescheduled, starting, running)
            state, _ = engine.store.load_case(case_id)
            if state.status != "running" or _changed_since(engine, case_id, grace):
                continue
            work = outstanding_work(engine, state)
            if not work and not (forms and state.open_tasks() and not states):
                continue
            if states:  # only a paused run: wake it, it re-reads the store
                if dry_run or resume_runs_for_case(case_id):
                    result.woken.append(case_id)
                continue
            if dry_run or trigger_deployment_run(case_id, settings, state) is not None:
                result.triggered.append(case_id)
                log.info("case %s had no run (%s): triggered %s", case_id, ", ".join(work) or "waiting for a person",
                         settings.case_deployment)
    return result


def _state_of(run: Any) -> str:
    return str(run.state_type.value) if run.state_type is not None else ""


def _since(run: Any) -> datetime:
    """When the run entered its state (a run without one sorts first)."""
    stamp = run.state.timestamp if run.state is not None else None
    return stamp or datetime.min.replace(tzinfo=UTC)


def _cancel_run(client: Any, run: Any) -> bool:
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Cancelled

    result = client.set_flow_run_state(run.id, force=True, state=Cancelled(
        message="svcflow reconcile: a newer paused run of the case waits for the same step"))
    return bool(result.status == SetStateStatus.ACCEPT)


def _changed_since(engine: FlowEngine, case_id: str, grace: float) -> bool:
    """Whether the case changed in the last `grace` seconds of the engine's clock (the log's time):
    a run may be about to pick it up, so leave it alone this pass."""
    return bool(engine.store.events(case_id, since=engine.clock.now() - timedelta(seconds=grace)))


__all__ = ["LOCAL_SETTLE", "Reconciled", "flow_run_processes", "is_dead", "outstanding_work", "reconcile"]
