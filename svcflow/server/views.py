"""What the API returns and the inbox shows: cases, tasks with their forms, SLA colours.

Read-only: built from `Engine.case`, the store's task table and the definitions.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from engine.access import Gate, Principal
from engine.definition.model import FieldSpec, HumanTask, Text
from engine.run.runtime import Engine
from engine.run.state import InstanceState, Task
from engine.store import codec
from engine.time import sla

AMBER_AT = 75.0  # percent of the target used: the inbox turns a task amber, then red at 100


def text(value: Text | None, lang: str, fallback: str = "") -> str:
    if value is None:
        return fallback
    return value.zh if lang == "zh" else value.en


def sla_percent(engine: Engine, state: InstanceState, clock_key: str, now: datetime) -> float | None:
    clock = state.clocks.get(clock_key)
    if clock is None:
        return None
    return round(sla.percent(clock, now, engine.graph_for(state).calendar), 1)


def colour(percent: float | None) -> str:
    if percent is None:
        return "none"
    return "red" if percent >= 100 else "amber" if percent >= AMBER_AT else "green"


def form_fields(engine: Engine, state: InstanceState, task: Task) -> list[dict[str, Any]]:
    """The task's form as the definition declares it, pre-filled with the case's current values."""
    node = engine.graph_for(state).nodes[task.node]
    assert isinstance(node, HumanTask)
    return [field_json(f.id, f, state.data.get(f.id)) for f in node.form]


def field_json(name: str, spec: FieldSpec, value: Any) -> dict[str, Any]:
    return {"id": name, "type": spec.type, "required": spec.required, "choices": spec.choices,
            "label": spec.label.model_dump() if spec.label else {"zh": name, "en": name},
            "minimum": _bound(spec.type, spec.minimum), "maximum": _bound(spec.type, spec.maximum),
            "value": value if value is not None else spec.default}


def _bound(kind: str, bound: float | None) -> float | int | None:
    """An integer field's bound as an integer (min="1", not "1.0", in the form)."""
    return int(bound) if kind == "integer" and bound is not None and float(bound).is_integer() else bound


def task_json(engine: Engine, state: InstanceState, task: Task, now: datetime, *, with_form: bool = False,
              lang: str = "en") -> dict[str, Any]:
    graph = engine.graph_for(state)
    node = graph.nodes[task.node]
    percent = sla_percent(engine, state, f"task:{task.id}", now)
    result: dict[str, Any] = {
        "id": task.id, "case_id": state.case_id, "process_id": state.process_id,
        "process_name": text(graph.definition.name, lang), "node": task.node,
        "name": text(node.name, lang, task.node), "role": task.role, "escalation_roles": list(task.escalation_roles),
        "assignee": task.assignee, "status": task.status, "priority": task.priority,
        "escalation_level": task.escalation_level, "created_at": task.created_at, "due_at": task.due_at,
        "sla_percent": percent, "sla_colour": colour(percent),
    }
    if with_form:
        result["form"] = form_fields(engine, state, task)
    return result


def case_json(engine: Engine, case_id: str, now: datetime) -> dict[str, Any]:
    """A case as the API returns it: data, current steps, SLA clocks, escalations, history."""
    view = engine.case(case_id)
    state = view.state
    graph = engine.graph_for(state)
    clocks = [{"clock": key, "name": c.name, "target": c.target_text, "status": c.status,
               "percent": round(sla.percent(c, now, graph.calendar), 1), "due_at": c.due_at, "breached": c.breached}
              for key, c in state.clocks.items()]
    return {
        "id": state.case_id, "process_id": state.process_id, "process_version": graph.definition.version,
        "status": state.status, "outcome": state.outcome, "priority": state.priority,
        "escalation_level": state.escalation_level, "started_at": state.started_at, "ended_at": state.ended_at,
        "parent_case": state.parent_case, "children": view.children, "data": state.data,
        "current_steps": sorted({t.node for t in state.tokens.values()}),
        "open_tasks": [task_json(engine, state, t, now) for t in state.open_tasks()],
        "clocks": clocks,
        "escalations": engine.store.escalations(case_id),
        "history": [{"seq": e.seq, "at": e.at, "type": e.type, "node": e.node, "data": e.data} for e in view.events],
    }


