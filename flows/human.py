"""Human steps as paused (or suspended) flow runs with a Resume form built from the step's form.

The form is a pydantic `RunInput` generated from the definition, so the Prefect UI shows the
same bilingual fields, choices and required marks as `svcflow complete` checks. Prefect
validates the JSON shape; svcflow stays the judge: whatever comes in goes through exactly
`Engine.complete` (role check, form validation, refusal recorded), and a refusal leaves the
task open and pauses the run again. The store is the truth, so the marker input
`{"completed_externally": true}` only tells the run to read it again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import pydantic
from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema
from typing import Self

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.input.actions import (
    aread_flow_run_input, create_flow_run_input, ensure_flow_run_id, read_flow_run_input,
)
from prefect.input.run_input import Keyset, RunInputMetadata
from prefect.logging import get_run_logger
from prefect.states import Running, Scheduled, State

from engine.time import sla
from engine.definition.model import FieldSpec, FormField, HumanTask, ProcessDefinition, Text
from engine.errors import InputError, TaskRefused
from engine.messages import PROBLEM_SEPARATOR, bilingual_reason, both, split_hint
from engine.definition.graph import ProcessGraph
from engine.access import open_gate
from engine.run.runtime import Engine
from engine.run.state import InstanceState, Task
from flows.runtime import segment
from flows.settings import FlowSettings

log = logging.getLogger("svcflow.flows")

MARKER: dict[str, Any] = {"completed_externally": True}
WaitOutcome = Literal["completed", "refused", "refresh", "timeout"]
RESERVED = ("actor", "role", "completed_externally")


def bilingual(text: Text | None, fallback: str) -> str:
    """Titles always read "中文 / English" so both desks can use the same form."""
    if text is None:
        return fallback
    return text.zh if text.zh == text.en else f"{text.zh} / {text.en}"


class TaskInput(RunInput):
    """Base of the generated forms. Loading never rejects what the server accepted: the engine
    decides (and records) what is wrong, so a bad value must reach it instead of crashing the run."""

    _raw: dict[str, Any] = pydantic.PrivateAttr(default_factory=dict)
    task_id: ClassVar[str] = ""

    @property
    def submitted(self) -> dict[str, Any]:
        return dict(self._raw)

    @classmethod
    def _from_raw(cls, value: Any, keyset: Keyset, flow_run_id: UUID) -> Self:
        raw = dict(value) if isinstance(value, Mapping) else {}
        known = {k: v for k, v in raw.items() if k in cls.model_fields}
        instance = cls.model_construct(**known)
        instance._raw = raw
        instance._metadata = RunInputMetadata(key=keyset["response"], sender=None, receiver=flow_run_id)
        return instance

    @classmethod
    def load(cls, keyset: Keyset, flow_run_id: UUID | None = None) -> Self:
        flow_run_id = ensure_flow_run_id(flow_run_id)
        return cls._from_raw(read_flow_run_input(keyset["response"], flow_run_id=flow_run_id), keyset, flow_run_id)

    @classmethod
    async def aload(cls, keyset: Keyset, flow_run_id: UUID | None = None) -> Self:
        flow_run_id = ensure_flow_run_id(flow_run_id)
        value = await aread_flow_run_input(keyset["response"], flow_run_id=flow_run_id)
        return cls._from_raw(value, keyset, flow_run_id)


def _field_type(spec: FieldSpec) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The Python type of a form field, its constraints, and extra JSON-schema keys for the UI."""
    limits: dict[str, Any] = {}
    if spec.minimum is not None:
        limits["ge"] = spec.minimum
    if spec.maximum is not None:
        limits["le"] = spec.maximum
    kind = spec.type
    if kind == "enum":
        return Literal[tuple(spec.choices or ())], {}, {}
    if kind == "integer":
        return int, limits, {}
    if kind == "number":
        return float, limits, {}
    if kind == "boolean":
        return bool, {}, {}
    if kind == "date":
        return dt.date, {}, {}
    if kind == "datetime":
        return dt.datetime, {}, {}
    if kind == "list":
        return list[str], {}, {}
    return str, {}, {}  # string and text: Prefect's form has no documented multi-line hint


def _schema_extra(extra: dict[str, Any], drop_null_default: bool) -> Any:
    """A schema hook: add the UI hints, and drop `"default": null` — a form that pre-fills null
    would send it back, and the server's JSON-schema check refuses null for a typed field."""

    def hook(schema: dict[str, Any]) -> None:
        schema.update(extra)
        if drop_null_default and schema.get("default", 0) is None:
            schema.pop("default")

    return hook


