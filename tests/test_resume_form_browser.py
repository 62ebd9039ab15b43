"""The Resume form of a paused case run as the Prefect UI draws it (headless Chromium, playwright).

The form's JSON schema and description are checked as data in test_flows.py; this checks what an
operator sees: the Markdown description above the form is drawn (not collapsed to nothing, not cut
off by the modal) and the fields start from their defaults. The screenshot is kept in
out/screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_harness import ARGS, SHOTS, chromium_path
from tests.prefect_harness import wait_until
from tests.test_flows import _paused_on, calls, client, clock, engine, registry, start_in_thread  # noqa: F401

pytest_plugins = ["tests.conftest_prefect"]
pytestmark = [pytest.mark.browser, pytest.mark.prefect]
UI_WAIT_MS = 120_000  # the Prefect UI is a large single-page app: slow to start on a loaded machine


@pytest.fixture
def prefect_ui(prefect_api: str) -> Iterator[str]:
    """Prefect's UI (the test server serves only the API), in a thread, talking to the test server's API."""
    import httpx
    import uvicorn
    from prefect.server.api.server import create_ui_app
    from prefect.settings import PREFECT_UI_API_URL, temporary_settings

    from tests.prefect_harness import in_thread
    from tests.server_harness import free_port

    port = free_port()
    with temporary_settings(updates={PREFECT_UI_API_URL: prefect_api}):
        server = uvicorn.Server(uvicorn.Config(create_ui_app(False), host="127.0.0.1", port=port, log_level="error"))
        thread, _ = in_thread(server.run)  # the thread keeps this settings context: /ui-settings names the API
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/ui-settings", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=120, interval=0.2, what="the Prefect UI")
        try:
            yield base
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(UI_WAIT_MS)
            yield page
        finally:
            browser.close()


@pytest.mark.timeout(600)
def test_the_resume_form_shows_the_whole_description_above_prefilled_fields(
        engine: Any, prefect_ui: str, page: Any) -> None:
    thread, _box = start_in_thread("flowtest", {"customer_name": "李四", "tier": "gold"}, "FT-UI")
    task = wait_until(lambda: engine.open_tasks("FT-UI"), what="the task")[0]
    run = _paused_on(task["id"])
    try:
        page.goto(f"{prefect_ui}/runs/flow-run/{run.id}")
        page.get_by_role("button", name="Resume").first.click()
        modal = page.get_by_role("dialog").filter(has_text="Resume Flow Run")
        body = modal.locator(".p-modal__body")
        description = body.locator("article.markdown-renderer").first
        try:
            description.wait_for(state="attached")
            body.get_by_text("结论 / Decision").first.wait_for(state="visible")  # the form renders after it
        except Exception:  # what the browser drew instead, for the person reading the failure
            page.screenshot(path=str(SHOTS / "resume-form-failed.png"), full_page=True)
            raise
        page.screenshot(path=str(SHOTS / "resume-form.png"))

        # the modal's own Markdown (Prefect shrinks it once the form is taller than the modal) says the same
        assert "FT-UI" in description.inner_text()
        summary = body.locator(".schema-form-property__markdown").first  # leads the form, which the modal scrolls
        text = summary.inner_text()
        assert "审核 / Review" in text and "FT-UI" in text and "核对客户资料后给出结论" in text
        assert "Check the customer's file and decide." in text and "李四" in text and "inbox" in text
        form = body.inner_text().split("结论 / Decision", 1)[1]
        # prefilled: the role starts at the task's role
        assert form.split("以哪个角色完成 / the role you act in", 1)[1].lstrip().startswith("agent")

        box, card = summary.bounding_box(), modal.locator(".p-modal__card").bounding_box()
        assert box is not None and card is not None
        # not cut off sideways: it fits across the modal's card
        assert card["x"] <= box["x"] and box["x"] + box["width"] <= card["x"] + card["width"] + 1, (box, card)
        # drawn whole, and on screen when the modal opens (900 px window)
        assert box["height"] >= 100 and summary.evaluate("el => el.scrollHeight - el.clientHeight") <= 1
        assert box["y"] >= card["y"] and box["y"] + 40 <= card["y"] + card["height"], (box, card)
        assert summary.get_by_text("审核 / Review").first.is_visible()
    finally:
        with client() as c:  # let the paused run end either way
            c.resume_flow_run(run.id, run_input={"decision": "approve", "actor": "li"})
        thread.join(60)
