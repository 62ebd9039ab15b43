"""The HTTP API over the wire: a real `svcflow server` process, httpx, SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.access import library_roles
from engine.definition.library import ProcessLibrary
from engine.run.runtime import Engine
from engine.store.directory import Directory
from engine.time.clock import SystemClock
from tests.server_harness import fresh_postgres, running_server

COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}


@dataclass
class Site:
    base: str
    engine: Engine  # the same store, read directly to check what the server did (and did not) store
    tokens: dict[str, str]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def snapshot(self) -> tuple[list[tuple[str, int]], int]:
        """Every case with its version, and the number of non-refusal events: 'the store unchanged'."""
        cases = [(r["id"], r["version"]) for r in self.engine.store.cases()]
        events = [e for e in self.engine.store.events() if e.type != "refused"]
        return cases, len(events)


def prepare(database_url: str) -> tuple[Engine, dict[str, str]]:
    library = ProcessLibrary.from_dir()
    engine = Engine.from_settings(database_url, Path("process_defs").resolve(), clock=SystemClock())
    directory = Directory(engine.store, library_roles(library))
    now = engine.clock.now()
    directory.add_user("wang", "王前台", ["front_desk"], now, password="wang-password")
    directory.add_user("zhou", "周主管", ["team_supervisor"], now, password="zhou-password")
    tokens = {}
    for name, roles in {"crm": ["front_desk"], "desk": ["front_desk"], "handler": ["complaint_handler"],
                        "supervisor": ["team_supervisor"], "revoked": ["front_desk"]}.items():
        token, secret = directory.create_token(name, roles, now)
        tokens[name] = secret
        if name == "revoked":
            directory.revoke_token(token.id, now)
    return engine, tokens


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "postgres":
        url = fresh_postgres(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{workdir / 'svcflow.db'}"
    engine, tokens = prepare(url)
    with running_server(url, workdir) as base:
        yield Site(base, engine, tokens)
    engine.store.dispose()


def start_complaint(site: Site, key: str | None = None, token: str = "crm") -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    with site.client(token) as client:
        return client.post("/api/cases", json={"process": "complaint_handling", "data": COMPLAINT}, headers=headers)


def register_task(site: Site, case_id: str) -> str:
    return next(t.id for t in site.engine.store.load_case(case_id)[0].open_tasks() if t.node == "register")


def registration(**extra: Any) -> dict[str, Any]:
    return {"data": {"channel": "phone", **COMPLAINT, **extra}}


def test_a_token_opens_a_case_that_waits_for_the_front_desk(site: Site) -> None:
    response = start_complaint(site)
    assert response.status_code == 201, response.text
    case = response.json()
    assert (case["status"], case["current_steps"], case["data"]["customer_name"]) == ("running", ["register"], "张三")
    assert case["open_tasks"][0]["role"] == "front_desk"
    assert case["history"][0]["data"]["actor"] == "token:crm"


def test_a_retried_request_with_the_same_idempotency_key_does_not_open_a_second_case(site: Site) -> None:
    before = len(site.engine.store.cases())
    first = start_complaint(site, key="crm-ticket-4711")
    again = start_complaint(site, key="crm-ticket-4711")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(site.engine.store.cases()) == before + 1


def test_an_idempotency_key_reused_for_another_request_is_refused(site: Site) -> None:
    start_complaint(site, key="crm-ticket-4712")
    with site.client("crm") as client:
        response = client.post("/api/cases", headers={"Idempotency-Key": "crm-ticket-4712"},
                               json={"process": "complaint_handling", "data": {**COMPLAINT, "tier": "silver"}})
    assert response.status_code == 422
    assert "was used for a different request" in response.json()["error"]


@pytest.mark.parametrize("token", [None, "revoked"])
def test_requests_without_a_valid_token_get_401_and_change_nothing(site: Site, token: str | None) -> None:
    case_id = start_complaint(site).json()["id"]
    task_id = register_task(site, case_id)
    before = site.snapshot()
    with site.client(token) as client:
        answers = [client.post("/api/cases", json={"process": "complaint_handling", "data": COMPLAINT}),
                   client.post(f"/api/tasks/{task_id}/complete", json=registration()),
                   client.post(f"/api/cases/{case_id}/data", json={"data": {"tier": "silver"}}),
                   client.post(f"/api/cases/{case_id}/cancel", json={"reason": "test"}),
                   client.get(f"/api/cases/{case_id}")]
    assert [a.status_code for a in answers] == [401] * 5
    assert answers[0].headers["WWW-Authenticate"] == "Bearer"
    assert site.snapshot() == before


def test_a_wrong_role_gets_403_the_store_is_unchanged_and_the_refusal_is_logged(site: Site) -> None:
    case_id = start_complaint(site).json()["id"]
    task_id = register_task(site, case_id)
    before = site.snapshot()
    with site.client("handler") as client:
        complete = client.post(f"/api/tasks/{task_id}/complete", json=registration())
        update = client.post(f"/api/cases/{case_id}/data", json={"data": {"tier": "silver"}})
    with site.client("desk") as client:
        cancel = client.post(f"/api/cases/{case_id}/cancel", json={"reason": "duplicate"})
    assert (complete.status_code, update.status_code, cancel.status_code) == (403, 403, 403)
    assert "holds none of the roles" in complete.json()["error"]
    assert site.snapshot() == before
    refused = [e.data for e in site.engine.store.events(case_id) if e.type == "refused"]
    assert [(r["actor"], r["action"]) for r in refused] == [
        ("token:handler", "complete"), ("token:handler", "update"), ("token:desk", "cancel")]


def test_bad_form_data_gets_the_same_located_message_as_the_cli(site: Site) -> None:
    case_id = start_complaint(site).json()["id"]
    task_id = register_task(site, case_id)
    with site.client("desk") as client:
        response = client.post(f"/api/tasks/{task_id}/complete", json=registration(tier="diamond"))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == (f"invalid input for task {task_id} ('register'): field 'tier': "
                             "expected one of platinum, gold, silver, standard, got 'diamond'")
    assert body["hint"] == (f"fix the fields named above; case {case_id} is unchanged; "
                            "the refusal is recorded in its history")
    refused = [e.data for e in site.engine.store.events(case_id) if e.type == "refused"]
    assert [(r["event"], r["actor"]) for r in refused] == [("CompleteTask", "token:desk")]


def test_a_refused_start_stores_nothing_and_says_so(site: Site) -> None:
    before = site.snapshot()
    with site.client("crm") as client:
        response = client.post("/api/cases", json={"process": "complaint_handling",
                                                   "data": {**COMPLAINT, "tier": "diamond"}})
    assert response.status_code == 422
    assert response.json()["hint"].endswith("nothing was stored")
    assert site.snapshot() == before


def test_a_completion_records_the_token_as_the_actor_and_moves_the_case_on(site: Site) -> None:
    case_id = start_complaint(site).json()["id"]
    task_id = register_task(site, case_id)
    with site.client("desk") as client:
        response = client.post(f"/api/tasks/{task_id}/complete", json=registration(actor="somebody-else"))
    assert response.status_code == 422  # 'actor' is no form field: nobody can type another name
    with site.client("desk") as client:
        response = client.post(f"/api/tasks/{task_id}/complete", json=registration(),
                               headers={"Idempotency-Key": f"done-{task_id}"})
        again = client.post(f"/api/tasks/{task_id}/complete", json=registration(),
                            headers={"Idempotency-Key": f"done-{task_id}"})
        case = client.get(f"/api/cases/{case_id}").json()
    assert response.status_code == 200, response.text
    assert again.json() == response.json()
    completed = [h for h in case["history"] if h["type"] == "task_completed"]
    assert [(h["data"]["actor"], h["data"]["role"]) for h in completed] == [("token:desk", "front_desk")]
    assert case["current_steps"] == ["assign_owner"]
    assert [(d["role"], d["status"], d["who"]) for d in case["departments"]] == [
        ("front_desk", "completed", "token:desk"), ("team_supervisor", "open", None)]


def test_a_supervisor_sees_the_role_tasks_claims_and_assigns(site: Site) -> None:
    case_id = start_complaint(site).json()["id"]
    with site.client("desk") as client:
        client.post(f"/api/tasks/{register_task(site, case_id)}/complete", json=registration()).raise_for_status()
    with site.client("supervisor") as client:
        tasks = client.get("/api/tasks", params={"scope": "roles"}).json()
        mine = [t for t in tasks if t["case_id"] == case_id]
        assert [t["node"] for t in mine] == ["assign_owner"]
        claimed = client.post(f"/api/tasks/{mine[0]['id']}/claim")
        form = client.get(f"/api/tasks/{mine[0]['id']}").json()["form"]
        other = client.get("/api/tasks", params={"role": "front_desk"})
    assert claimed.json()["assignee"] == "token:supervisor"
    assert [f["id"] for f in form] == ["owner", "assignment_note"]
    assert form[0]["label"] == {"zh": "专责人", "en": "Owner"} and form[0]["required"] is True
    assert other.status_code == 403


def test_a_message_the_case_does_not_wait_for_is_refused_with_the_engine_message(site: Site) -> None:
    case_id = start_complaint(site).json()["id"]
    with site.client("crm") as client:
        response = client.post(f"/api/cases/{case_id}/messages", json={"message": "customer_reply", "payload": {}})
    assert response.status_code == 409
    assert response.json()["error"] == f"case {case_id} is not waiting for message 'customer_reply'"


def test_a_supervisor_updates_and_cancels_a_case(site: Site) -> None:
    case_id = start_complaint(site).json()["id"]
    with site.client("supervisor") as client:
        updated = client.post(f"/api/cases/{case_id}/data", json={"data": {"tier": "standard"}})
        cancelled = client.post(f"/api/cases/{case_id}/cancel", json={"reason": "duplicate of another case"})
        listed = client.get("/api/cases", params={"status": "cancelled", "process": "complaint_handling"}).json()
    assert (updated.json()["data"]["tier"], cancelled.json()["status"]) == ("standard", "cancelled")
    assert case_id in [c["id"] for c in listed]


def test_a_person_logs_in_with_a_password_and_api_posts_need_the_csrf_header(site: Site) -> None:
    with httpx.Client(base_url=site.base, timeout=30) as browser:
        page = browser.get("/inbox/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        wrong = browser.post("/inbox/login", data={"user": "wang", "password": "guess", "csrf": csrf[1]})
        assert wrong.status_code == 401
        right = browser.post("/inbox/login", data={"user": "wang", "password": "wang-password", "csrf": csrf[1]})
        assert right.status_code == 303
        assert browser.get("/api/me").json() == {"id": "wang", "kind": "user", "name": "王前台",
                                                 "roles": ["front_desk"]}
        body = {"process": "complaint_handling", "data": COMPLAINT}
        assert browser.post("/api/cases", json=body).status_code == 401
        started = browser.post("/api/cases", json=body, headers={"X-CSRF-Token": csrf[1]})
    assert started.status_code == 201
    assert started.json()["history"][0]["data"]["actor"] == "wang"


def test_the_openapi_document_lists_the_api(site: Site) -> None:
    paths = httpx.get(f"{site.base}/openapi.json").json()["paths"]
    assert {"/api/cases", "/api/cases/{case_id}", "/api/tasks", "/api/tasks/{task_id}/complete",
            "/api/tasks/{task_id}/claim", "/api/tasks/{task_id}/assign", "/api/cases/{case_id}/messages",
            "/api/cases/{case_id}/data", "/api/cases/{case_id}/cancel"} <= set(paths)


def test_a_body_bigger_than_any_acceptable_case_is_refused_413_before_it_is_read(site: Site) -> None:
    from svcflow.server.body_limit import body_limit_bytes

    before = site.snapshot()
    huge = {"process": "complaint_handling", "data": {**COMPLAINT, "description": "多" * 2_000_000}}
    with site.client("crm") as client:
        declared = client.post("/api/cases", json=huge)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"process": "complaint_handling", "data": {"description": "'
            for _ in range(40):
                yield b"x" * 100_000
            yield b'"}}'

        streamed = client.post("/api/cases", content=chunks(), headers={"Content-Type": "application/json"})
        over_value = client.post("/api/cases", json={"process": "complaint_handling",
                                                     "data": {**COMPLAINT, "description": "x" * 20_000}})
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert f"more than {body_limit_bytes(200_000):,} bytes" in declared.json()["error"]
    assert over_value.status_code == 422  # under the body bound: the engine's own located message
    assert "SVCFLOW_MAX_VALUE_CHARS" in over_value.json()["error"]
    assert site.snapshot() == before


def test_a_completion_whose_body_is_no_form_gets_a_located_422_and_changes_nothing(site: Site) -> None:
    task_id = register_task(site, start_complaint(site).json()["id"])
    before = site.snapshot()
    with site.client("desk") as client:
        broken = client.post(f"/api/tasks/{task_id}/complete", content=b'{"data": ',
                             headers={"Content-Type": "application/json"})
        wrong = client.post(f"/api/tasks/{task_id}/complete", json={"data": ["not", "a", "form"]})
        empty = client.post(f"/api/tasks/{task_id}/complete")
    assert [r.status_code for r in (broken, wrong, empty)] == [422] * 3
    assert broken.json()["error"] == "invalid request: body.9: JSON decode error"
    assert wrong.json()["error"] == "invalid request: body.data: Input should be a valid dictionary"
    assert empty.json()["error"] == "invalid request: body: Field required"
    assert site.snapshot() == before


def test_the_openapi_document_describes_the_completions_body_path_and_idempotency_key(site: Site) -> None:
    operation = httpx.get(f"{site.base}/openapi.json").json()["paths"]["/api/tasks/{task_id}/complete"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"data", "role"}
    assert {(p["name"], p["in"]) for p in operation["parameters"]} == {("task_id", "path"), ("idempotency-key", "header")}
