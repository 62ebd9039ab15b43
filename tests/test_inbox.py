"""The staff inbox over HTTP, page by page: a real `svcflow server` process on a frozen clock, read with lxml.

The cases are opened beforehand at known times on the same store, so the SLA colours and the order
by due time are known: at 15:20 on a working Monday, complaint A (registered at 14:00, 1 h target)
is red, B (14:30) amber, C (15:10) and H (15:17, hostile text) green, and a credit rating opened at
13:00 (1 working day) is due last although it is the oldest task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from lxml import html

from engine.access import library_roles
from engine.run.runtime import Engine
from engine.store.directory import Directory
from engine.time.clock import FakeClock
from tests.conftest import MONDAY_9AM
from tests.server_harness import running_server

NOW = MONDAY_9AM.replace(hour=15, minute=20)
FROZEN = f"accelerated|{NOW.isoformat()}|{NOW.isoformat()}|0"  # the server's clock stands still at NOW
SCRIPT = "<script>alert('data')</script>"  # stored text that must be shown, never run
EVE = '<img src=x onerror="alert(1)">'


def complaint(name: str, phone: str) -> dict[str, str]:
    return {"customer_id": f"C-{phone[-4:]}", "customer_name": name, "contact_phone": phone, "tier": "gold",
            "category": "billing", "description": "多扣费"}


@dataclass
class Inbox:
    base: str
    engine: Engine
    cases: dict[str, str]  # A, B, C (complaints), R (credit rating) -> case id

    def task(self, key: str) -> str:
        state, _ = self.engine.store.load_case(self.cases[key])
        return state.open_tasks()[0].id

    sessions: dict[str, httpx.Cookies] = field(default_factory=dict)

    @contextmanager
    def login(self, user: str, lang: str = "zh") -> Iterator[httpx.Client]:
        """A browser-like client logged in through the login form (once per user: argon2 is slow on
        purpose), its language chosen."""
        with httpx.Client(base_url=self.base, timeout=30, follow_redirects=True) as client:
            if user in self.sessions:
                client.cookies.update(self.sessions[user])
            else:
                client.get("/inbox/login")  # sets the CSRF cookie the form must echo
                answer = client.post("/inbox/login", data={"user": user, "password": f"{user}-password",
                                                             "csrf": client.cookies["svcflow_csrf"]})
                assert answer.status_code == 200 and answer.url.path == "/inbox", answer.text[:300]
                self.sessions[user] = httpx.Cookies(client.cookies)
            client.cookies.set("svcflow_lang", lang, domain="127.0.0.1")  # the one the server's switch replaces
            yield client


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    workdir = tmp_path_factory.mktemp("inbox")
    url = f"sqlite:///{workdir / 'svcflow.db'}"
    clock = FakeClock(NOW.replace(hour=13, minute=0))
    engine = Engine.from_settings(url, Path("process_defs").resolve(), clock=clock)
    directory = Directory(engine.store, library_roles(engine.library))
    directory.add_user("li", "李前台", ["front_desk", "credit_analyst"], clock.now(), password="li-password")
    directory.add_user("zhou", "周主管", ["team_supervisor"], clock.now(), password="zhou-password")
    cases = {"R": engine.start("credit_rating", {}, actor="li")}
    for key, at, name, phone in (("A", 14 * 60, "张三", "13800000001"), ("B", 14 * 60 + 30, "李四", "13800000002"),
                                 ("C", 15 * 60 + 10, "王五", "13800000003")):
        clock.set(NOW.replace(hour=at // 60, minute=at % 60))
        cases[key] = engine.start("complaint_handling", complaint(name, phone), actor="li")
    directory.add_user("eve", EVE, ["front_desk"], clock.now(), password="eve-password")
    clock.set(NOW - timedelta(minutes=3))
    cases["H"] = engine.start("complaint_handling", {**complaint(SCRIPT, "13800000009"), "description": SCRIPT},
                              actor="eve")
    with running_server(url, workdir, SVCFLOW_CLOCK=FROZEN) as base:
        yield Inbox(base, engine, cases)
    engine.store.dispose()


def page(client: httpx.Client, path: str) -> html.HtmlElement:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text[:500]
    return html.fromstring(answer.text)


def rows(tree: html.HtmlElement, table_id: str) -> list[tuple[str, str]]:
    """(case id, SLA colour) of each task row of an inbox table, top to bottom."""
    return [(tr.get("data-case"), tr.get("class").removeprefix("sla-"))
            for tr in tree.xpath(f"//table[@id='{table_id}']//tr[@data-task]")]


def test_my_roles_tasks_are_sorted_by_due_time_and_coloured_by_the_sla_used(inbox: Inbox) -> None:
    with inbox.login("li") as client:
        tree = page(client, "/inbox")
    c = inbox.cases
    assert rows(tree, "role-tasks") == [(c["A"], "red"), (c["B"], "amber"), (c["C"], "green"), (c["H"], "green"),
                                        (c["R"], "green")]
    badges = [b.text_content() for b in tree.xpath("//table[@id='role-tasks']//span[contains(@class, 'badge')]")]
    assert badges[:3] == ["133 %", "83 %", "17 %"]


def test_a_claimed_task_moves_to_my_tasks(inbox: Inbox) -> None:
    task_id = inbox.task("B")
    with inbox.login("li") as client:
        client.post(f"/inbox/tasks/{task_id}/claim", data={"csrf": client.cookies["svcflow_csrf"]})
        tree = page(client, "/inbox")
    assert rows(tree, "my-tasks") == [(inbox.cases["B"], "amber")]
    assert inbox.cases["B"] not in [case for case, _ in rows(tree, "role-tasks")]


def test_another_roles_user_does_not_see_the_front_desks_tasks(inbox: Inbox) -> None:
    with inbox.login("zhou") as client:
        tree = page(client, "/inbox")
    assert rows(tree, "role-tasks") == [] and rows(tree, "my-tasks") == []


@pytest.mark.parametrize(("lang", "label", "required"), [("zh", "投诉渠道", "必填"), ("en", "Channel", "required")])
def test_the_task_form_is_generated_from_the_definition_in_both_languages(inbox: Inbox, lang: str, label: str,
                                                                         required: str) -> None:
    with inbox.login("li", lang) as client:
        tree = page(client, f"/inbox/tasks/{inbox.task('A')}")
    form = tree.xpath("//form[@id='task-form']")[0]
    channel = form.xpath(".//label[@for='f-channel']")[0].text_content()
    assert channel.startswith(label) and required in channel
    tier = form.xpath(".//select[@id='f-tier']")[0]
    assert [o.get("value") for o in tier.xpath("./option")] == ["", "platinum", "gold", "silver", "standard"]
    assert tier.xpath("./option[@selected]")[0].get("value") == "gold"  # the case's current value
    assert tier.get("required") is not None
    phone = form.xpath(".//input[@id='f-contact_phone']")[0]
    assert phone.get("required") is None and phone.get("value") == "13800000001"
    assert form.xpath(".//input[@id='f-repeat_count']")[0].get("min") == "1"
    assert form.xpath(".//textarea[@id='f-description']")


def test_the_task_page_shows_the_case_and_its_flowchart_with_the_path_taken(inbox: Inbox) -> None:
    with inbox.login("li", "en") as client:
        answer = client.get(f"/inbox/tasks/{inbox.task('A')}")
    tree = html.fromstring(answer.text)
    assert tree.xpath("string(//b[@id='case-status'])") == "running"
    assert tree.xpath("string(//b[@id='case-steps'])") == "register"
    data = tree.xpath("string(//table[contains(@class, 'data')])")
    assert "Customer name" in data and "张三" in data
    svg = tree.xpath("//div[@class='flowchart']")[0]
    assert "<svg" in answer.text and "#fde047" in answer.text  # the step waiting now, filled yellow
    assert 'stroke="#1d4ed8"' in answer.text  # the edge taken from the start, drawn bold blue
    assert "overdue" in svg.text_content()  # register's 1 h limit passed at 15:00


def test_a_case_search_finds_cases_by_customer_name_phone_and_id(inbox: Inbox) -> None:
    with inbox.login("li") as client:
        by_name = page(client, "/inbox/cases?q=李四")
        by_phone = page(client, "/inbox/cases?q=13800000003")
        by_id = page(client, f"/inbox/cases?q={inbox.cases['A'].lower()}")
        none = page(client, "/inbox/cases?q=nobody-at-all")

    def found(tree: html.HtmlElement) -> list[str]:
        return [a.text_content() for a in tree.xpath("//table[@id='case-list']//a")]

    assert found(by_name) == [inbox.cases["B"]]
    assert found(by_phone) == [inbox.cases["C"]]
    assert found(by_id) == [inbox.cases["A"]]
    assert found(none) == [] and "没有找到案件" in none.text_content()


def test_the_status_page_shows_each_departments_done_and_open_steps(inbox: Inbox) -> None:
    engine, clock = inbox.engine, inbox.engine.clock
    assert isinstance(clock, FakeClock)
    clock.set(NOW - timedelta(minutes=10))
    case_id = engine.start("complaint_handling", complaint("赵六", "13800000004"), actor="li")
    clock.set(NOW - timedelta(minutes=5))
    task_id = engine.store.load_case(case_id)[0].open_tasks()[0].id
    engine.complete(task_id, actor="li", role="front_desk",
                    data={"channel": "phone", **complaint("赵六", "13800000004")})
    with inbox.login("li", "en") as client:
        tree = page(client, f"/inbox/cases/{case_id}")
    steps = tree.xpath("//table[@id='departments']//tr[@data-role]")
    assert [(tr.get("data-role"), tr.get("data-status")) for tr in steps] == [
        ("front_desk", "completed"), ("team_supervisor", "open")]
    done, waiting = ([td.text_content() for td in tr.xpath("./td")] for tr in steps)
    assert done[:5] == ["Front desk", "Receive and register", "done", "li", "2025-09-22 15:15"]
    assert waiting[0] == "Team supervisor" and waiting[2] == "open" and waiting[5].endswith("%")


def test_the_language_switch_keeps_the_page_and_changes_the_words(inbox: Inbox) -> None:
    with inbox.login("li") as client:
        assert "我的角色的任务" in page(client, "/inbox").text_content()
        answer = client.get("/inbox/lang/en", params={"back": f"/inbox/cases/{inbox.cases['A']}"})
        assert answer.url.path == f"/inbox/cases/{inbox.cases['A']}"
        assert "Progress by department" in answer.text and "各部门进度" not in answer.text


def test_stored_text_and_names_are_shown_escaped_on_every_page(inbox: Inbox) -> None:
    case_id, task_id = inbox.cases["H"], inbox.task("H")
    with inbox.login("eve") as client:
        pages = {path: client.get(path) for path in (
            "/inbox", f"/inbox/tasks/{task_id}", f"/inbox/cases/{case_id}", "/inbox/cases?q=13800000009",
            f"/inbox/cases?q={SCRIPT}")}
        refused = client.post(f"/inbox/tasks/{task_id}", data={
            "csrf": client.cookies["svcflow_csrf"], "channel": SCRIPT, "customer_id": "C1", "customer_name": "x",
            "tier": "gold", "category": "billing", "description": "d"})
    pages["refused form"] = refused
    error = html.fromstring(refused.text).xpath("string(//div[@id='form-error'])")
    assert refused.status_code == 422 and "field 'channel'" in error and SCRIPT in error, error
    for path, answer in pages.items():
        assert "<script>" not in answer.text and "<img src=x" not in answer.text, path
        assert "&lt;script&gt;" in answer.text or "&lt;img" in answer.text, path
    assert html.fromstring(pages[f"/inbox/cases/{case_id}"].text).xpath("string(//b[@id='who'])") == EVE
