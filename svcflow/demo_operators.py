"""Simulated operators for the demo: sample cases for every process, and people who work them.

They act only through the Engine (the same calls as `svcflow complete` and `svcflow message`),
on whatever clock the engine has — the demo's accelerated clock makes business hours pass in
seconds, and some operators are deliberately slow so warnings, breaches and escalations happen.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.definition.model import FieldSpec, HumanTask, MessageWait
from engine.errors import SvcflowError
from engine.run.runtime import Engine
from engine.time.calendar import BusinessCalendar

SAMPLE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("complaint_handling", {"customer_id": "C-1001", "customer_name": "王芳", "tier": "platinum", "channel": "hotline",
                            "category": "billing", "description": "账单重复扣费 / charged twice"}),
    ("complaint_handling", {"customer_id": "C-1002", "customer_name": "李雷", "tier": "standard", "channel": "web",
                            "category": "delivery", "description": "送货延误 / late delivery"}),
    ("complaint_handling", {"customer_id": "C-1003", "customer_name": "赵敏", "tier": "gold", "channel": "phone",
                            "category": "product_quality", "description": "产品故障,威胁曝光 / threatens the press",
                            "media_threat": True, "strong_emotion": True, "claimed_compensation": 50000}),
    ("complaint_handling", {"customer_id": "C-1004", "customer_name": "孙强", "tier": "silver", "channel": "email",
                            "category": "service_attitude", "description": "服务态度差 / rude staff"}),
    ("major_complaint", {}),
    ("after_sales_repair", {}),
    ("customer_retention", {}),
    ("big_client_visit", {}),
    ("big_client_return_visit", {}),
    ("credit_rating", {}),
    ("credit_rating_change", {}),
]

_LIKELY_TRUE = ("accept", "restor", "success", "retain", "reach", "fixed", "confirm", "approved", "satisf", "worth")


def sample_value(name: str, spec: FieldSpec, rng: random.Random, now: datetime) -> Any:
    """A plausible value for a field: the first enum choice is the usual one, flags are mostly off."""
    if spec.default is not None and spec.type not in ("boolean", "enum") and rng.random() < 0.3:
        return spec.default
    if spec.type == "enum" and spec.choices:
        if rng.random() < 0.65:
            return spec.choices[0]
        return rng.choice(spec.choices)
    if spec.type == "boolean":
        return rng.random() < (0.75 if any(word in name for word in _LIKELY_TRUE) else 0.05)
    if spec.type in ("integer", "number"):
        low = spec.minimum if spec.minimum is not None else 1
        high = spec.maximum if spec.maximum is not None else max(low + 1, 5 if "score" in name else 5000)
        value = rng.uniform(low, high)
        return int(round(value)) if spec.type == "integer" else round(value, 2)
    if spec.type == "date":
        return (now + timedelta(days=rng.randint(1, 10))).date().isoformat()
    if spec.type == "datetime":
        return (now + timedelta(hours=rng.randint(2, 48))).isoformat()
    if spec.type == "list":
        return []
    label = spec.label.zh if spec.label else name
    return f"演示:{label}"


def sample_fields(specs: Mapping[str, FieldSpec], rng: random.Random, now: datetime,
                  present: dict[str, Any] | None = None, only_required: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        decision = spec.type == "enum" or any(word in name for word in _LIKELY_TRUE)
        if present and present.get(name) not in (None, "") and not decision:
            continue
        if only_required and not spec.required:
            continue
        values[name] = sample_value(name, spec, rng, now)
    return values


@dataclass
class Operators:
    """People working every open task and customers answering; slow on purpose now and then."""

    engine: Engine
    seed: int = 7
    slowness: tuple[float, ...] = (0.05, 0.1, 0.15, 0.25, 0.5, 1.6)  # fraction of the SLA target taken
    default_minutes: int = 90
    rng: random.Random = field(init=False)
    plans: dict[str, datetime] = field(default_factory=dict)
    log: Callable[[str], None] = print
    on_completed: Callable[[str], Any] | None = None  # task id -> e.g. resume the Prefect run waiting on it
    on_message: Callable[[str], Any] | None = None  # case id -> e.g. wake the case's paused run
    complete: Callable[..., Any] | None = None  # how a task is completed (default: Engine.complete)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def start_samples(self) -> list[str]:
        """Start one case per sample; data the sample leaves out is made up from the definition."""
        ids = []
        now = self.engine.clock.now()
        for process_id, data in SAMPLE_CASES:
            if process_id not in self.engine.library.latest:
                continue
            definition = self.engine.library.latest[process_id].definition
            full = sample_fields(definition.data, self.rng, now, only_required=True)
            for name, spec in definition.data.items():
                if spec.type == "boolean" and name not in data:
                    full.pop(name, None)  # flags default off
            full.update(data)
            case_id = self.engine.start(process_id, full, actor="demo")
            ids.append(case_id)
            self.log(f"started {process_id:<24} {case_id}  tier={full.get('tier', '-')}")
        return ids

    def work(self) -> int:
        """One round: complete the tasks whose planned time has come, answer waiting messages.

        Staff work the business hours of the calendar their SLAs are measured against: outside
        them (nights, lunch, weekends, holidays) no task is completed; customers answer any time."""
        done = 0
        now = self.engine.clock.now()
        for task in self.engine.store.tasks(status="open"):
            try:
                state, _ = self.engine.store.load_case(task["case_id"])
                graph = self.engine.graph_for(state)
                planned = self.plans.get(task["id"])
                if planned is None:
                    planned = self._plan(task, graph.calendar)
                    self.plans[task["id"]] = planned
                if now < planned or graph.calendar.next_working_instant(now) != now:
                    continue
                node = graph.nodes[task["node"]]
                assert isinstance(node, HumanTask)
                specs = {f.id: f for f in node.form}
                data = sample_fields(specs, self.rng, now, present=state.data)
                actor = f"{task['role']}_{self.rng.choice(['li', 'wang', 'zhang', 'liu'])}"
                (self.complete or self.engine.complete)(task["id"], actor=actor, role=task["role"], data=data)
                done += 1
                if self.on_completed is not None:
                    self.on_completed(task["id"])
                self.log(f"{actor:<28} completed {task['node']:<22} of {task['case_id']}")
            except SvcflowError as exc:
                self.log(f"operator could not complete {task['id']}: {exc}")
                self.plans[task["id"]] = now + timedelta(hours=1)
        done += self._answer_messages(now)
        return done

    def _plan(self, task: dict[str, Any], calendar: BusinessCalendar) -> datetime:
        """When the task will be done: a share of its SLA target in business time (most are quick,
        some are slow on purpose), counted on the calendar so it lands in working hours."""
        created: datetime = task["created_at"]
        due: datetime | None = task["due_at"]
        span = calendar.between(created, due) if due is not None else self.default_minutes * 60
        return calendar.add(created, max(60, int(span * self.rng.choice(self.slowness))))

    def _answer_messages(self, now: datetime) -> int:
        answered = 0
        for row in self.engine.store.cases(status="running"):
            state, _ = self.engine.store.load_case(row["id"])
            for token in list(state.tokens.values()):
                if not token.message or now - token.since < timedelta(hours=2):
                    continue
                node = self.engine.graph_for(state).nodes[token.node]
                assert isinstance(node, MessageWait)
                payload = sample_fields(node.fields, self.rng, now)
                try:
                    self.engine.send_message(row["id"], token.message, payload, actor="customer")
                    answered += 1
                    if self.on_message is not None:
                        self.on_message(row["id"])
                    self.log(f"{'customer':<28} answered {token.message:<21} of {row['id']}")
                except SvcflowError as exc:
                    self.log(f"customer could not answer {row['id']}: {exc}")
                break
        return answered
