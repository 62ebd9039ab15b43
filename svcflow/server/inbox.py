"""The staff inbox: server-rendered pages with plain forms (Jinja2, no front-end build).

Log in, my tasks and my roles' tasks by due time with SLA colours, a task's generated form next
to its case and flowchart, complete → the next task; a case search and a one-stop status page.
Forms post back with a CSRF token; completions go through `Gate` like the API and the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from engine.access import Principal, refusal_status
from engine.definition.model import FieldSpec
from engine.errors import InputError, SvcflowError, TaskRefused
from engine.settings import get_settings
from svcflow.server.auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, csrf_ok, new_csrf
from svcflow.server.context import Context
from svcflow.server.i18n import LANGS, refusal, words
from svcflow.server.views import (
    case_json, department_progress, field_json, form_fields, task_json, tasks_for, text,
)

LANG_COOKIE = "svcflow_lang"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def lang_of(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "zh")
    return lang if lang in LANGS else "zh"


def page(request: Request, name: str, code: int = 200, **values: Any) -> HTMLResponse:
    """Render a template with the words of the chosen language and a CSRF token for its forms."""
    lang = lang_of(request)
    csrf = request.cookies.get(CSRF_COOKIE) or new_csrf()
    zone = ZoneInfo(get_settings().display_timezone)
    response = templates.TemplateResponse(request, name, {
        "t": words(lang), "lang": lang, "csrf": csrf, "path": request.url.path,
        "when": lambda v: v.astimezone(zone).strftime("%Y-%m-%d %H:%M") if v is not None else "",
        "label": lambda value, fallback="": text(value, lang, fallback),
        "refusal": lambda message: refusal(str(message), lang), **values}, status_code=code)
    if CSRF_COOKIE not in request.cookies:
        response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
    return response


def error_page(request: Request, status: int, exc: SvcflowError) -> HTMLResponse:
    return page(request, "error.html", status, message=exc.message, hint=exc.hint)


def _form_values(form: dict[str, Any], specs: list[dict[str, Any]]) -> dict[str, Any]:
    """Form text to values for check_fields: empty inputs are left out (not set to "")."""
    values: dict[str, Any] = {}
    for spec in specs:
        raw = form.get(spec["id"])
        if raw is None or str(raw).strip() == "":
            continue
        values[spec["id"]] = str(raw)
    return values


def router(ctx: Context) -> APIRouter:
    inbox = APIRouter(prefix="/inbox", include_in_schema=False)
    engine, gate = ctx.engine, ctx.gate

    async def posted(request: Request) -> dict[str, Any]:
        form = dict(await request.form())
        if not csrf_ok(request, str(form.get("csrf") or "")):
            raise TaskRefused("the form has expired or did not come from this site (CSRF check)",
                              hint="open the page again and resubmit")
        return form

    def signed_in(request: Request) -> Principal:
        return ctx.authenticate(request)

    @inbox.get("/login")
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html")

    @inbox.post("/login")
    async def login(request: Request) -> Response:
        form = await posted(request)
        user_id = str(form.get("user") or "")
        user = await ctx.run(gate.directory.check_password, user_id, str(form.get("password") or ""))
        if user is None:
            gate.directory.audit("login_failed", user_id, {"client": request.client.host if request.client else "?"},
                                 engine.clock.now())
            return page(request, "login.html", 401, failed=True, user=user_id)
        response = RedirectResponse("/inbox", status_code=303)
        response.set_cookie(SESSION_COOKIE, ctx.sessions.issue(user.id), max_age=SESSION_SECONDS, httponly=True,
                            samesite="lax")
        return response

    @inbox.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request)
        response = RedirectResponse("/inbox/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @inbox.get("/lang/{lang}")
    def switch_language(request: Request, lang: str, back: str = "/inbox") -> Response:
        target = back if back.startswith("/inbox") else "/inbox"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(LANG_COOKIE, lang if lang in LANGS else "zh", max_age=365 * 86400, samesite="lax")
        return response

    @inbox.get("")
    def home(request: Request, done: str | None = None) -> HTMLResponse:
        who = signed_in(request)
        now, lang = engine.clock.now(), lang_of(request)
        mine = tasks_for(engine, gate, who, now, scope="mine", lang=lang)
        roles = [t for t in tasks_for(engine, gate, who, now, scope="roles", lang=lang) if t["assignee"] != who.id]
        return page(request, "inbox.html", who=who, mine=mine, roles=roles, done=done)

    @inbox.get("/tasks/{task_id}")
    def task_page(request: Request, task_id: str, done: str | None = None) -> HTMLResponse:
        who = signed_in(request)
        return _task_page(request, who, task_id, done=done)

    def _task_page(request: Request, who: Principal, task_id: str, status: int = 200,
                   error: SvcflowError | None = None, submitted: dict[str, Any] | None = None,
                   done: str | None = None) -> HTMLResponse:
        state, _, _ = engine.store.load_case_of_task(task_id)
        now, lang = engine.clock.now(), lang_of(request)
        task = state.tasks[task_id]
        fields = form_fields(engine, state, task)
        for f in fields:
            if submitted is not None and f["id"] in submitted:
                f["value"] = submitted[f["id"]]
        return page(request, "task.html", status, who=who, task=task_json(engine, state, task, now, lang=lang),
                    fields=fields, case=case_json(engine, state.case_id, now), may_act=gate.may_act_on(who, task),
                    svg=_flowchart(state.case_id), error=error, process=engine.graph_for(state).definition,
                    done=done)

    @inbox.post("/tasks/{task_id}")
    async def complete(request: Request, task_id: str) -> Response:
        who = signed_in(request)
        form = await posted(request)
        state, _, _ = engine.store.load_case_of_task(task_id)
        values = _form_values(form, form_fields(engine, state, state.tasks[task_id]))
        try:
            after = await ctx.run(gate.complete, who, task_id, values)
        except (InputError, TaskRefused) as exc:
            return _task_page(request, who, task_id, refusal_status(exc), exc, values)
        return RedirectResponse(_next_task(who, after.case_id, task_id), status_code=303)

    def _next_task(who: Principal, case_id: str, done: str) -> str:
        """The next thing to do: this case's next task for me, else the top of my inbox."""
        state, _ = engine.store.load_case(case_id)
        for task in state.open_tasks():
            if gate.may_act_on(who, task):
                return f"/inbox/tasks/{quote(task.id)}?done={quote(done)}"
        return f"/inbox?done={quote(done)}"

    @inbox.post("/tasks/{task_id}/claim")
    async def claim(request: Request, task_id: str) -> Response:
        who = signed_in(request)
        await posted(request)
        await ctx.run(gate.assign, who, task_id, who.id)
        return RedirectResponse(f"/inbox/tasks/{quote(task_id)}", status_code=303)

    @inbox.get("/new")
    def new_case_form(request: Request, process: str | None = None) -> HTMLResponse:
        who = signed_in(request)
        allowed = _startable(who)
        chosen = process if process in allowed else (allowed[0] if allowed else None)
        fields = _start_fields(chosen) if chosen else []
        return page(request, "new.html", who=who, processes=[engine.library.get(p).definition for p in allowed],
                    chosen=chosen, fields=fields)

    @inbox.post("/new")
    async def new_case(request: Request) -> Response:
        who = signed_in(request)
        form = await posted(request)
        process = str(form.get("process") or "")
        values = _form_values(form, _start_fields(process)) if process in engine.library.latest else {}
        case_id = await ctx.run(gate.start, who, process, values)
        state, _ = engine.store.load_case(case_id)
        for task in state.open_tasks():  # the front desk goes straight on to register it
            if gate.may_act_on(who, task):
                return RedirectResponse(f"/inbox/tasks/{quote(task.id)}", status_code=303)
        return RedirectResponse(f"/inbox/cases/{quote(case_id)}", status_code=303)

    def _startable(who: Principal) -> list[str]:
        return [p for p in engine.library.process_ids()
                if who.roles & (engine.library.get(p).definition.lane_ids() | gate.supervisor_roles)]

    def _start_fields(process: str) -> list[dict[str, Any]]:
        """A new case asks for the data the definition requires; the first task's form asks the rest."""
        specs: dict[str, FieldSpec] = engine.library.get(process).definition.data
        return [field_json(name, spec, None) for name, spec in specs.items() if spec.required]

    @inbox.get("/cases")
    def search(request: Request, q: str = "", status: str = "", process: str = "") -> HTMLResponse:
        who = signed_in(request)
        rows = engine.store.cases(process_id=process or None, status=status or None, limit=500)
        if q.strip():
            needle = q.strip().lower()
            found = []
            for row in rows:
                if needle in row["id"].lower():
                    found.append(row)
                    continue
                data = engine.store.load_case(row["id"])[0].data
                if any(needle in str(data.get(k, "")).lower() for k in ("customer_name", "customer_id", "contact_phone")):
                    found.append(row)
            rows = found
        rows = list(reversed(rows))[:200]
        return page(request, "cases.html", who=who, rows=rows, q=q, status=status, process=process,
                    processes=engine.library.process_ids())

    @inbox.get("/cases/{case_id}")
    def case_page(request: Request, case_id: str) -> HTMLResponse:
        who = signed_in(request)
        now, lang = engine.clock.now(), lang_of(request)
        case = case_json(engine, case_id, now)
        children = [case_json(engine, child, now) for child in case["children"]]
        state, _ = engine.store.load_case(case_id)
        return page(request, "case.html", who=who, case=case, children=children, svg=_flowchart(case_id),
                    departments=department_progress(engine, case_id, now, lang),
                    process=engine.graph_for(state).definition,
                    tasks=[task_json(engine, state, t, now, lang=lang) for t in state.open_tasks()])

    def _flowchart(case_id: str) -> str:
        """The case's flowchart with the path taken, as inline SVG (no network, no files)."""
        from visualize.flowchart import flowchart_dot, render
        from visualize.overlay import case_overlay

        view = engine.case(case_id)
        graph = engine.graph_for(view.state)
        overlay = case_overlay(graph, view, engine.clock.now(), zone=ZoneInfo(get_settings().display_timezone))
        svg = render(flowchart_dot(graph, overlay), "svg").decode("utf-8")
        return svg[svg.find("<svg"):]

    return inbox
