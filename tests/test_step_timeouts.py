"""Step timeouts end the wait at the timeout; the late handler's result is discarded."""

from __future__ import annotations

import threading
import time

import pytest

from engine.run.events import RunAutoStep
from engine.run.handlers import HandlerContext, HandlerRegistry
from engine.run.runtime import run_in_process
from tests.test_semantics import definition

CONTEXT = HandlerContext("C-1", "demo", "score", 1, "C-1:t1:score:1", {}, {})


def _command(timeout: float | None, retries: int = 0) -> RunAutoStep:
    return RunAutoStep("t1", "score", "test.slow", 1, retries, 0.0, timeout, "C-1:t1:score:1")


def test_a_handler_slower_than_its_timeout_fails_at_the_timeout_not_when_it_returns() -> None:
    released = threading.Event()

    def slow(ctx: HandlerContext) -> dict[str, int]:
        released.wait(2.0)
        return {"score": 1}

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="longer than 0.2 s"):
        run_in_process(_command(0.2), CONTEXT, slow)
    elapsed = time.monotonic() - started
    released.set()
    assert elapsed < 1.0


def test_each_retry_after_a_timeout_gets_its_own_timeout_and_the_same_idempotency_key() -> None:
    keys: list[tuple[int, str]] = []

    def slow_then_fast(ctx: HandlerContext) -> dict[str, int]:
        keys.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt == 1:
            time.sleep(1.5)
        return {"score": ctx.attempt}

    started = time.monotonic()
    assert run_in_process(_command(0.2, retries=1), CONTEXT, slow_then_fast) == {"score": 2}
    assert time.monotonic() - started < 1.0
    assert keys == [(1, "C-1:t1:score:1"), (2, "C-1:t1:score:1")]


def test_a_handler_error_within_the_timeout_is_raised_as_itself() -> None:
    def broken(ctx: HandlerContext) -> dict[str, int]:
        raise LookupError("no such customer")

    with pytest.raises(LookupError, match="no such customer"):
        run_in_process(_command(5.0), CONTEXT, broken)


TIMED = definition("""
data:
  score: {type: integer}
nodes:
  - {id: start, kind: start}
  - {id: score, kind: auto, handler: test.slow, timeout_seconds: 0.2}
  - {id: done, kind: end}
edges:
  - {from: start, to: score}
  - {from: score, to: done}
""")


def test_a_timed_out_step_is_the_cases_incident_and_its_late_result_is_never_applied(make_engine) -> None:
    finished = threading.Event()
    handlers = HandlerRegistry()

    @handlers.register("test.slow")
    def slow(ctx: HandlerContext) -> dict[str, int]:
        time.sleep(0.6)
        finished.set()
        return {"score": 7}

    engine = make_engine(TIMED, handlers=handlers)
    case_id = engine.start("demo", {})
    assert finished.wait(2.0)
    view = engine.case(case_id)
    assert view.status == "incident"
    assert "score" not in view.data
    failed = [e for e in view.events if e.type == "step_failed"]
    assert len(failed) == 1 and "TimeoutError" in failed[0].data["error"]
