"""Staff and customers acting on cases through the engine, for the production checks and benchmarks.

They do what people do at the inbox or `svcflow complete`: complete open tasks with plausible
form data (the demo operators' `sample_fields`) and answer awaited customer messages. Every
action runs with `segment(DEFER_ALL)`, so the automatic steps it leads to stay outstanding in
the store for the case's own flow run on a worker (which the action then wakes), exactly as
when a person completes a task in the inbox while the case's run is suspended.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.definition.model import HumanTask, MessageWait
from engine.errors import SvcflowError
from flows.case_flow import CASE_FLOW_NAME, trigger_deployment_run
from flows.human import resume_runs_for_case
from flows.runtime import DEFER_ALL, FlowEngine, segment
from flows.settings import get_flow_settings
from svcflow.demo_operators import sample_fields


@dataclass
class Staff:
    """Complete every open task (and answer every awaited message) of the cases given, once per call."""

    engine: FlowEngine
    seed: int = 11
    wake: bool = True  # resume the run waiting on the case (False: leave it to the reconciler)
    log: Callable[[str], None] = lambda _text: None
    rng: random.Random = field(init=False)
    completed: int = 0
    answered: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def act(self, case_ids: Iterable[str]) -> int:
        """One round over the cases whose runs are quiet (suspended at a form, or none): people act on
        what the UI shows, not on a case a run is moving. Returns how many actions were applied."""
        done = 0
        wanted = list(case_ids)
        busy = busy_cases() if self.wake else set()
        for case_id in wanted:
            if case_id in busy or not self.engine.store.case_exists(case_id):
                continue
            state, _ = self.engine.store.load_case(case_id)
            if state.status != "running":
                continue
            acted = self._complete_tasks(case_id)
            done += acted or self._answer_message(case_id)  # one wake per case and round
        return done

    def _complete_tasks(self, case_id: str) -> int:
        done = 0
        state, _ = self.engine.store.load_case(case_id)
        graph = self.engine.graph_for(state)
        for task in sorted(state.open_tasks(), key=lambda t: (t.created_at, t.id)):
            node = graph.nodes[task.node]
            assert isinstance(node, HumanTask)
            now = self.engine.clock.now()
            current, _ = self.engine.store.load_case(case_id)
            data = sample_fields({f.id: f for f in node.form}, self.rng, now, present=current.data)
            try:
                with segment(DEFER_ALL):
                    self.engine.complete(task.id, actor=f"{task.role}.{task.node}", role=task.role, data=data)
            except SvcflowError as exc:  # closed meanwhile (escalation, another hand): the store decides
                self.refused += 1
                self.log(f"task {task.id} of {case_id} not completed: {exc}")
                continue
            self.completed += 1
            done += 1
            self.log(f"completed {task.node} of {case_id}")
        if done and self.wake:  # every open task is on someone's screen: complete them all, then wake once
            self._wake(case_id, resume_runs_for_case(case_id) > 0)
        return done

    def _wake(self, case_id: str, resumed: bool) -> None:
        """The paused run re-reads the store; with no run of the case at all, the case deployment gets a
        new one. A resume that failed (the server restarting) is not "no run": a second run beside the
        paused one would be a case with two live runs, so that case is left to the reconciler."""
        if resumed or resume_runs_for_case(case_id) or has_live_run(case_id) is not False:
            return
        state, _ = self.engine.store.load_case(case_id)
        if state.status == "running":
            trigger_deployment_run(case_id, get_flow_settings(), state)

    def _answer_message(self, case_id: str) -> int:
        state, _ = self.engine.store.load_case(case_id)
        graph = self.engine.graph_for(state)
        for token in sorted(state.tokens.values(), key=lambda t: t.id):
            if not token.message:
                continue
            node = graph.nodes[token.node]
            assert isinstance(node, MessageWait)
            payload: dict[str, Any] = sample_fields(node.fields, self.rng, self.engine.clock.now())
            try:
                with segment(DEFER_ALL):
                    self.engine.send_message(case_id, token.message, payload, actor="customer")
            except SvcflowError as exc:
                self.refused += 1
                self.log(f"message {token.message} to {case_id} refused: {exc}")
                return 0
            self.answered += 1
            self.log(f"answered {token.message} of {case_id}")
            if self.wake:
                self._wake(case_id, False)
            return 1
        return 0


def timer_only(engine: FlowEngine, case_id: str) -> datetime | None:
    """When a running case waits for nothing but timers: the latest of their due times."""
    state, _ = engine.store.load_case(case_id)
    if state.status != "running" or state.open_tasks() or not state.tokens:
        return None
    dues = [token.timer_due for token in state.tokens.values()]
    if any(due is None for due in dues):
        return None
    return max(due for due in dues if due is not None)


def has_live_run(case_id: str) -> bool | None:
    """Whether the case has a case-flow run that is not final (paused included); None when Prefect
    cannot be asked."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    types = [StateType(t) for t in ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")]
    try:
        with get_client(sync_client=True) as client:
            return bool(client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[CASE_FLOW_NAME])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"case:{case_id}"]),
                                              state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types))),
                limit=1))
    except Exception:  # the server restarting: nobody can tell now
        return None


def busy_cases() -> set[str]:
    """Cases with a case-flow run scheduled, starting or running (tag `case:<id>`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    busy: set[str] = set()
    types = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[CASE_FLOW_NAME])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types))),
                limit=200, offset=offset)
            busy.update(tag[len("case:"):] for run in page for tag in run.tags or [] if tag.startswith("case:"))
            if len(page) < 200:
                return busy
            offset += 200


__all__ = ["Staff", "busy_cases", "has_live_run", "timer_only"]
