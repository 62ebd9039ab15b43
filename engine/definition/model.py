"""The process definition format: what designers write in process_defs/*.yaml.

The pydantic models are the single source of the format: loading, `svcflow schema`
(JSON Schema for editors) and the validator all derive from them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from engine.time.calendar import CalendarConfig
from engine.time.durations import DURATION_PATTERN, parse_duration

IDENT = r"^[a-z][a-z0-9_]*$"
IDENT_MAX = 64  # ids go into the store's 100-character columns, some with a suffix (engine/run/limits.py)
Ident = Annotated[str, Field(pattern=IDENT, max_length=IDENT_MAX,
                             description="snake_case ASCII identifier, at most 64 characters")]


def _check_duration(text: str) -> str:
    parse_duration(text)  # DurationError is a ValueError: pydantic reports it at the field
    return text


DurationStr = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN,
                    "description": 'business time, e.g. "2h", "30m", "5d", "1d 4h" (d = one working day)'}),
]
Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a definition must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Text(Strict):
    """A display text in Chinese and English; flowcharts and forms show both."""

    zh: str = Field(description="the Chinese text")
    en: str = Field(description="the English text")

    def both(self) -> str:
        return f"{self.zh} / {self.en}" if self.zh != self.en else self.zh


FieldType = Literal["string", "text", "integer", "number", "boolean", "enum", "date", "datetime", "list"]


class FieldSpec(Strict):
    """A typed field of case data, of a form or of a handler's output."""

    type: FieldType = Field(default="string", description="value type; date/datetime are ISO-8601 text, "
                            "datetime with a time zone")
    label: Text | None = Field(default=None, description="what forms and reports call the field")
    required: bool = Field(default=False, description="a value must be given (at case start for case data, "
                           "on completion for a form field)")
    choices: list[str] | None = Field(default=None, description="allowed values, for type enum "
                                      "(for the field `tier`: highest tier first)")
    choice_labels: dict[str, Text] | None = Field(
        default=None, description="display names of some or all choices (zh/en), shown by reports instead of the codes")
    default: Any = Field(default=None, description="value used when none is given; must fit the type")
    minimum: float | None = Field(default=None, description="smallest allowed value (integer and number only)")
    maximum: float | None = Field(default=None, description="largest allowed value (integer and number only)")
    description: Text | None = Field(default=None, description="help text shown beside the field")

    @model_validator(mode="after")
    def _enum_has_choices(self) -> FieldSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError("a field of type enum needs 'choices'")
        if self.type != "enum" and self.choices:
            raise ValueError("'choices' only apply to type enum")
        unknown = sorted(set(self.choice_labels or {}) - set(self.choices or []))
        if unknown:
            raise ValueError(f"choice_labels name values that are not choices: {', '.join(unknown)}")
        return self


class FormField(FieldSpec):
    """A field of a human task's form; its value is written into the case data under `id`."""

    id: Ident


class Lane(Strict):
    """A role or department; human tasks belong to one, escalations notify and reassign to them."""

    id: Ident = Field(description="the role id; users hold roles, tasks and escalations name lanes by it")
    name: Text = Field(description="display name of the role or department")


