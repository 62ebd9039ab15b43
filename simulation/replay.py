"""Replay of history under a proposed SLA policy: how breach rates and escalations would have changed.

`svcflow simulate --replay --policy FILE` reads the closed cases of one process from the store's log
and measures each case clock again: the same running stretches (from its start to its stop, pauses
while the case waited on the customer left out), in business time of the policy's calendar (or the
definition's), against the target the policy's first matching rule gives for the case's data. Nothing
is simulated and nothing is stored: the work done is history, only the yardstick changes.

The policy file (YAML):

    name: tighter resolution
    process: complaint_handling
    calendar: {working_hours: ["00:00-24:00"], working_weekdays: [0, 1, 2, 3, 4, 5, 6],
               use_chinese_holidays: false}          # optional: the definition's calendar otherwise
    clocks:
      resolution:
        policies: [{when: 'data.tier in ["platinum", "gold"]', target: 1d}, {target: 3d}]
        escalation: complaint_ladder                 # optional: the clock's own ladder otherwise

What it assumes, and says in its report: targets are chosen from the case's data at its end (the
engine chooses at the clock's start and again when the data it reads changes, e.g. the tier at
registration); a clock reaches a ladder level when its business time passes that percentage of the
target; escalations counted are those at 100 % and beyond (warnings below are left out).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.definition.graph import ProcessGraph
from engine.definition.model import EscalationLevel, Policy
from engine.errors import SvcflowError
from engine.expressions.cel import ExpressionError, compile_expression
from engine.run.log import LogEntry
from engine.time.calendar import BusinessCalendar, CalendarConfig
from engine.time.durations import parse_duration

BREACH_PCT = 100


class ReplayError(SvcflowError):
    """A policy file that cannot be replayed: unreadable, unknown clocks or ladders, bad conditions."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClockPolicy(_Strict):
    """A case clock's proposed targets (first matching rule wins) and, optionally, its ladder."""

    policies: list[Policy] = Field(description="targets by condition, as in a definition's clock")
    escalation: str | list[EscalationLevel] | None = Field(
        default=None, description="a ladder of the definition by name, or inline levels; default: the clock's own")


class ReplayPolicy(_Strict):
    """A proposed SLA policy for one process."""

    name: str = Field(default="proposed policy", description="what the report calls the policy")
    description: str = Field(default="", description="what the policy changes, in words")
    process: str = Field(description="the process whose closed cases are replayed")
    calendar: CalendarConfig | None = Field(default=None, description="business calendar; default: the definition's")
    clocks: dict[str, ClockPolicy] = Field(default_factory=dict, description="per case clock id: the new targets")


