"""The HTTP API for systems around the desk (hotline/IVR, CRM, portal) and scripts.

Every state change goes through `Gate` (engine/access.py) and then `Engine`, so the API refuses
and records exactly what the CLI does; the authenticated principal is the actor in the log.
POSTs that create or complete things honour an `Idempotency-Key` header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from engine.access import Principal
from engine.errors import AccessDenied
from engine.store.idempotency import request_hash
from svcflow.server.context import Context
from svcflow.server.views import case_json, department_progress, jsonable, task_json, tasks_for


class StartCase(BaseModel):
    process: str = Field(description="process id, e.g. complaint_handling")
    data: dict[str, Any] = Field(default_factory=dict, description="case data (checked against the definition)")


class Complete(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict, description="form values")
    role: str | None = Field(default=None, description="role acted in (default: one you hold that the task accepts)")


class Assign(BaseModel):
    assignee: str
    role: str | None = None


class Message(BaseModel):
    message: str = Field(description="message name, e.g. customer_reply")
    payload: dict[str, Any] = Field(default_factory=dict)


class Update(BaseModel):
    data: dict[str, Any]


class Cancel(BaseModel):
    reason: str = Field(min_length=1)


def router(ctx: Context) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["api"])

    async def principal(request: Request) -> Principal:
        """In the event loop, not a worker thread: one indexed lookup, cheaper than a thread hop."""
        return ctx.authenticate(request, api=True)

    def once(request: Request, who: Principal, key: str | None, body: BaseModel, status: int,
             work: Callable[[], Any]) -> JSONResponse:
        """Run `work` once per Idempotency-Key; a retry gets the stored answer."""
        if not key:
            return JSONResponse(jsonable(work()), status_code=status)
        fingerprint = request_hash(request.method, request.url.path, body.model_dump_json().encode("utf-8"))
        stored = ctx.keys.claim(who.id, key, fingerprint, ctx.engine.clock.now())
        if stored is not None:
            return JSONResponse(stored.body, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"})
        try:
            answer = jsonable(work())
        except BaseException:
            ctx.keys.release(who.id, key)
            raise
        ctx.keys.answer(who.id, key, status, answer)
        return JSONResponse(answer, status_code=status)

    @api.get("/me")
    def me(who: Principal = Depends(principal)) -> dict[str, Any]:
        """Who the server thinks you are, and your roles."""
        return {"id": who.id, "kind": who.kind, "name": who.display_name, "roles": sorted(who.roles)}

    @api.post("/cases", status_code=201)
    def start_case(request: Request, body: StartCase, who: Principal = Depends(principal),
                   idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        """Open a case; with an Idempotency-Key a retried request returns the first case."""

        def work() -> dict[str, Any]:
            case_id = ctx.gate.start(who, body.process, body.data)
            return case_json(ctx.engine, case_id, ctx.engine.clock.now())

        return once(request, who, idempotency_key, body, 201, work)

    @api.get("/cases")
    def list_cases(process: str | None = None, status: str | None = None, parent: str | None = None,
                   limit: int = Query(default=200, ge=1, le=1000),
                   who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        """Cases, newest last, filtered by process, status or parent case."""
        return jsonable(ctx.engine.store.cases(process_id=process, status=status, parent=parent, limit=limit))

    @api.get("/cases/{case_id}")
    def read_case(case_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        """A case: data, current steps, open tasks, SLA clocks, escalations, history, and each department's
        progress on it and its sub-cases (the front desk's one-stop answer)."""
        now = ctx.engine.clock.now()
        return jsonable({**case_json(ctx.engine, case_id, now),
                         "departments": department_progress(ctx.engine, case_id, now)})

    @api.get("/tasks")
    def list_tasks(scope: str = Query(default="roles", pattern="^(mine|roles)$"), role: str | None = None,
                   who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        """Open tasks: `scope=mine` assigned to you, `scope=roles` of your roles (or `role=` one of them)."""
        if role and role not in who.roles:
            raise AccessDenied(f"{who.id} does not hold role '{role}'", hint="list the tasks of a role you hold")
        return jsonable(tasks_for(ctx.engine, ctx.gate, who, ctx.engine.clock.now(), scope=scope, role=role))

    @api.get("/tasks/{task_id}")
    def read_task(task_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        """A task with its form (labels in both languages, choices, required marks, current values)."""
        state, _, _ = ctx.engine.store.load_case_of_task(task_id)
        return jsonable(task_json(ctx.engine, state, state.tasks[task_id], ctx.engine.clock.now(), with_form=True))

    @api.post("/tasks/{task_id}/complete")
    def complete_task(request: Request, task_id: str, body: Complete, who: Principal = Depends(principal),
                      idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        """Complete a task with form data, validated by the same code as `svcflow complete`."""

        def work() -> dict[str, Any]:
            state = ctx.gate.complete(who, task_id, body.data, role=body.role)
            return {"task_id": task_id, "case_id": state.case_id, "status": state.status,
                    "current_steps": sorted({t.node for t in state.tokens.values()})}

        return once(request, who, idempotency_key, body, 200, work)

    @api.post("/tasks/{task_id}/claim")
    def claim_task(task_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Take a task of one of your roles: you become its assignee."""
        state = ctx.gate.assign(who, task_id, who.id)
        return {"task_id": task_id, "case_id": state.case_id, "assignee": who.id}

    @api.post("/tasks/{task_id}/assign")
    def assign_task(task_id: str, body: Assign, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Give a task to a person holding its role (supervisors)."""
        state = ctx.gate.assign(who, task_id, body.assignee, role=body.role)
        return {"task_id": task_id, "case_id": state.case_id, "assignee": state.tasks[task_id].assignee}

    @api.post("/cases/{case_id}/messages")
    def send_message(request: Request, case_id: str, body: Message, who: Principal = Depends(principal),
                     idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        """Deliver a message the case waits for (e.g. customer_reply)."""

        def work() -> dict[str, Any]:
            state = ctx.gate.message(who, case_id, body.message, body.payload)
            return {"case_id": case_id, "status": state.status,
                    "current_steps": sorted({t.node for t in state.tokens.values()})}

        return once(request, who, idempotency_key, body, 200, work)

    @api.post("/cases/{case_id}/data")
    def update_case(case_id: str, body: Update, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Change case data (reclassify): SLA targets are re-chosen, start times kept."""
        state = ctx.gate.update(who, case_id, body.data)
        return jsonable({"case_id": case_id, "status": state.status, "priority": state.priority,
                         "data": state.data})

    @api.post("/cases/{case_id}/cancel")
    def cancel_case(case_id: str, body: Cancel, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Cancel a case (supervisor roles)."""
        state = ctx.gate.cancel(who, case_id, body.reason)
        return {"case_id": case_id, "status": state.status}

    return api
