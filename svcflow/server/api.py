"""The HTTP API for systems around the desk (hotline/IVR, CRM, portal) and scripts.

Every state change goes through `Gate` (engine/access.py) and then `Engine`, so the API refuses
and records exactly what the CLI does; the authenticated principal is the actor in the log.
POSTs that create or complete things honour an `Idempotency-Key` header.

The endpoints are coroutines: the caller is authenticated on the event loop (a cached token, one
indexed lookup otherwise), and each engine call runs on the server's engine threads (`ctx.run`),
answered by `answer` (orjson). The completion, the busiest request, also skips FastAPI's per-request
machinery (`json_body`, hot_path.py). Measured in one run on a loaded machine, the CPU the HTTP layer
adds to a completion fell from ~1.25 ms to ~0.75 ms (bench/README.md, `bench_api.py`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from engine.access import Principal
from engine.errors import AccessDenied
from engine.store import codec
from engine.store.idempotency import request_hash
from svcflow.server.context import Context
from svcflow.server.views import answer, case_json, department_progress, jsonable, task_json, tasks_for


class StartCase(BaseModel):
    process: str = Field(description="process id, e.g. complaint_handling")
    data: dict[str, Any] = Field(default_factory=dict, description="case data (checked against the definition)")


class Complete(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict, description="form values")
    role: str | None = Field(default=None, description="role acted in (default: one you hold that the task accepts)")


M = TypeVar("M", bound=BaseModel)
TAGS: list[str | Enum] = ["api"]


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body validated by `model` (its validator is built once, with the class), with
    the located 422s FastAPI gives for a body parameter (same JSON reading, same messages). For the
    completion path, where FastAPI's per-request parameter solving cost more CPU than the engine's
    own check of the form."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        value = codec.loads(raw)
    except ValueError as exc:  # not JSON (json.JSONDecodeError), or not UTF-8 text (UnicodeDecodeError)
        where, why = (exc.pos, exc.msg) if isinstance(exc, json.JSONDecodeError) else (0, str(exc))
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", where), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": why}}]) from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False)], body=value) from None


def documented(body: type[BaseModel], path: list[str], headers: list[str]) -> dict[str, Any]:
    """OpenAPI for an endpoint that reads its body, path and headers itself (`json_body`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body.model_json_schema()}}},
            "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in path]
            + [{"name": h, "in": "header", "required": False, "schema": {"type": "string"}} for h in headers]}


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