def _choices(values: list[str]) -> Any:
    """A dropdown even for one choice (pydantic writes a lone Literal as `const`)."""

    def hook(schema: dict[str, Any]) -> None:
        schema.pop("const", None)
        schema["enum"] = list(values)
        schema["type"] = "string"

    return hook


def form_field(spec: FormField, current: Any = None) -> tuple[Any, Any]:
    """(annotation, FieldInfo) for create_model; optional fields take no null in the schema.

    `current` is what the case already holds for the field (a re-opened rework step, data
    captured at registration): the form starts from it instead of the definition's default."""
    annotation, limits, extra = _field_type(spec)
    default = spec.default if current is None else current
    if limits:  # on the inner type, so they survive the optional union and show as minimum/maximum
        annotation = Annotated[annotation, Field(**limits)]
    title = bilingual(spec.label, spec.id)
    description = bilingual(spec.description, "") or None
    if spec.required and default is None:
        return annotation, Field(..., title=title, description=description,
                                 json_schema_extra=_schema_extra(extra, False))
    if spec.required:  # prefilled, still required: the form shows the value and the engine checks it
        return annotation, Field(default=default, title=title, description=description,
                                 json_schema_extra=_schema_extra(extra, False))
    return annotation | SkipJsonSchema[None], Field(  # type: ignore[misc]
        default=default, title=title, description=description,
        json_schema_extra=_schema_extra(extra, True))


def task_input_model(graph: ProcessGraph, state: InstanceState, task: Task, *, now: dt.datetime,
                     zone: str = "Asia/Shanghai", refusal: str | None = None) -> type[TaskInput]:
    """The Resume form of one open task: its form fields, then who completes it and as which role."""
    node = graph.human_tasks[task.node]
    fields: dict[str, Any] = {}
    for spec in node.form:
        if spec.id in RESERVED:
            continue  # a form field named like ours would shadow the actor / role; the engine reports it
        fields[spec.id] = form_field(spec, _prefill(spec, state.data.get(spec.id)))
    roles = [task.role, *[r for r in task.escalation_roles if r != task.role]]
    role_type: Any = Literal[tuple(roles)]
    fields["actor"] = (str, Field(..., min_length=1, title="处理人 / Actor",
                                  description="完成此任务的用户 / the user completing this task"))
    fields["role"] = (role_type, Field(default=task.role, title="角色 / Role",
                                       description="以哪个角色完成 / the role you act in",
                                       json_schema_extra=_choices(roles)))
    fields["completed_externally"] = (bool, Field(
        default=False, title="已在别处完成(仅刷新) / Completed elsewhere (refresh only)",
        description="勾选后流程只重新读取案件状态 / only makes the run re-read the case"))
    _lead_with(fields, describe_task(graph, state, task, now=now, zone=zone, refusal=refusal))
    model_name = "".join(part.capitalize() for part in task.node.split("_")) + "Form"
    model: type[TaskInput] = pydantic.create_model(model_name, __base__=TaskInput, **fields)
    model.task_id = task.id
    model._description = describe_task(graph, state, task, now=now, zone=zone,
                                       refusal=refusal)
    return model


def _lead_with(fields: dict[str, Any], brief: str) -> None:
    """Prefect 3.8's Resume modal shrinks its own Markdown to nothing once the form is taller than the
    modal (the article scrolls, the form does not): the first field's description is drawn inside the
    form, which the modal scrolls instead, so the case summary leads it and is always seen."""
    first = next(iter(fields))
    annotation, info = fields[first]
    description = brief + ("\n\n---\n\n" + info.description if info.description else "")
    fields[first] = (annotation, FieldInfo.merge_field_infos(info, description=description))


def _prefill(spec: FieldSpec, value: Any) -> Any:
    """A case value the form can show as its default: of the field's JSON type, and one of the choices."""
    if value is None or (spec.type == "enum" and value not in (spec.choices or ())):
        return None
    if spec.type in ("date", "datetime"):
        return value if isinstance(value, str) else None
    if spec.type == "boolean":
        return value if isinstance(value, bool) else None
    if spec.type in ("integer", "number"):
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if spec.type == "list":
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
    return value if isinstance(value, str) else None


