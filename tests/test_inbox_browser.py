"""The staff inbox in a real browser: headless Chromium (playwright) against a real server process.

A front-desk user registers a complaint; the team supervisor who owns the next step logs in, finds
it in the inbox, completes it, and sees the case move on. Screenshots of each step are kept as
test artefacts in out/screenshots/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_harness import running_server
from tests.test_server_api import prepare

from tests.browser_harness import ARGS, SHOTS, chromium_path

pytestmark = pytest.mark.browser


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'svcflow.db'}"
    engine, _ = prepare(url)
    engine.store.dispose()
    with running_server(url, tmp_path) as base_url:
        yield base_url


@pytest.fixture
def page(base: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=ARGS)
        context = browser.new_context(base_url=base, viewport={"width": 1400, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def log_in(page: object, user: str, password: str) -> None:
    page.goto("/inbox/login")  # type: ignore[attr-defined]
    page.fill("#user", user)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("#login")  # type: ignore[attr-defined]
    page.wait_for_selector("#who")  # type: ignore[attr-defined]


def test_front_desk_registers_a_complaint_and_the_next_owner_completes_it_in_the_inbox(page: object) -> None:
    p: object = page
    log_in(p, "wang", "wang-password")
    p.click("text=登记新案件")  # type: ignore[attr-defined]
    p.select_option("#process-choice", "complaint_handling")  # type: ignore[attr-defined]
    p.wait_for_selector("#new-form")  # type: ignore[attr-defined]
    p.click("#start")  # type: ignore[attr-defined]
    p.wait_for_selector("#task-form")  # type: ignore[attr-defined]
    case_id = p.inner_text("h3 a")  # type: ignore[attr-defined]
    assert "svg" in p.inner_html(".flowchart")  # type: ignore[attr-defined]
    p.select_option("#f-channel", "phone")  # type: ignore[attr-defined]
    p.fill("#f-customer_id", "C001")  # type: ignore[attr-defined]
    p.fill("#f-customer_name", "张三")  # type: ignore[attr-defined]
    p.select_option("#f-tier", "gold")  # type: ignore[attr-defined]
    p.select_option("#f-category", "billing")  # type: ignore[attr-defined]
    p.fill("#f-description", "账单多扣费 200 元")  # type: ignore[attr-defined]
    p.screenshot(path=str(SHOTS / "1-front-desk-registers.png"), full_page=True)  # type: ignore[attr-defined]
    p.click("#complete")  # type: ignore[attr-defined]
    p.wait_for_selector("#done")  # type: ignore[attr-defined]
    p.click("#logout")  # type: ignore[attr-defined]

    log_in(p, "zhou", "zhou-password")
    row = p.locator(f"#role-tasks tr[data-case='{case_id}']")  # type: ignore[attr-defined]
    assert row.count() == 1
    assert "sla-green" in (row.get_attribute("class") or "")
    p.screenshot(path=str(SHOTS / "2-owner-inbox.png"), full_page=True)  # type: ignore[attr-defined]
    row.locator("a").first.click()
    p.wait_for_selector("#task-form")  # type: ignore[attr-defined]
    assert p.inner_text("#task-name") == "指定专人负责"  # type: ignore[attr-defined]
    p.fill("#f-owner", "li")  # type: ignore[attr-defined]
    p.screenshot(path=str(SHOTS / "3-owner-task.png"), full_page=True)  # type: ignore[attr-defined]
    p.click("#complete")  # type: ignore[attr-defined]
    p.wait_for_selector("#done")  # type: ignore[attr-defined]

    p.goto(f"/inbox/cases/{case_id}")  # type: ignore[attr-defined]
    assert p.inner_text("#case-steps") == "first_contact"  # type: ignore[attr-defined]
    history = p.inner_text("#history")  # type: ignore[attr-defined]
    assert "wang" in history and "zhou" in history
    p.click("#lang-en")  # type: ignore[attr-defined]
    p.wait_for_selector("text=Progress by department")  # type: ignore[attr-defined]
    p.screenshot(path=str(SHOTS / "4-case-moved-on.png"), full_page=True)  # type: ignore[attr-defined]
    assert sorted(path.name for path in SHOTS.glob("*.png")) >= ["1-front-desk-registers.png", "2-owner-inbox.png",
                                                                  "3-owner-task.png", "4-case-moved-on.png"]


def test_a_refused_form_shows_the_message_and_keeps_the_task_open(page: object, base: str) -> None:
    p: object = page
    log_in(p, "wang", "wang-password")
    p.goto("/inbox/new?process=complaint_handling")  # type: ignore[attr-defined]
    p.click("#start")  # type: ignore[attr-defined]
    p.wait_for_selector("#task-form")  # type: ignore[attr-defined]
    p.evaluate("document.getElementById('task-form').noValidate = true")  # type: ignore[attr-defined]
    p.fill("#f-repeat_count", "0")  # type: ignore[attr-defined]
    p.click("#complete")  # type: ignore[attr-defined]
    error = p.inner_text("#form-error")  # type: ignore[attr-defined]
    assert "field 'repeat_count': must be at least 1" in error
    assert "field 'customer_id' (客户编号 / Customer id) is required" in error
    assert p.is_visible("#task-form")  # type: ignore[attr-defined]
