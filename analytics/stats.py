"""Process statistics from the event log: the numbers behind the review report and the simulator.

One pass over the events with plain dicts, because a review must read the log of 100,000 cases
in seconds; nothing here touches the store or changes state. Durations are measured twice:
in business time (the process calendar: working hours, holidays, 调休), which is what SLA targets
are written in and so what a step's status is judged on, and in wall time, which is what the
customer lives through. Every table says which one it shows.

The work is split by job: business time (analytics/business_time.py), the single pass
(analytics/fold.py), what readings find and how they combine (analytics/readings.py), the
parallel reader (analytics/parallel.py), the result records (analytics/model.py) and order
statistics (analytics/quantiles.py). Here: `compute_stats`, which runs them, and the tables.
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from analytics.business_time import BusinessTime
from analytics.fold import INSTANT_KINDS, CaseReading, ReadContext, rows_of, scan, summarize
from analytics.model import (
    CaseRow, ClockStats, EdgeStats, EscalationRow, ProcessStats, ReworkRow, RoleLoad, StepStats, Variant,
)
from analytics.parallel import PARALLEL_MIN_EVENTS, WORKERS_ENV, read_parallel, review_workers
from analytics.quantiles import HOUR, hours, quantile, quantile_of_runs, status_of
from analytics.readings import CaseSummary, Partial, Tally
from engine.definition.graph import ProcessGraph
from engine.run.log import LogEntry, first_problem
from engine.time.durations import parse_duration

__all__ = [  # what other packages use: the public surface of the statistics
    "BusinessTime", "PARALLEL_MIN_EVENTS", "WORKERS_ENV", "CaseRow", "ClockStats", "EdgeStats", "EscalationRow",
    "ProcessStats", "ReworkRow", "RoleLoad", "StepStats", "Variant", "compress_loops", "compute_stats", "quantile",
    "quantile_of_runs", "review_workers", "status_of",
]


def compress_loops(path: Sequence[str]) -> tuple[str, ...]:
    """Collapse directly repeated blocks (A B C B C D -> A (B → C)↻ D) so loop counts do not split variants."""
    out: list[str] = list(path)
    changed = True
    while changed:
        changed = False
        n = len(out)
        for size in range(1, n // 2 + 1):
            for i in range(0, n - 2 * size + 1):
                block = out[i:i + size]
                if out[i + size:i + 2 * size] != block:
                    continue
                j = i + 2 * size
                while out[j:j + size] == block:
                    j += size
                inner = block[0] if size == 1 else " → ".join(block)
                loop = inner if inner.endswith("↻") and size == 1 else f"({inner})↻"
                out = out[:i] + [loop] + out[j:]
                changed = True
                break
            if changed:
                break
    return tuple(out)


def compute_stats(graph: ProcessGraph, events: Iterable[LogEntry], *, since: datetime | None = None,
                  until: datetime | None = None, slowest: int = 10, variants: int = 15, workers: int | None = None,
                  min_parallel_events: int = PARALLEL_MIN_EVENTS) -> ProcessStats:
    """Statistics of the cases of `graph`'s process that started in [since, until).

    A long log (a list of at least `min_parallel_events` events) is read by several processes
    when more than one CPU is available (see `review_workers`; `workers=1` or
    SVCFLOW_REVIEW_WORKERS=1 keeps it in this one). The log is cut into consecutive stretches,
    not dealt out by case: a forked process that touches an object copies the memory page it
    lives on, so each process must touch only its own rows. Each worker reads the cases started
    in its stretch; the events it meets of earlier stretches' cases are replayed here afterwards,
    in order. Where stretches end is settled as the reading goes (see `_Plan`), so a worker that
    runs slower reads less. The result is the same as one process's, to the last bit.

    The cyclic garbage collector is paused meanwhile: the pass creates only acyclic records, and
    over a log of ten million events its full collections would otherwise cost more than the pass.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compute(graph, events, since, until, slowest, variants, workers, min_parallel_events)
    except (KeyError, TypeError, AttributeError, IndexError):
        # the fast pass reads payload fields by subscript; when one is missing, say which event lacks it
        found = first_problem(events) if isinstance(events, Sequence) else None
        if found is None:
            raise
        raise found from None
    finally:
        if enabled:
            gc.enable()


