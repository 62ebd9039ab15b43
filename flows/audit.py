"""Checks that a case's history lost no step and did none twice — what the fault checks assert.

Read from the store's event log alone, so it judges any run of any case after any crash:

- the log's `seq` runs 1, 2, 3 … without a gap or a repeat;
- every automatic step entered is completed once: a second `step_completed` for an entry is a
  step done twice; an entry never completed while no token waits there any more is a step lost;
- every task is opened once and closed (completed or cancelled) at most once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.run.runtime import Engine


@dataclass
class CaseAudit:
    """One case's audit: the problems found, and how many automatic steps were lost or done twice
    (the counts a fault check reports)."""

    problems: list[str] = field(default_factory=list)
    steps_lost: int = 0
    steps_doubled: int = 0


def history_problems(engine: Engine, case_id: str) -> list[str]:
    """What is wrong with one case's history (empty: nothing)."""
    return audit_case(engine, case_id).problems


def audit_case(engine: Engine, case_id: str) -> CaseAudit:
    """The audit of one case's history (see the module docstring for the rules)."""
    audit = CaseAudit()
    problems = audit.problems
    state, _ = engine.store.load_case(case_id)
    graph = engine.graph_for(state)
    events = engine.store.events(case_id)
    seqs = [e.seq for e in events if e.seq is not None]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{case_id}: event sequence has gaps or repeats")
    pending: Counter[str] = Counter()
    opened: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    for event in events:
        node = event.node or ""
        if event.type == "node_entered" and event.data.get("kind") == "auto":
            pending[node] += 1
        elif event.type == "step_completed":
            pending[node] -= 1
            if pending[node] < 0:
                problems.append(f"{case_id}: step {node} done twice (seq {event.seq})")
                audit.steps_doubled += 1
                pending[node] = 0
        elif event.type == "task_opened":
            opened[str(event.data.get("task_id"))] += 1
        elif event.type in ("task_completed", "task_cancelled"):
            closed[str(event.data.get("task_id"))] += 1
    waiting = Counter(token.node for token in state.tokens.values()
                      if getattr(graph.nodes[token.node], "kind", "") == "auto")
    for node, count in sorted(pending.items()):
        if count > waiting[node]:
            problems.append(f"{case_id}: step {node} entered and never completed ({count - waiting[node]} lost)")
            audit.steps_lost += count - waiting[node]
    for task_id, count in sorted(opened.items()):
        if count != 1:
            problems.append(f"{case_id}: task {task_id} opened {count} times")
    for task_id, count in sorted(closed.items()):
        if count > 1:
            problems.append(f"{case_id}: task {task_id} closed {count} times")
        if task_id not in opened:
            problems.append(f"{case_id}: task {task_id} closed but never opened")
    return audit


def all_problems(engine: Engine, case_ids: Iterable[str]) -> list[str]:
    return [problem for case_id in case_ids for problem in history_problems(engine, case_id)]


__all__ = ["CaseAudit", "all_problems", "audit_case", "history_problems"]