def install(app: FastAPI, ctx: Context) -> Callable[[Request], Awaitable[Response]]:
    """The API's routes, on the app itself (FastAPI matches an included router's routes through an extra
    layer per request); returns the completion endpoint for the server's hot path (hot_path.py)."""

    async def principal(request: Request) -> Principal:
        """In the event loop, not on an engine thread: a cached token (one indexed lookup when not),
        cheaper than a thread hop."""
        return ctx.authenticate(request, api=True)

    def once(request: Request, who: Principal, key: str | None, body: BaseModel, status: int,
             work: Callable[[], Any]) -> Response:
        """Run `work` once per Idempotency-Key; a retry gets the stored answer. On an engine thread."""
        if not key:
            return answer(work(), status)
        fingerprint = request_hash(request.method, request.url.path, body.model_dump_json().encode("utf-8"))
        stored = ctx.keys.claim(who.id, key, fingerprint, ctx.engine.clock.now())
        if stored is not None:
            return answer(stored.body, stored.status_code, headers={"Idempotent-Replayed": "true"})
        try:
            result = jsonable(work())
        except BaseException:
            ctx.keys.release(who.id, key)
            raise
        ctx.keys.answer(who.id, key, status, result)
        return answer(result, status)

    @app.get("/api/me", tags=TAGS)
    async def me(who: Principal = Depends(principal)) -> dict[str, Any]:
        """Who the server thinks you are, and your roles."""
        return {"id": who.id, "kind": who.kind, "name": who.display_name, "roles": sorted(who.roles)}

    @app.post("/api/cases", tags=TAGS, status_code=201)
    async def start_case(request: Request, body: StartCase, who: Principal = Depends(principal),
                         idempotency_key: str | None = Header(default=None)) -> Response:
        """Open a case; with an Idempotency-Key a retried request returns the first case."""

        def work() -> dict[str, Any]:
            case_id = ctx.gate.start(who, body.process, body.data)
            return case_json(ctx.engine, case_id, ctx.engine.clock.now())

        return await ctx.run(once, request, who, idempotency_key, body, 201, work)

    @app.get("/api/cases", tags=TAGS)
    async def list_cases(process: str | None = None, status: str | None = None, parent: str | None = None,
                         limit: int = Query(default=200, ge=1, le=1000),
                         who: Principal = Depends(principal)) -> Response:
        """Cases, newest last, filtered by process, status or parent case."""

        def work() -> Response:
            return answer(ctx.engine.store.cases(process_id=process, status=status, parent=parent, limit=limit))

        return await ctx.run(work)

    @app.get("/api/cases/{case_id}", tags=TAGS)
    async def read_case(case_id: str, who: Principal = Depends(principal)) -> Response:
        """A case: data, current steps, open tasks, SLA clocks, escalations, history, and each department's
        progress on it and its sub-cases (the front desk's one-stop answer)."""

        def work() -> Response:
            now = ctx.engine.clock.now()
            return answer({**case_json(ctx.engine, case_id, now),
                           "departments": department_progress(ctx.engine, case_id, now)})

        return await ctx.run(work)

    @app.get("/api/tasks", tags=TAGS)
    async def list_tasks(scope: str = Query(default="roles", pattern="^(mine|roles)$"), role: str | None = None,
                         who: Principal = Depends(principal)) -> Response:
        """Open tasks: `scope=mine` assigned to you, `scope=roles` of your roles (or `role=` one of them)."""
        if role and role not in who.roles:
            raise AccessDenied(f"{who.id} does not hold role '{role}'", hint="list the tasks of a role you hold")

        def work() -> Response:
            return answer(tasks_for(ctx.engine, ctx.gate, who, ctx.engine.clock.now(), scope=scope, role=role))

        return await ctx.run(work)

    @app.get("/api/tasks/{task_id}", tags=TAGS)
    async def read_task(task_id: str, who: Principal = Depends(principal)) -> Response:
        """A task with its form (labels in both languages, choices, required marks, current values)."""

        def work() -> Response:
            state, _, _ = ctx.engine.store.load_case_of_task(task_id)
            return answer(task_json(ctx.engine, state, state.tasks[task_id], ctx.engine.clock.now(), with_form=True))

        return await ctx.run(work)

    @app.post("/api/tasks/{task_id}/complete", tags=TAGS,
              openapi_extra=documented(Complete, ["task_id"], ["idempotency-key"]))
    async def complete_task(request: Request) -> Response:
        """Complete a task with form data, validated by the same code as `svcflow complete`."""
        task_id: str = request.path_params["task_id"]
        who = ctx.authenticate(request, api=True)  # before the body: a stranger gets 401, not 422
        body = await json_body(request, Complete)
        idempotency_key = request.headers.get("idempotency-key")

        def work() -> dict[str, Any]:
            state = ctx.gate.complete(who, task_id, body.data, role=body.role)
            return {"task_id": task_id, "case_id": state.case_id, "status": state.status,
                    "current_steps": sorted({t.node for t in state.tokens.values()})}

        return await ctx.run(once, request, who, idempotency_key, body, 200, work)

    @app.post("/api/tasks/{task_id}/claim", tags=TAGS)
    async def claim_task(task_id: str, who: Principal = Depends(principal)) -> Response:
        """Take a task of one of your roles: you become its assignee."""

        def work() -> Response:
            state = ctx.gate.assign(who, task_id, who.id)
            return answer({"task_id": task_id, "case_id": state.case_id, "assignee": who.id})

        return await ctx.run(work)

    @app.post("/api/tasks/{task_id}/assign", tags=TAGS)
    async def assign_task(task_id: str, body: Assign, who: Principal = Depends(principal)) -> Response:
        """Give a task to a person holding its role (supervisors)."""

        def work() -> Response:
            state = ctx.gate.assign(who, task_id, body.assignee, role=body.role)
            return answer({"task_id": task_id, "case_id": state.case_id, "assignee": state.tasks[task_id].assignee})

        return await ctx.run(work)

    @app.post("/api/cases/{case_id}/messages", tags=TAGS)
    async def send_message(request: Request, case_id: str, body: Message, who: Principal = Depends(principal),
                           idempotency_key: str | None = Header(default=None)) -> Response:
        """Deliver a message the case waits for (e.g. customer_reply)."""

        def work() -> dict[str, Any]:
            state = ctx.gate.message(who, case_id, body.message, body.payload)
            return {"case_id": case_id, "status": state.status,
                    "current_steps": sorted({t.node for t in state.tokens.values()})}

        return await ctx.run(once, request, who, idempotency_key, body, 200, work)

    @app.post("/api/cases/{case_id}/data", tags=TAGS)
    async def update_case(case_id: str, body: Update, who: Principal = Depends(principal)) -> Response:
        """Change case data (reclassify): SLA targets are re-chosen, start times kept."""

        def work() -> Response:
            state = ctx.gate.update(who, case_id, body.data)
            return answer({"case_id": case_id, "status": state.status, "priority": state.priority,
                           "data": state.data})

        return await ctx.run(work)

    @app.post("/api/cases/{case_id}/cancel", tags=TAGS)
    async def cancel_case(case_id: str, body: Cancel, who: Principal = Depends(principal)) -> Response:
        """Cancel a case (supervisor roles)."""

        def work() -> Response:
            state = ctx.gate.cancel(who, case_id, body.reason)
            return answer({"case_id": case_id, "status": state.status})

        return await ctx.run(work)

    return complete_task