def department_progress(engine: Engine, case_id: str, now: datetime, lang: str = "en") -> list[dict[str, Any]]:
    """Every step a department (lane) took or holds on this case and its sub-cases, for the front desk's
    one-stop answer to "where is my case": done steps with who and when, open ones with due time and SLA
    colour. Read from each case's log (tasks of ended cases are gone from their state) and open tasks.

    Rows are grouped by department in the order the definitions list their lanes, then by time."""
    rows: list[dict[str, Any]] = []
    order: dict[str, int] = {}
    pending = [case_id]
    while pending:
        current = pending.pop(0)
        view = engine.case(current)
        state = view.state
        graph = engine.graph_for(state)
        lanes = {lane.id: lane for lane in graph.definition.lanes}
        for lane_id in lanes:
            order.setdefault(lane_id, len(order))
        opened: dict[str, dict[str, Any]] = {}
        for entry in view.events:
            data = entry.data if isinstance(entry.data, dict) else {}
            task_id = data.get("task_id")
            if entry.type == "task_opened" and task_id:
                node = graph.nodes.get(entry.node or "")
                opened[task_id] = {"case_id": current, "task_id": task_id, "role": data.get("role", ""),
                                   "step": text(node.name, lang, entry.node or "") if node else entry.node,
                                   "status": "open", "who": None, "at": None, "due_at": None,
                                   "sla_percent": None, "sla_colour": "none"}
            elif entry.type in ("task_completed", "task_cancelled") and task_id in opened:
                opened[task_id].update(status="completed" if entry.type == "task_completed" else "cancelled",
                                       who=data.get("actor"), at=entry.at)
        for task in state.open_tasks():
            row = opened.get(task.id)
            if row is not None:
                shown = task_json(engine, state, task, now, lang=lang)
                row.update(role=task.role, who=task.assignee, due_at=task.due_at,
                           sla_percent=shown["sla_percent"], sla_colour=shown["sla_colour"])
        for row in opened.values():
            lane = lanes.get(row["role"])
            row["department"] = text(lane.name, lang, row["role"]) if lane is not None else row["role"]
            rows.append(row)
        pending.extend(view.children)
    far = datetime.max.replace(tzinfo=now.tzinfo)
    rows.sort(key=lambda r: (order.get(r["role"], len(order)), r["at"] or r["due_at"] or far))
    return rows


def tasks_for(engine: Engine, gate: Gate, who: Principal, now: datetime, *, scope: str = "mine",
              role: str | None = None, lang: str = "en") -> list[dict[str, Any]]:
    """`mine`: assigned to me; `roles`: open in any role I hold (or one of them); sorted by due time."""
    rows = engine.store.tasks(role=role) if role else engine.store.tasks()
    states: dict[str, InstanceState] = {}
    result = []
    for row in rows:
        if scope == "mine" and row["assignee"] != who.id:
            continue
        state = states.get(row["case_id"])
        if state is None:
            state = states[row["case_id"]] = engine.store.load_case(row["case_id"])[0]
        task = state.tasks.get(row["id"])
        if task is None or task.status != "open":
            continue
        if scope == "roles" and not (who.roles & {task.role, *task.escalation_roles}):
            continue
        result.append(task_json(engine, state, task, now, lang=lang))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    result.sort(key=lambda t: (t["due_at"] or far, t["created_at"]))
    return result


def jsonable(value: Any) -> Any:
    """Datetimes as ISO text, the rest as JSON has it."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_iso))


# datetimes and dataclasses go to `_iso` as they do in `jsonable`, not to orjson's own formats
_ANSWER_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def answer(value: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The API's JSON answer: the values `JSONResponse(jsonable(value))` sends, written by orjson in one
    pass (that path runs `json` three times). A value orjson would write differently (a non-finite
    float becomes null) or refuses (an integer beyond 64 bits) takes that path."""
    if codec.finite(value):
        try:
            body = orjson.dumps(value, default=_iso, option=_ANSWER_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            pass
        else:
            return Response(body, status_code=status_code, headers=headers, media_type="application/json")
    return JSONResponse(jsonable(value), status_code=status_code, headers=headers)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