def _compute(graph: ProcessGraph, events: Iterable[LogEntry], since: datetime | None, until: datetime | None,
             slowest: int, variants: int, workers: int | None, min_parallel_events: int) -> ProcessStats:
    """One reading of the log (several processes for a long list), then the tables."""
    ctx = ReadContext(graph, since, until)
    rows = rows_of(events)
    first: tuple[Any, ...] | None
    if isinstance(rows, list):
        first = rows[0] if rows else None
        count = review_workers(len(rows), workers, min_events=min_parallel_events)
        n_events = len(rows)
    else:
        stream = iter(rows)
        first = next(stream, None)
        rows = stream if first is None else chain((first,), stream)
        count, n_events = 1, 0
    if first is not None:
        # the zone of the log, and business time counted from its first day, whoever reads which stretch
        # (business seconds are floats whose last bits depend on where the count starts)
        ctx.stamps.zone = first[3].tzinfo
        ctx.btime.at_ts(first[3].timestamp())
    if count > 1:
        part, summary = read_parallel(ctx, rows, count, slowest)  # type: ignore[arg-type]
    else:
        cases: dict[str, CaseReading] = {}
        tally = Tally()
        scan(ctx, rows, cases, tally)
        part = tally.seal()
        summary = summarize(cases.items(), slowest)
    stats = _assemble(graph, ctx, part, summary, since, until, slowest, variants, n_events)
    stats.workers = count
    return stats


