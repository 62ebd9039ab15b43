"""The event log as process-mining tools see it: activity events, one case at a time, read in batches.

Readers (XES, OCEL 2.0, CSV) share this module so the three exports count the same events:
a step's `node_entered` is its lifecycle *start*, its `node_completed` its *complete* (with the
person who did it: the actor and role of the task completed at that step), and SLA warnings,
breaches and escalations are events of their own. Everything else in the log (edges taken,
clocks started and met, joins waiting...) is bookkeeping and stays out.

Memory: events arrive in log order, cases interleaved; a case is held only until it ends
(`case_<status>`), then handed to the writer and dropped. So the peak is the cases open at one
moment, not the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.run.log import LogEntry
from engine.store.sql import EVENTS, Store, entry_of_row, utc
from engine.store.tables import CaseRow, DefinitionRow

BATCH = 20_000
SLA_TYPES = frozenset({"sla_warned", "sla_breached", "escalated"})
CASE_END_PREFIX = "case_"
# the log entries an export reads (the rest is bookkeeping): asking the store for these only halves the rows
EXPORT_TYPES = ("case_started", "case_completed", "case_cancelled", "node_entered", "node_completed",
                "task_completed", "subprocess_started", "data_updated", *sorted(SLA_TYPES))


@dataclass(frozen=True)
class Activity:
    """One event of the exported log."""

    case_id: str
    at: datetime
    activity: str  # concept:name: the node id, or "sla_breached:<node or clock>"
    lifecycle: str  # start | complete
    kind: str  # step | sla
    node: str | None = None
    resource: str | None = None
    role: str | None = None
    task_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """A case with its activity events, handed over when it ends (or when the log does)."""

    case_id: str
    process_id: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    status: str = "open"
    outcome: str | None = None
    tier: str | None = None
    customer: str | None = None
    parent_case: str | None = None
    children: list[str] = field(default_factory=list)
    version: int | None = None
    events: list[Activity] = field(default_factory=list)
    _actors: dict[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)


def read_store(store: Store, *, process_id: str | None = None, since: datetime | None = None,
               types: Sequence[str] | None = None, batch: int = BATCH) -> Iterator[LogEntry]:
    """The store's log in id order, `batch` rows at a time (keyset paging): never all of it in memory.

    The one place that reads the store for exports: `Store.events()` returns a whole list, which a
    100,000-case log cannot afford, so this pages through the same table and gives the same records:
    payloads upgraded to the current log version and checked against the log's contract, so a row
    the contract does not describe is a LogError naming it, not a KeyError inside a writer.
    """
    last = 0
    while True:
        query = select(EVENTS.c.id, EVENTS.c.case_id, EVENTS.c.process_id, EVENTS.c.seq, EVENTS.c.at,
                       EVENTS.c.type, EVENTS.c.node, EVENTS.c.payload, EVENTS.c.log_version).where(EVENTS.c.id > last)
        if process_id:
            # `|| ''` keeps the planner on the id (primary key) range: by the (process_id, at) index it
            # would sort every row of the process again for each page
            query = query.where(EVENTS.c.process_id.concat("") == process_id)
        if since:
            query = query.where(EVENTS.c.at >= utc(since))
        if types:
            query = query.where(EVENTS.c.type.in_(list(types)))
        with store.engine.connect() as conn:
            rows = conn.execute(query.order_by(EVENTS.c.id).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield entry_of_row(row[1:])  # the row's id is only the page's key
        last = rows[-1][0]


def store_versions(store: Store) -> dict[str, int]:
    """Definition version each case runs, by case id."""
    cases_t, definitions_t = CaseRow.__table__, DefinitionRow.__table__  # type: ignore[attr-defined]
    query = select(cases_t.c.id, definitions_t.c.version).where(
        cases_t.c.definition_hash == definitions_t.c.hash)
    with store.engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def cases(events: Iterable[LogEntry], version_of: Callable[[str, str], int | None] | None = None,
          since: datetime | None = None) -> Iterator[Case]:
    """Cases with their activity events, each yielded as soon as it ends; open ones at the end.

    `since` keeps the cases *started* from then on (as the review counts them).
    """
    open_cases: dict[str, Case] = {}
    skipped: set[str] = set()
    for event in events:
        case_id = event.case_id
        etype = event.type
        case = open_cases.get(case_id)
        if case is None:
            if case_id in skipped:
                continue
            if etype != "case_started" or (since is not None and event.at < since):
                skipped.add(case_id)
                continue
            payload = event.data
            data = payload.get("data") or {}
            case = open_cases[case_id] = Case(
                case_id, event.process_id, started_at=event.at, tier=data.get("tier"),
                customer=data.get("customer_id") or None, parent_case=payload.get("parent_case"),
                version=version_of(case_id, event.process_id) if version_of else None)
            continue
        node = event.node
        payload = event.data
        if etype == "node_entered":
            case.events.append(Activity(case_id, event.at, node or "", "start", "step", node))
        elif etype == "node_completed":
            resource, role, task_id = case._actors.pop(node or "", (None, None, None))
            case.events.append(Activity(case_id, event.at, node or "", "complete", "step", node,
                                        resource, role, task_id))
        elif etype == "task_completed":
            case._actors[node or ""] = (payload.get("actor"), payload.get("role"), payload.get("task_id"))
            output = payload.get("output")
            if isinstance(output, dict) and "tier" in output:
                case.tier = output["tier"]
        elif etype in SLA_TYPES:
            scope = node or str(payload.get("clock", "case"))
            attributes: dict[str, Any] = {k: payload[k] for k in ("clock", "level", "percent") if k in payload}
            if "kind" in payload:  # warned | breached | escalated: which rung of the ladder
                attributes["rung"] = payload["kind"]
            if "notify" in payload:
                attributes["notify"] = " ".join(payload["notify"])
            case.events.append(Activity(case_id, event.at, f"{etype}:{scope}", "complete", "sla", node,
                                        attributes=attributes))
        elif etype == "subprocess_started" and payload.get("child_case"):
            case.children.append(str(payload["child_case"]))
        elif etype == "data_updated" and isinstance(payload.get("changes"), dict) and "tier" in payload["changes"]:
            case.tier = payload["changes"]["tier"]
        elif etype.startswith(CASE_END_PREFIX) and etype != "case_started":
            case.status = etype[len(CASE_END_PREFIX):]
            case.outcome = payload.get("outcome")
            case.ended_at = event.at
            del open_cases[case_id]
            yield case
    yield from open_cases.values()


__all__ = ["EXPORT_TYPES", "read_store", "store_versions", "cases", "Case", "Activity", "BATCH"]