# -- the description shown above the form ------------------------------------------------------------
def business_span(seconds: int, day_seconds: int) -> str:
    """Business time as people say it: working days (d) of the calendar, hours, minutes."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, max(day_seconds, 1))
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes or not (days or hours) else ""]
    return " ".join(p for p in parts if p)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "是 / yes" if value else "否 / no"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def case_summary_rows(definition: ProcessDefinition, data: Mapping[str, Any], limit: int = 20) -> list[tuple[str, str]]:
    """The case data worth reading before acting: set values, labelled in both languages."""
    rows: list[tuple[str, str]] = []
    for name, value in data.items():
        spec = definition.data.get(name)
        if value in (None, "", [], {}) or value is False:
            continue
        if spec is not None and spec.type != "enum" and value == spec.default:
            continue  # untouched defaults (0 rounds, 0 yuan) are noise; choices like the tier are not
        rows.append((bilingual(spec.label if spec else None, name), _value(value)))
        if len(rows) >= limit:
            break
    return rows


def readable_refusal(reason: str, node: HumanTask) -> str:
    """The engine's refusal as the form's reader sees it: in Chinese and English (engine/messages.py,
    the inbox's catalogue too), each form problem led by its field's bilingual label, not its id."""
    labels = {spec.id: bilingual(spec.label, spec.id) for spec in node.form}
    invalid = re.match(r"^invalid input for [^:]*: (.*)$", split_hint(reason)[0], re.DOTALL)
    if invalid is None:  # who may act: wrong role, four-eyes, unknown user
        return bilingual_reason(reason)
    readable = []
    for problem in invalid.group(1).split(PROBLEM_SEPARATOR):
        field_problem = re.match(r"^field '([^']+)': (.*)$", problem, re.DOTALL)
        required = re.match(r"^field '([^']+)'(?: \([^)]*\))? is required$", problem)
        if field_problem:
            label = labels.get(field_problem.group(1), field_problem.group(1))
            readable.append(f"«{label}»: {bilingual_reason(field_problem.group(2))}")
        elif required:
            readable.append(f"«{labels.get(required.group(1), required.group(1))}»: {both('required')}")
        else:
            readable.append(bilingual_reason(problem))
    return PROBLEM_SEPARATOR.join(readable)


def describe_task(graph: ProcessGraph, state: InstanceState, task: Task, *, now: dt.datetime,
                  zone: str = "Asia/Shanghai", refusal: str | None = None) -> str:
    """A few lines for the Resume form: case, step, due time in business time, level, key data, the inbox.
    Kept short: it leads the first field (Prefect squeezes the modal's own Markdown); the rest is in the case artifact."""
    definition = graph.definition
    node = graph.human_tasks[task.node]
    tz = ZoneInfo(zone)
    lines = [f"### {node.label()}", ""]
    if refusal:  # the operator who just resumed sees why the run is waiting again, not "resumed"
        lines += [f"> **上次提交被拒绝,请修改后再提交 / Last submission refused — correct it and resume again:** "
                  f"{_value(readable_refusal(refusal, node))}", ""]
    lines += [
             f"**案件 / Case** `{state.case_id}` · {bilingual(definition.name, definition.id)} · "
             f"优先级 / priority **{task.priority}** · 升级级别 / escalation level **{task.escalation_level}**", ""]
    roles = f"`{task.role}`" + (f" (also / 另: {', '.join(f'`{r}`' for r in task.escalation_roles)})"
                                if task.escalation_roles else "")
    lines.append(f"**角色 / Role** {roles}" + (f" · **负责人 / Assignee** {task.assignee}" if task.assignee else ""))
    lines.append("")
    clock = state.clocks.get(f"task:{task.id}")
    calendar = graph.calendar
    if task.due_at is not None:
        due_local = task.due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        if task.due_at > now:
            left = f"{business_span(calendar.between(now, task.due_at), calendar.day_seconds)} 工作时间剩余 / business time left"
        else:
            left = f"已超时 / overdue by {business_span(calendar.between(task.due_at, now), calendar.day_seconds)} 工作时间 / business time"
        used = ""
        if clock is not None:
            used = f" · 已用 / used {sla.percent(clock, now, calendar):.0f} % of {clock.target_text}"
        lines.append(f"**截止 / Due** {due_local} ({zone}) — {left}{used}")
    else:
        lines.append("**截止 / Due** 无时限 / no time limit")
    if node.description is not None:
        lines += ["", f"**要做什么 / What to do** {node.description.zh} / {node.description.en}"]
    rows = case_summary_rows(definition, state.data, limit=6)
    if rows:  # a few lines only: the whole case is in the case artifact and the inbox
        lines += ["", "**案件摘要 / Case summary** " + " · ".join(f"{k}: **{v}**" for k, v in rows)]
    lines += ["", f"> 员工请在任务箱(`svcflow server` 的 /inbox)办理;处理人须持有该角色。无效输入会保持任务开放。  \n"
              f"Staff work in the inbox (`svcflow server`, /inbox); same checks as `svcflow complete {task.id}`, "
              "invalid input keeps the task open."]
    return "\n".join(lines) + "\n"


def pause_timeout(task: Task, now: dt.datetime, settings: FlowSettings) -> int:
    """Finite, as Prefect requires: until the task's due time plus a margin, within the bounds."""
    if task.due_at is None:
        wanted = float(settings.pause_default_seconds)
    else:
        wanted = (task.due_at - now).total_seconds() + settings.pause_margin_seconds
    return int(min(settings.pause_max_seconds, max(settings.pause_min_seconds, wanted)))


def waiting_mode(settings: FlowSettings) -> str:
    """Suspend (frees the worker) only where Prefect allows it: a deployment's top-level run."""
    if settings.human_wait != "auto":
        return settings.human_wait
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is not None and run.deployment_id is not None and run.parent_task_run_id is None:
        return "suspend"
    return "pause"


def slug(text: str) -> str:
    """Prefect input keys (built from the pause key) allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def last_refusal(engine: Engine, case_id: str, task_id: str) -> str | None:
    """Why the last input for this task was refused (the engine's audit record), if it ever was."""
    reasons = [e.data.get("reason") for e in engine.store.events(case_id, types=["refused"])
               if e.data.get("task_id") == task_id]
    return str(reasons[-1]) if reasons and reasons[-1] else None


def waiting_message(node: HumanTask, task: Task, refusal: str | None) -> str:
    """The waiting run's state message: what it waits for, or — after a refusal — why it waits again."""
    if refusal:
        return f"{both('refused')}: {readable_refusal(refusal, node)}"[:500]
    return f"等待 / Waiting for: {node.label()} ({task.role})"


_STATE_MESSAGE: ContextVar[str | None] = ContextVar("svcflow_state_message", default=None)


@contextmanager
def state_message(message: str) -> Iterator[None]:
    """Give the Paused / Suspended state that pause_flow_run / suspend_flow_run propose a message.

    Prefect's functions take none, and the UI shows only "Suspended" (or "Flow run resumed" after
    a refused submission); they build the state with `Paused` / `Suspended` from their module, so
    those two names are wrapped once to add the message set here (nothing else changes)."""
    _install_state_messages()
    token = _STATE_MESSAGE.set(message)
    try:
        yield
    finally:
        _STATE_MESSAGE.reset(token)


def _install_state_messages() -> None:
    import prefect.flow_runs as flow_runs

    for name in ("Paused", "Suspended"):
        factory = getattr(flow_runs, name)
        if getattr(factory, "_svcflow_messages", False):
            continue

        def make(*args: Any, _factory: Any = factory, **kwargs: Any) -> Any:
            message = _STATE_MESSAGE.get()
            if message is not None and "message" not in kwargs:
                kwargs["message"] = message
            return _factory(*args, **kwargs)

        make._svcflow_messages = True  # type: ignore[attr-defined]
        setattr(flow_runs, name, make)


def _refused_key(key: str) -> str:
    return f"{key}-svcflow-refused"


def wait_for_task(engine: Engine, case_id: str, task_id: str, *, settings: FlowSettings, mode: str,
                  attempt: int = 0) -> WaitOutcome:
    """Wait for the Resume input of one task and hand it to `Engine.complete`.

    The pause key is the task and the number of waits for it so far in this run. A suspended
    run that Prefect restarts from the top walks the same keys again: Prefect hands back the
    input each used key was resumed with, so the newest submission is read under the key its
    form was saved under. Inputs already refused are marked on the run (`<key>-svcflow-refused`)
    and skipped on such a replay, so a refusal is neither recorded twice nor re-applied.
    """
    state, _ = engine.store.load_case(case_id)
    task = state.tasks[task_id]
    graph = engine.graph_for(state)
    now = engine.clock.now()
    key = f"{slug(task_id)}-{attempt}"
    logger = get_run_logger()
    run_id = _current_run_id()
    if run_id is not None and read_flow_run_input(_refused_key(key), flow_run_id=run_id) is not None:
        return "refused"  # replaying a wait whose input was refused before the run restarted
    refusal = last_refusal(engine, case_id, task_id)
    model = task_input_model(graph, state, task, now=now, zone=settings.display_timezone, refusal=refusal)
    timeout = pause_timeout(task, now, settings)
    node = graph.nodes[task.node]
    assert isinstance(node, HumanTask)
    message = waiting_message(node, task, refusal)
    try:
        with state_message(message):
            if mode == "suspend":
                received = suspend_flow_run(wait_for_input=model, timeout=timeout, key=key)
            else:
                received = pause_flow_run(wait_for_input=model, timeout=timeout,  # type: ignore[call-overload]
                                          poll_interval=settings.pause_poll_seconds, key=key)
    except FlowPauseTimeout:
        logger.warning("task %s was not completed through this run within %s s; the sweep keeps watching "
                       "its deadline and running the case again continues it", task_id, timeout)
        return "timeout"
    raw = received.submitted
    if raw.get("completed_externally"):
        return "refresh"
    actor = str(raw.get("actor") or "")
    role = str(raw.get("role") or task.role)
    data = {k: v for k, v in raw.items() if k not in RESERVED and v is not None}  # the engine checks the rest
    gate = open_gate(engine, settings)  # the typed actor must be a known, active user holding the role
    try:
        with segment(case_id):
            gate.complete(gate.principal(actor), task_id, data, role=role)
    except (InputError, TaskRefused) as exc:
        logger.warning("input for task %s refused, the task stays open and the run waits again: %s", task_id, exc)
        if run_id is not None:
            create_flow_run_input(_refused_key(key), {"reason": str(exc)}, flow_run_id=run_id)
        return "refused"
    logger.info("task %s completed by %s as %s", task_id, actor, role)
    return "completed"


def _current_run_id() -> UUID | None:
    context = FlowRunContext.get()
    return context.flow_run.id if context is not None and context.flow_run is not None else None


# -- continuing a waiting run from outside ------------------------------------------------------------
def _paused_runs(client: Any, tag: str) -> list[FlowRun]:
    return list(client.read_flow_runs(flow_run_filter=FlowRunFilter(
        tags=FlowRunFilterTags(all_=[tag]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
    ), limit=20))


def _resume(client: Any, run: FlowRun) -> bool:
    """Resume with the marker; when the form's required fields make Prefect refuse the marker, write
    the marker as the run's input and move the run on ourselves — the store already holds the
    completion, so there is nothing left for the form to check."""
    result = client.resume_flow_run(run.id, run_input=MARKER)
    if result.status == SetStateStatus.ACCEPT:
        return True
    state = run.state
    keyset = state.state_details.run_input_keyset if state is not None else None
    if not keyset:
        log.warning("cannot resume flow run %s: %s", run.name, getattr(result.details, "reason", result.status))
        return False
    client.create_flow_run_input(run.id, key=keyset["response"], value=json.dumps(MARKER))
    target: State[Any] = (Scheduled(name="Resuming", scheduled_time=dt.datetime.now(dt.UTC))
              if state is not None and state.state_details.pause_reschedule else Running())
    forced = client.set_flow_run_state(run.id, state=target, force=True)
    return bool(forced.status == SetStateStatus.ACCEPT)


def _resume_tagged(tag: str) -> int:
    resumed = 0
    try:
        with get_client(sync_client=True) as client:
            for run in _paused_runs(client, tag):
                if _resume(client, run):
                    resumed += 1
    except Exception as exc:  # the store has the change; a run we cannot reach is not the caller's failure
        log.warning("could not resume the flow run waiting on %s: %s", tag, exc)
    return resumed


def resume_run_for_task(task_id: str) -> bool:
    """After `svcflow complete` stored a completion: let the run paused on that task re-read the store."""
    return _resume_tagged(f"task:{task_id}") > 0


def resume_runs_for_case(case_id: str) -> int:
    """Wake whatever run of the case is paused (the sweep moved the case, or a task was closed)."""
    return _resume_tagged(f"case:{case_id}")


__all__ = [
    "MARKER", "TaskInput", "describe_task", "pause_timeout", "resume_run_for_task", "resume_runs_for_case",
    "task_input_model", "wait_for_task", "waiting_mode",
]