def _assemble(graph: ProcessGraph, ctx: ReadContext, part: Partial, summary: CaseSummary, since: datetime | None,
              until: datetime | None, slowest: int, variant_limit: int, n_events: int) -> ProcessStats:
    """The tables, from the combined readings: the counts and the summed-up cases."""
    definition = graph.definition
    bat = ctx.btime.at_ts
    stats = ProcessStats(definition.id, definition.name.both(), since, until, events=n_events)
    tz = graph.calendar.tz

    # cases and cycle times; the last instant seen: a case end, or the start of what is still open
    stats.cases = summary.count
    stats.completed = summary.completed
    stats.cancelled = summary.cancelled
    stats.open = summary.count - summary.completed - summary.cancelled
    stats.incidents = summary.incidents
    first_ts = part.first_ts
    last_ts = max(part.last_end, summary.last_seen) if first_ts is not None else None
    stats.first_event = datetime.fromtimestamp(first_ts, tz) if first_ts is not None else None
    stats.last_event = datetime.fromtimestamp(last_ts, tz) if last_ts is not None else stats.first_event
    horizon = until.timestamp() if until else (last_ts if last_ts is not None else 0.0)
    stats.cycle_median_business_h = hours(quantile_of_runs(summary.cycles_b, 0.5))
    stats.cycle_p90_business_h = hours(quantile_of_runs(summary.cycles_b, 0.9))
    stats.cycle_median_wall_h = hours(quantile_of_runs(summary.cycles_w, 0.5))
    stats.cycle_p90_wall_h = hours(quantile_of_runs(summary.cycles_w, 0.9))

    # variants and rework, computed once per distinct raw path
    # (the recorded path has every node entered; variants and rework leave gateways out)
    gateways = ctx.gateway_nodes
    entered: dict[str, int] = {}
    entered_cases: dict[str, int] = {}
    variant_cases: dict[tuple[str, ...], list[Any]] = {}  # variant -> [cases, runs of finished' cycles]
    node_rework_cases: dict[str, int] = {}
    node_reentries: dict[str, int] = {}
    node_max: dict[str, int] = {}
    shape_of: dict[tuple[str, ...], tuple[int, int]] = {}  # raw path -> (steps, re-entries)
    for raw, (members, runs) in summary.paths.items():
        for node in raw:
            entered[node] = entered.get(node, 0) + members
        for node in set(raw):
            entered_cases[node] = entered_cases.get(node, 0) + members
        path = tuple(node for node in raw if node not in gateways)
        variant = variant_cases.setdefault(compress_loops(path), [0, []])
        variant[0] += members
        variant[1] += runs
        visits: dict[str, int] = {}
        for node in path:
            visits[node] = visits.get(node, 0) + 1
        extra = 0
        for node, count in visits.items():
            if count > 1:
                node_rework_cases[node] = node_rework_cases.get(node, 0) + members
                node_reentries[node] = node_reentries.get(node, 0) + (count - 1) * members
                node_max[node] = max(node_max.get(node, 0), count)
                extra += count - 1
        shape_of[raw] = (len(path), extra)
    total = max(stats.cases, 1)
    ranked = sorted(variant_cases.items(), key=lambda item: (-item[1][0], item[0]))
    stats.variant_count = len(ranked)
    for path, (members, runs) in ranked[:variant_limit]:
        stats.variants.append(Variant(path, members, members / total, hours(quantile_of_runs(runs, 0.5))))
    for node in sorted(node_rework_cases, key=lambda n: (-node_reentries[n], n)):
        stats.rework.append(ReworkRow(node, _label(graph, node), node_rework_cases[node], node_reentries[node],
                                      node_max[node], node_rework_cases[node] / total))

    # steps
    durations = part.durations
    fixed_texts = ctx.fixed_texts
    target_seconds = part.target_seconds
    policy_counts: dict[str, dict[str, int]] = {}
    for (node, text), count in part.policy_targets.items():
        policy_counts.setdefault(node, {})[str(text)] = count
    order = [n.id for n in definition.nodes]
    seen = set(order)
    order += sorted(n for n in entered if n not in seen)
    for node_id in order:
        spec = graph.nodes.get(node_id)
        kind = spec.kind if spec is not None else "?"
        step = StepStats(node_id, _label(graph, node_id), kind, getattr(spec, "lane", None))
        step.entered = entered.get(node_id, 0)
        runs = durations.get(node_id, ([], [], []))
        step.completed = sum(len(run) for run in runs[0])
        step.interrupted = part.interrupted.get(node_id, 0)
        step.cases = entered_cases.get(node_id, 0)
        if kind not in INSTANT_KINDS:
            b, w = runs[0], runs[1]
            step.median_business_h = hours(quantile_of_runs(b, 0.5))
            step.p90_business_h = hours(quantile_of_runs(b, 0.9))
            step.median_wall_h = hours(quantile_of_runs(w, 0.5))
            step.p90_wall_h = hours(quantile_of_runs(w, 0.9))
        if node_id in fixed_texts:
            step.targets = [fixed_texts[node_id]] if step.entered else []
        else:
            per_target = policy_counts.get(node_id, {})
            step.targets = sorted(per_target, key=lambda t: (target_seconds.get(t, 0), t))
        if len(step.targets) == 1:
            step.target_h = _target_seconds(step.targets[0], graph) / HOUR
        elif not step.targets and (node_sla := getattr(spec, "sla", None)) is not None:
            step.targets = [str(p.target) for p in node_sla.effective_policies()]
        divisor = ctx.ratio_divisor.get(node_id)
        if divisor is not None:
            step.median_ratio = quantile_of_runs(runs[0], 0.5, divisor)
            step.p90_ratio = quantile_of_runs(runs[0], 0.9, divisor)
        else:
            step.median_ratio = quantile_of_runs(runs[2], 0.5)
            step.p90_ratio = quantile_of_runs(runs[2], 0.9)
        step.status = status_of(step.median_ratio, step.p90_ratio)
        # every visit of a human step with an SLA opens a task and starts its clock
        step.sla_started = step.entered if kind == "human" and getattr(spec, "sla", None) is not None else 0
        step.sla_breached = part.breached_by_node.get(node_id, 0)
        step.escalations = part.escalations_by_node.get(node_id, 0)
        step.rework_cases = node_rework_cases.get(node_id, 0)
        step.reentries = node_reentries.get(node_id, 0)
        stats.steps[node_id] = step
    stats.task_sla_started = sum(step.sla_started for step in stats.steps.values())
    stats.task_sla_breached = sum(part.breached_by_node.values())

    # edges (ones the definition does not have, in a fixed order)
    known: dict[str, EdgeStats] = {}
    for edge in definition.edges:
        known[edge.key] = EdgeStats(edge.key, edge.source, edge.target, 0, edge.kind == "escalation")
    for key, count in sorted(part.edges.items()):
        if key in known:
            known[key].count = count
        else:
            source, _, target = key.partition("->")
            known[key] = EdgeStats(key, source, target, count)
    stats.edges = known

    # roles, clocks, escalations
    roles: dict[str, RoleLoad] = {}
    for role in sorted(part.role_completed):
        business_h = math.fsum(chain.from_iterable(part.role_business.get(role, ()))) / HOUR
        wall_h = math.fsum(chain.from_iterable(part.role_wall.get(role, ()))) / HOUR
        roles[role] = RoleLoad(role, 0, part.role_completed[role], business_h, wall_h)
    for step in stats.steps.values():  # a task is opened for its lane at every visit of a human step
        if step.kind == "human" and step.lane and step.entered:
            load = roles.get(step.lane)
            if load is None:
                load = roles[step.lane] = RoleLoad(step.lane)
            load.opened += step.entered
    stats.roles = dict(sorted(roles.items()))
    names = {f"case:{c.id}": (c.name.both() if c.name else c.id) for c in definition.clocks}
    for clock in sorted(set(part.clock_started) | set(names)):
        consumed = part.clock_consumed.get(clock, [])
        stats.clocks[clock] = ClockStats(
            clock, names.get(clock, clock), part.clock_started.get(clock, 0), part.clock_met.get(clock, 0),
            part.clock_breached.get(clock, 0), hours(quantile_of_runs(consumed, 0.5)),
            hours(quantile_of_runs(consumed, 0.9)), part.clock_cancelled.get(clock, 0),
        )
    rows_out: dict[tuple[str, int, int, str, str], int] = {}
    for (scope, level, percent, kind, notify, reassign, raise_priority, route), count in \
            part.escalation_rows.items():
        actions = [f"notify: {', '.join(notify)}"] if notify else []
        actions += [f"{name}: {value}" for name, value in (("reassign", reassign), ("raise_priority", raise_priority),
                                                            ("route", route)) if value]
        row_key = (str(scope), int(level or 0), int(percent or 0), str(kind), "; ".join(actions))
        rows_out[row_key] = rows_out.get(row_key, 0) + count
    for (scope, level, percent, escalation_kind, action_text), count in sorted(
            rows_out.items(), key=lambda item: (item[0][0], item[0][2], item[0][3], item[0][4])):
        stats.escalations.append(EscalationRow(scope, level, percent, escalation_kind, count, action_text))
    stats.escalations_by_kind = dict(sorted(part.escalations_by_kind.items()))

    # slowest cases: finished ones by cycle time, open ones by age at the horizon
    candidates = list(summary.slowest_finished)
    for case_id, start, business_start, status, outcome, started_at, path, escalations, breaches in \
            summary.open_cases:
        end = max(horizon, start)
        candidates.append((bat(end) - business_start, case_id, status, outcome, started_at, end - start, path,
                           escalations, breaches))
    for business, case_id, status, outcome, started_at, wall, path, escalations, breaches in heapq.nlargest(
            slowest, candidates, key=lambda item: (item[0], item[1])):
        steps, reentries = shape_of[path]
        stats.slowest.append(CaseRow(case_id, status, outcome, started_at, business / HOUR, wall / HOUR, steps,
                                     reentries, escalations, breaches))
    return stats


def _target_seconds(text: str, graph: ProcessGraph) -> int:
    return parse_duration(text).total_seconds(graph.calendar.day_seconds)


def _label(graph: ProcessGraph, node_id: str) -> str:
    node = graph.nodes.get(node_id)
    return node.label() if node is not None else node_id