def _percent(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        return value.strip()[:-1]
    return value


class EscalationLevel(Strict):
    """One rung of an escalation ladder, fired when the clock reaches `at` percent of its target.

    Below 100 a level is a warning; at 100 the target is breached; above it escalates further.
    """

    at: Annotated[int, Field(ge=1, le=1000, description='percent of the target, e.g. 50 or "50%"')]
    notify: list[Ident] = Field(default_factory=list, description="roles to notify")
    reassign: Ident | None = Field(default=None, description="role the task (or the case's open tasks) moves to")
    raise_priority: Priority | None = Field(default=None, description="raise the task's (or case's) priority "
                                            "to this")
    route: Ident | None = Field(
        default=None, description="id of an escalation edge: interrupts the task and moves the case along it"
    )
    message: Text | None = Field(default=None, description="text sent with the notification")

    @field_validator("at", mode="before")
    @classmethod
    def _strip_percent(cls, value: Any) -> Any:
        return _percent(value)


class Policy(Strict):
    """A target chosen by condition; the first policy whose `when` holds wins."""

    when: str | None = Field(default=None, description="CEL condition over data, case, params; omitted = always")
    target: DurationStr = Field(description="business time allowed when this policy applies")


class SlaSpec(Strict):
    """A step's SLA: a fixed target or policies, plus the escalation ladder (inline or named)."""

    target: DurationStr | None = Field(default=None, description="one target for every case (or give policies)")
    policies: list[Policy] = Field(default_factory=list, description="targets chosen by condition, first match "
                                   "wins (or give target)")
    escalation: Ident | list[EscalationLevel] = Field(
        default_factory=list, description="the escalation ladder: levels inline, or the name of one under ladders")

    @model_validator(mode="after")
    def _one_target_form(self) -> SlaSpec:
        if (self.target is None) == (not self.policies):
            raise ValueError("give either 'target' or 'policies' (not both, not neither)")
        return self

    def effective_policies(self) -> list[Policy]:
        return self.policies or [Policy(target=self.target or "0m")]


class CaseClock(Strict):
    """A case-level SLA clock, e.g. first response or resolution."""

    id: Ident = Field(description="the clock id, shown in reports")
    name: Text | None = Field(default=None, description="display name, e.g. first response / 首次响应")
    start_on: Ident | None = Field(default=None, description="node whose activation starts the clock; default: case start")
    stop_on: list[Ident] = Field(
        default_factory=list, description="nodes whose completion meets the target; default: the case ends"
    )
    policies: list[Policy] = Field(description="targets chosen by condition, first match wins")
    escalation: Ident | list[EscalationLevel] = Field(
        default_factory=list, description="the escalation ladder: levels inline, or the name of one under ladders")
    pause_when_waiting: bool = Field(default=True, description="pause while the case waits on the customer")


class NodeBase(Strict):
    """What every node has: an id edges refer to, a display name and computed values."""

    id: Ident = Field(description="the node id; edges, clocks and escalations refer to it")
    name: Text | None = Field(default=None, description="display name on charts, tasks and reports")
    description: Text | None = Field(default=None, description="what happens at this step, for people")
    compute: dict[str, str] = Field(
        default_factory=dict, description="field -> CEL expression, written to the case data when the node completes"
    )

    def label(self) -> str:
        return self.name.both() if self.name else self.id


class StartNode(NodeBase):
    kind: Literal["start"] = Field(description="where every case begins (exactly one per process)")


class EndNode(NodeBase):
    kind: Literal["end"] = Field(description="where a case ends")
    outcome: str | None = Field(default=None, max_length=100,
                                description="result recorded on the case, e.g. closed, rejected")


class AutoTask(NodeBase):
    """A step done by a registered Python handler (run as a Prefect task in production)."""

    kind: Literal["auto"] = Field(description="a step done by a registered handler")
    handler: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
                         description="registered handler name, e.g. crm.lookup_customer")
    retries: int = Field(default=0, ge=0, le=20, description="attempts after a failure before an incident")
    retry_delay_seconds: float = Field(default=0, ge=0, description="wait between attempts")
    timeout_seconds: float | None = Field(default=None, gt=0, description="an attempt running longer fails")
    outputs: dict[str, FieldSpec] = Field(default_factory=dict, description="fields the handler writes into case data")
    lane: Ident | None = Field(default=None, description="lane the step is drawn in (it needs no person)")


class HumanTask(NodeBase):
    """A step done by a person holding the lane's role, through a form."""

    kind: Literal["human"] = Field(description="a step done by a person through a form")
    lane: Ident = Field(description="the role whose members may do the task")
    form: list[FormField] = Field(default_factory=list, description="fields the person fills in; each is "
                                  "written into case data")
    sla: SlaSpec | None = Field(default=None, description="target time of the task and its escalation")
    priority: Priority | None = Field(default=None, description="the task's priority (default: the case's)")
    different_actor_from: list[Ident] = Field(
        default_factory=list,
        description="four-eyes: the person completing this task must not have completed these tasks of the case",
    )


class ExclusiveGateway(NodeBase):
    """Takes the first outgoing edge whose condition holds, else the default edge."""

    kind: Literal["exclusive"] = Field(description="one branch: the first condition that holds, else the default")


class ParallelGateway(NodeBase):
    """Split (one in, many out) or join (many in, one out): all branches."""

    kind: Literal["parallel"] = Field(description="all branches (split) or waiting for all (join)")


class InclusiveGateway(NodeBase):
    """Split takes every edge whose condition holds (default when none); its join waits for those taken."""

    kind: Literal["inclusive"] = Field(description="every branch whose condition holds (split) or waiting "
                                       "for those taken (join)")


class TimerWait(NodeBase):
    """Waits a business duration, or until a date computed from the case data."""

    kind: Literal["timer"] = Field(description="a wait for a time")
    duration: DurationStr | None = Field(default=None, description="business time to wait (or give until)")
    until: str | None = Field(default=None, description="CEL expression giving an ISO date-time")
    lane: Ident | None = Field(default=None, description="lane the timer is drawn in")

    @model_validator(mode="after")
    def _one_of(self) -> TimerWait:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a timer needs exactly one of 'duration' or 'until'")
        return self