def load_policy(path: Path) -> ReplayPolicy:
    """Read a policy file; every structural mistake is reported at once."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayError(f"no such file: {path}") from None
    except yaml.YAMLError as exc:
        raise ReplayError(f"{path}: not valid YAML: {exc}") from None
    try:
        return ReplayPolicy.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  - {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]
        raise ReplayError(f"{path}: {len(lines)} problem(s):\n" + "\n".join(lines),
                          hint="see the module docstring of simulation/replay.py for the format") from None


# -- one clock of one case, as the log recorded it ---------------------------------------------------------
@dataclass
class ClockRun:
    """The running stretches of one case clock, and what the log says came of it."""

    case_id: str
    clock: str  # "case:<id>"
    stretches: list[tuple[datetime, datetime]] = field(default_factory=list)
    running_since: datetime | None = None
    ended: bool = False
    breached: bool = False  # as recorded: reached 100 % while running, or stopped over its target
    escalations: int = 0  # as recorded: escalated events at 100 % and beyond
    target: str = ""


def clock_runs(events: Iterable[LogEntry], process: str) -> tuple[list[ClockRun], set[str]]:
    """Every case clock of `process` in the log, and the ids of the cases that are closed."""
    runs: dict[tuple[str, str], ClockRun] = {}
    closed: set[str] = set()
    for e in events:
        if e.process_id != process:
            continue
        if e.type in ("case_completed", "case_cancelled"):
            closed.add(e.case_id)
            continue
        clock = e.data.get("clock") if e.type.startswith("sla_") or e.type == "escalated" else None
        if not isinstance(clock, str) or not clock.startswith("case:"):
            continue
        run = runs.get((e.case_id, clock))
        if run is None:
            run = runs[(e.case_id, clock)] = ClockRun(e.case_id, clock)
        if e.type == "sla_started":
            run.running_since, run.target = e.at, str(e.data.get("target", ""))
        elif e.type == "sla_retargeted":
            run.target = str(e.data.get("new", run.target))
        elif e.type == "sla_resumed":
            run.running_since = e.at
        elif e.type in ("sla_paused", "sla_met", "sla_stopped"):
            if run.running_since is not None:
                run.stretches.append((run.running_since, e.at))
                run.running_since = None
            if e.type != "sla_paused":
                run.ended = True
                run.breached = run.breached or e.data.get("in_time") is False
        elif e.type == "sla_breached":
            run.breached = True
        elif e.type == "escalated" and e.data.get("kind") in ("breached", "escalated"):
            run.escalations += 1
    return list(runs.values()), closed


# -- the replay ---------------------------------------------------------------------------------------------
@dataclass
class ClockReplay:
    """One clock over the closed cases: as recorded and as it would have been."""

    clock: str
    name: str
    clocks: int = 0
    breached_before: int = 0
    breached_after: int = 0
    escalations_before: int = 0
    escalations_after: int = 0

    @property
    def rate_before(self) -> float | None:
        return self.breached_before / self.clocks if self.clocks else None

    @property
    def rate_after(self) -> float | None:
        return self.breached_after / self.clocks if self.clocks else None


@dataclass
class CaseChange:
    """A case whose clock would have ended otherwise."""

    case_id: str
    clock: str
    used_h: float  # business hours on the policy's calendar
    target_before: str
    target_after: str
    breached_before: bool
    breached_after: bool


@dataclass
class ReplayReport:
    policy: ReplayPolicy
    process: str
    cases: int
    clocks: list[ClockReplay]
    changed: list[CaseChange]
    assumptions: list[str]


def replay(graph: ProcessGraph, events: Iterable[LogEntry], case_data: Mapping[str, Mapping[str, Any]],
           policy: ReplayPolicy) -> ReplayReport:
    """Measure the closed cases' clocks again under `policy`; `case_data` is each case's data at its end."""
    definition = graph.definition
    known = {c.id: c for c in definition.clocks}
    problems = [f"clocks.{clock_id}: process '{definition.id}' has no case clock '{clock_id}' "
                f"(its clocks: {', '.join(known) or 'none'})" for clock_id in policy.clocks if clock_id not in known]
    ladders: dict[str, list[EscalationLevel]] = {}
    for clock_id, clock in known.items():
        proposed = policy.clocks.get(clock_id)
        escalation = proposed.escalation if proposed is not None and proposed.escalation is not None \
            else clock.escalation
        if isinstance(escalation, str) and escalation not in definition.ladders:
            problems.append(f"clocks.{clock_id}.escalation: no ladder '{escalation}' "
                            f"(ladders: {', '.join(definition.ladders) or 'none'})")
        ladders[clock_id] = definition.ladder(escalation)
        for index, rule in enumerate(proposed.policies if proposed is not None else []):
            if rule.when is not None:
                try:
                    compile_expression(rule.when)
                except ExpressionError as exc:
                    problems.append(f"clocks.{clock_id}.policies[{index}].when: {exc}")
            try:
                parse_duration(str(rule.target))
            except ValueError as exc:
                problems.append(f"clocks.{clock_id}.policies[{index}].target: {exc}")
    if problems:
        raise ReplayError(f"policy '{policy.name}': {len(problems)} problem(s):\n"
                          + "\n".join(f"  - {p}" for p in problems))
    calendar = BusinessCalendar(policy.calendar) if policy.calendar is not None else graph.calendar
    runs, closed = clock_runs(events, definition.id)
    table = {f"case:{cid}": ClockReplay(f"case:{cid}", c.name.both() if c.name else cid) for cid, c in known.items()}
    changed: list[CaseChange] = []
    for run in runs:
        if run.case_id not in closed or not run.ended or run.clock not in table:
            continue
        clock_id = run.clock[5:]
        proposed = policy.clocks.get(clock_id)
        rules = proposed.policies if proposed is not None else known[clock_id].policies
        target_text = _target(rules, case_data.get(run.case_id, {}), definition.parameters, run, clock_id)
        target = parse_duration(target_text).total_seconds(calendar.day_seconds)
        used = sum(calendar.between(a, b) for a, b in run.stretches)
        breached = used > target
        reached = sum(1 for level in ladders[clock_id]
                      if level.at >= BREACH_PCT and used > math.ceil(target * level.at / 100))
        row = table[run.clock]
        row.clocks += 1
        row.breached_before += run.breached
        row.breached_after += breached
        row.escalations_before += run.escalations
        row.escalations_after += reached
        if breached != run.breached:
            changed.append(CaseChange(run.case_id, run.clock, used / 3600.0, run.target, target_text, run.breached,
                                      breached))
    changed.sort(key=lambda c: (c.clock, c.case_id))
    assumptions = [
        "targets are chosen from each case's data at its end (the engine chose them when the clock started, "
        "again when the data they read changed)",
        "a ladder level is reached when the clock's business time passes that percentage of the target; "
        "escalations count levels at 100 % and beyond",
        f"business time on {'the policy' if policy.calendar is not None else 'the definition'}'s calendar",
    ]
    return ReplayReport(policy, definition.id, len(closed), list(table.values()), changed, assumptions)


def _target(rules: list[Policy], data: Mapping[str, Any], params: Mapping[str, Any], run: ClockRun,
            clock_id: str) -> str:
    scope = {"data": dict(data), "params": dict(params), "steps": {},
             "case": {"id": run.case_id, "tier": str(data.get("tier") or ""), "priority": "", "status": "closed"}}
    for rule in rules:
        if rule.when is None:
            return str(rule.target)
        try:
            if compile_expression(rule.when).evaluate_bool(scope):
                return str(rule.target)
        except ExpressionError as exc:
            raise ReplayError(f"case {run.case_id}, clock {clock_id}: {exc}") from None
    raise ReplayError(f"case {run.case_id}, clock {clock_id}: no rule of the policy applies and none is "
                      "unconditional", hint="end the policies with one without `when`")


# -- the report -----------------------------------------------------------------------------------------------
def replay_rows(report: ReplayReport) -> list[list[Any]]:
    """(clock, clocks, breach rate before, after, change, escalations before, after) per clock."""
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    rows: list[list[Any]] = []
    for c in report.clocks:
        change = "–" if c.rate_before is None or c.rate_after is None else \
            f"{100 * (c.rate_after - c.rate_before):+.1f} pp"
        rows.append([c.name, c.clocks, pct(c.rate_before), pct(c.rate_after), change, c.escalations_before,
                     c.escalations_after])
    return rows


def replay_html(report: ReplayReport) -> str:
    from html import escape

    from visualize.review import html_table, page

    p = report.policy
    parts = [
        f'<p class="note">{escape(p.description)}</p>' if p.description else "",
        f'<p class="note">{report.cases} closed case(s) of {escape(report.process)} measured again from the log; '
        "nothing simulated, nothing stored.</p>",
        '<h2 id="replay">时限重算 Breach rates and escalations, as recorded and under the policy</h2>',
        html_table(["clock", "clocks of closed cases", "breach rate (recorded)", "breach rate (policy)", "change",
                    "escalations (recorded)", "escalations (policy)"], replay_rows(report),
                   numeric=(1, 2, 3, 4, 5, 6), table_id="replay-table"),
        '<h2 id="replay-cases">结果改变的案件 Cases whose clock would have ended otherwise</h2>',
        html_table(["case", "clock", "business hours used", "target (recorded)", "target (policy)", "breached then",
                    "breached under the policy"],
                   [[c.case_id, c.clock, f"{c.used_h:.1f}", c.target_before, c.target_after,
                     "yes" if c.breached_before else "no", "yes" if c.breached_after else "no"]
                    for c in report.changed], numeric=(2,), table_id="replay-cases-table"),
        '<h2 id="replay-assumptions">假设 Assumptions</h2><ul>'
        + "".join(f"<li>{escape(a)}</li>" for a in report.assumptions) + "</ul>",
    ]
    return page(f"政策重算 Policy replay — {p.name}", [f"process {report.process}"], "\n".join(parts))
