"""What a review shows: the result records of the statistics, plain data (JSON-friendly through `to_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class StepStats:
    """One node. Durations: node entered -> node completed; business hours drive the status."""

    node: str
    label: str
    kind: str
    lane: str | None
    entered: int = 0
    completed: int = 0
    cases: int = 0
    interrupted: int = 0
    median_business_h: float | None = None
    p90_business_h: float | None = None
    median_wall_h: float | None = None
    p90_wall_h: float | None = None
    targets: list[str] = field(default_factory=list)
    target_h: float | None = None  # the single target, when every instance had the same one
    median_ratio: float | None = None  # business duration / that instance's target
    p90_ratio: float | None = None
    status: str = "none"
    sla_started: int = 0
    sla_breached: int = 0
    escalations: int = 0
    rework_cases: int = 0
    reentries: int = 0

    @property
    def breach_rate(self) -> float | None:
        return self.sla_breached / self.sla_started if self.sla_started else None

    @property
    def target_text(self) -> str:
        return " / ".join(self.targets) if self.targets else ""


@dataclass
class EdgeStats:
    key: str
    source: str
    target: str
    count: int
    escalation: bool = False


@dataclass
class Variant:
    """A path through the process (nodes entered, gateways left out); repeated blocks shown once as ↻."""

    path: tuple[str, ...]
    cases: int
    share: float
    median_cycle_business_h: float | None

    @property
    def text(self) -> str:
        return " → ".join(self.path)


@dataclass
class ReworkRow:
    """Re-entries of a node within a case: the rework loops ESIA wants eliminated."""

    node: str
    label: str
    cases_with_rework: int
    reentries: int
    max_visits: int
    share_of_cases: float


@dataclass
class RoleLoad:
    """Tasks per role. Hours are business hours the tasks stood open (queue + work), summed."""

    role: str
    opened: int = 0
    completed: int = 0
    open_business_h: float = 0.0
    open_wall_h: float = 0.0

    @property
    def mean_business_h(self) -> float | None:
        return self.open_business_h / self.completed if self.completed else None


@dataclass
class ClockStats:
    """A case-level SLA clock; consumed is the clock's own business time (pauses excluded)."""

    clock: str
    name: str
    started: int = 0
    met: int = 0  # stopped within the target: never one that breached
    breached: int = 0  # reached its target while running, or stopped over it (counted once per case)
    median_consumed_business_h: float | None = None
    p90_consumed_business_h: float | None = None
    cancelled: int = 0  # stopped by the case's cancellation before any breach

    @property
    def running(self) -> int:
        """Started and not yet met, breached or cancelled (running or paused) at the end of the log."""
        return max(self.started - self.met - self.breached - self.cancelled, 0)

    @property
    def breach_rate(self) -> float | None:
        """Breached among the clocks decided either way (met + breached): running ones are not yet known."""
        decided = self.met + self.breached
        return self.breached / decided if decided else None


@dataclass
class EscalationRow:
    scope: str  # node id for task SLAs, "case:<clock>" for case clocks
    level: int
    percent: int
    kind: str  # warned | breached | escalated
    count: int
    actions: str


@dataclass
class CaseRow:
    case_id: str
    status: str
    outcome: str | None
    started_at: datetime
    cycle_business_h: float
    cycle_wall_h: float
    steps: int
    reentries: int
    escalations: int
    breaches: int


@dataclass
class ProcessStats:
    """Everything a review shows, as plain data (JSON-friendly through `to_dict`)."""

    process_id: str
    name: str
    since: datetime | None
    until: datetime | None
    cases: int = 0
    completed: int = 0
    cancelled: int = 0
    open: int = 0
    incidents: int = 0
    events: int = 0
    first_event: datetime | None = None
    last_event: datetime | None = None
    cycle_median_business_h: float | None = None
    cycle_p90_business_h: float | None = None
    cycle_median_wall_h: float | None = None
    cycle_p90_wall_h: float | None = None
    steps: dict[str, StepStats] = field(default_factory=dict)
    edges: dict[str, EdgeStats] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    variant_count: int = 0
    rework: list[ReworkRow] = field(default_factory=list)
    roles: dict[str, RoleLoad] = field(default_factory=dict)
    clocks: dict[str, ClockStats] = field(default_factory=dict)
    escalations: list[EscalationRow] = field(default_factory=list)
    escalations_by_kind: dict[str, int] = field(default_factory=dict)
    slowest: list[CaseRow] = field(default_factory=list)
    task_sla_started: int = 0
    task_sla_breached: int = 0
    workers: int = field(default=1, compare=False)  # processes that read the log: how, not what, so not in to_dict

    @property
    def escalation_total(self) -> int:
        """Escalations proper (breach and beyond); 50 %/75 % warnings are counted apart."""
        return self.escalations_by_kind.get("breached", 0) + self.escalations_by_kind.get("escalated", 0)

    @property
    def task_breach_rate(self) -> float | None:
        return self.task_sla_breached / self.task_sla_started if self.task_sla_started else None

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        del raw["workers"]
        raw["variants"] = [{**asdict(v), "path": " → ".join(v.path)} for v in self.variants]
        return raw