class MessageWait(NodeBase):
    """Waits for a named message (e.g. the customer's reply); SLA clocks pause meanwhile."""

    kind: Literal["message"] = Field(description="a wait for a named message")
    message: Ident = Field(description="the message name senders use (svcflow message, the HTTP API)")
    pauses_sla: bool = Field(default=True, description="SLA clocks that pause while waiting on the customer "
                             "pause here")
    fields: dict[str, FieldSpec] = Field(default_factory=dict, description="payload fields written into case data")
    lane: Ident | None = Field(default=None, description="lane the wait is drawn in")


class SubProcess(NodeBase):
    """Runs another process as a child case and waits for it to end."""

    kind: Literal["subprocess"] = Field(description="another process run as a child case")
    process: Ident = Field(description="id of the process to run (in the library)")
    inputs: dict[str, str] = Field(default_factory=dict, description="child field -> CEL expression over this case")
    outputs: dict[str, str] = Field(
        default_factory=dict, description="field of this case -> CEL expression over the child (as `data`)"
    )
    lane: Ident | None = Field(default=None, description="lane the call is drawn in")


# Every concrete node model; each has a `kind` literal, so code typed with it needs no casts.
AnyNode = Union[
    StartNode, EndNode, AutoTask, HumanTask, ExclusiveGateway, ParallelGateway,
    InclusiveGateway, TimerWait, MessageWait, SubProcess,
]
Node = Annotated[AnyNode, Field(discriminator="kind")]
NODE_KINDS: tuple[str, ...] = (
    "start", "end", "auto", "human", "exclusive", "parallel", "inclusive", "timer", "message", "subprocess",
)
WAIT_KINDS = frozenset({"human", "timer", "message", "subprocess", "auto"})


class Edge(Strict):
    """A sequence flow. Escalation edges are only taken by an escalation level's `route`."""

    id: Ident | None = Field(default=None, description="edge id; needed on escalation edges (routes name them)")
    source: Ident = Field(alias="from", description="id of the node the edge leaves")
    target: Ident = Field(alias="to", description="id of the node the edge leads to")
    when: str | None = Field(default=None, description="CEL condition (on gateway outgoing edges)")
    default: bool = Field(default=False, description="taken when no condition of the gateway holds")
    kind: Literal["normal", "escalation"] = Field(
        default="normal", description="escalation edges are taken only by an escalation level's route")
    label: Text | None = Field(default=None, description="text on the edge in charts")

    @property
    def key(self) -> str:
        return self.id or f"{self.source}->{self.target}"


class Schedule(Strict):
    """Cases started on a schedule (e.g. platinum clients visited monthly)."""

    id: Ident = Field(description="the schedule id")
    every: DurationStr | None = Field(default=None, description="calendar interval, e.g. 30d")
    cron: str | None = Field(default=None, description='cron expression, e.g. "0 9 1 * *" (or give every)')
    data: dict[str, Any] = Field(default_factory=dict, description="case data of each started case "
                                 "(declared fields)")

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule needs exactly one of 'every' or 'cron'")
        return self


class ProcessDefinition(Strict):
    """One version of a process."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, title="svcflow process definition")

    id: Ident = Field(description="the process id; the file is named after it")
    version: int = Field(ge=1, description="raised on each published change; running cases keep theirs")
    name: Text = Field(description="display name")
    description: Text | None = Field(default=None, description="what the process is for")
    lanes: list[Lane] = Field(description="roles and departments, customer-facing first (charts keep the order)")
    data: dict[str, FieldSpec] = Field(default_factory=dict, description="typed case data")
    parameters: dict[str, Any] = Field(default_factory=dict, description="editable defaults, readable as params.x")
    calendar: CalendarConfig | None = Field(default=None, description="business hours and holidays SLA "
                                            "targets count in (default: Mon-Fri office hours, Chinese holidays)")
    ladders: dict[str, list[EscalationLevel]] = Field(default_factory=dict, description="named escalation ladders")
    clocks: list[CaseClock] = Field(default_factory=list, description="case-level SLA clocks")
    case_priority: str | None = Field(default=None, description="CEL expression giving the case priority")
    nodes: list[Node] = Field(description="the steps, gateways, waits, start and ends")
    edges: list[Edge] = Field(description="sequence flows between nodes")
    schedules: list[Schedule] = Field(default_factory=list, description="cases started on a schedule")

    def node(self, node_id: str) -> NodeBase:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def lane_ids(self) -> set[str]:
        return {lane.id for lane in self.lanes}

    def ladder(self, escalation: str | list[EscalationLevel]) -> list[EscalationLevel]:
        if isinstance(escalation, str):
            return self.ladders.get(escalation, [])
        return escalation


def content_hash(text: str) -> str:
    """Identity of a definition version: running cases pin this hash, never the mutable file."""
    normalised = re.sub(r"[ \t]+\n", "\n", text.replace("\r\n", "\n"))
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    """JSON Schema for editors (yaml-language-server) — derived from the same models that load."""
    schema = ProcessDefinition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://svcflow.dev/schema/process-definition.json"
    return schema
