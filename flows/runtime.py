"""Where the engine meets Prefect: which engine a flow run uses, and how its steps become tasks.

The engine still decides and records everything, through the same command driver as the
CLI and the simulator (engine/run/driver.py); this module only changes *where* an automatic
step runs: the Prefect executor, and `defer_step`. Inside the flow run of case X, X's steps run as Prefect tasks named
after the step (with the definition's retries and timeout). Steps of any other case that the
engine reaches meanwhile (a child started by X, a parent woken by X's end, a case moved by
the sweep) are left outstanding in the store — exactly the state a crashed runner leaves —
so that the other case's own flow run picks them up with `Engine.recover` and they show up
in the right place in the UI. Outside any flow run the engine behaves as it always does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from functools import lru_cache
from typing import Any, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TagsContext, TaskRunContext
from prefect.tasks import Task

from engine.run.events import CaseEnded, Command, RunAutoStep, StartChild, TaskClosed, TaskOpened
from engine.run.handlers import HandlerContext
from engine.run.runtime import Engine, run_in_process
from flows.settings import FlowSettings, get_flow_settings

log = logging.getLogger("svcflow.flows")

DEFER_ALL = "*"
"""Segment owner that runs no step at all: the sweep, which hands moved cases to their own runs."""

Handler = Callable[[HandlerContext], Mapping[str, Any] | None]

_SEGMENT: ContextVar[str | None] = ContextVar("svcflow_segment", default=None)
_COLLECTOR: ContextVar[dict[str, set[str]] | None] = ContextVar("svcflow_collector", default=None)
_ENGINE: ContextVar[FlowEngine | None] = ContextVar("svcflow_engine", default=None)
_default_engine: FlowEngine | None = None
_default_lock = threading.Lock()
_CALLS: dict[str, tuple[Handler, HandlerContext]] = {}


class FlowEngine(Engine):
    """The engine as case flows use it: only the case whose segment is running gets its steps run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("executor", prefect_executor)
        super().__init__(*args, **kwargs)
        self.listeners.append(_observe)

    @classmethod
    def wrap(cls, engine: Engine) -> FlowEngine:
        """The same store, library, clock, handlers and notifier, with the Prefect executor."""
        if isinstance(engine, FlowEngine):
            return engine
        wrapped = cls(engine.store, engine.library, clock=engine.clock, handlers=engine.handlers,
                      notifier=engine.notifier, id_factory=engine.id_factory, limits=engine.limits)
        wrapped.listeners.extend(listener for listener in engine.listeners if listener not in wrapped.listeners)
        wrapped.on_stored.extend(engine.on_stored)
        return wrapped

    def defer_step(self, case_id: str, command: RunAutoStep) -> bool:
        """Another case's step stays outstanding in the store: that case's own flow run recovers it."""
        owner = _SEGMENT.get()
        return owner is not None and owner != case_id


def _observe(case_id: str, command: Command) -> None:
    """Remember which cases got work while a collector is open (the sweep, a segment's end)."""
    collector = _COLLECTOR.get()
    if collector is None:
        return
    kind = {RunAutoStep: "step", StartChild: "child", TaskOpened: "task_opened", TaskClosed: "task_closed",
            CaseEnded: "ended"}.get(type(command))
    if kind is not None:
        collector.setdefault(case_id, set()).add(kind)


@contextmanager
def segment(case_id: str) -> Iterator[None]:
    """Engine calls inside run `case_id`'s steps as tasks and defer every other case's steps."""
    token = _SEGMENT.set(case_id)
    try:
        yield
    finally:
        _SEGMENT.reset(token)


@contextmanager
def collecting() -> Iterator[dict[str, set[str]]]:
    """Collect, per case, the kinds of commands the engine issued (step, child, task_opened...)."""
    collected: dict[str, set[str]] = {}
    token = _COLLECTOR.set(collected)
    try:
        yield collected
    finally:
        _COLLECTOR.reset(token)


def current_segment() -> str | None:
    return _SEGMENT.get()


# -- which engine ---------------------------------------------------------------------------------
def get_engine() -> FlowEngine:
    """The engine of this context (tests, embedding) or else the process-wide one from settings."""
    engine = _ENGINE.get()
    if engine is not None:
        return engine
    global _default_engine
    with _default_lock:
        if _default_engine is None:
            _default_engine = engine_from_settings(get_flow_settings())
        return _default_engine


def configure(engine: Engine | None) -> FlowEngine | None:
    """Set the process-wide engine that flow runs use (None: build it from settings again)."""
    global _default_engine
    with _default_lock:
        _default_engine = FlowEngine.wrap(engine) if engine is not None else None
        return _default_engine


@contextmanager
def use_engine(engine: Engine) -> Iterator[FlowEngine]:
    """Flow runs started in this context (this thread) use `engine`."""
    wrapped = FlowEngine.wrap(engine)
    token = _ENGINE.set(wrapped)
    try:
        yield wrapped
    finally:
        _ENGINE.reset(token)


def engine_from_settings(settings: FlowSettings) -> FlowEngine:
    from engine.time.clock import clock_from_spec
    from engine.definition.library import ProcessLibrary
    from engine.store.sql import Store
    from flows.notify import notifier_from_settings

    return FlowEngine(Store(settings.database_url), ProcessLibrary.from_dir(settings.process_dir),
                      notifier=notifier_from_settings(settings), clock=clock_from_spec(settings.clock))


# -- automatic steps as Prefect tasks -------------------------------------------------------------
def prefect_executor(command: RunAutoStep, context: HandlerContext, handler: Handler) -> Mapping[str, Any] | None:
    """Run the step as a task of the case's flow run; anywhere else, in-process as the engine would."""
    if _SEGMENT.get() == context.case_id and FlowRunContext.get() is not None:
        return run_step_as_task(command, context, handler)
    return run_in_process(command, context, handler)


def run_step_as_task(command: RunAutoStep, context: HandlerContext, handler: Handler) -> Mapping[str, Any] | None:
    """Prefect does the retries and the timeout, so the UI shows each attempt; a final failure raises
    and the engine records it as the step's incident."""
    step = _step_task(command.node, command.retries, command.retry_delay_seconds, command.timeout_seconds)
    call = uuid.uuid4().hex
    _CALLS[call] = (handler, context)
    try:
        # No tags on step task runs: Prefect checks tag concurrency limits with an API call per tagged
        # task run (~8 ms, more than the rest of a step). The case's tags are on its flow run.
        with TagsContext(current_tags=set()):
            return cast("dict[str, Any]", step(command.idempotency_key, call))
    finally:
        _CALLS.pop(call, None)


def _call_handler(idempotency_key: str, call: str) -> dict[str, Any]:
    """The body of every step task. Only two short strings are parameters: hashing or serialising
    the case data per task would cost more than most steps do."""
    handler, context = _CALLS[call]
    run = TaskRunContext.get()
    attempt = run.task_run.run_count if run is not None and run.task_run.run_count else 1
    output = handler(replace(context, attempt=attempt))
    return dict(output or {})


_STEP: Task[..., dict[str, Any]] = task(name="svcflow-step", persist_result=False, cache_policy=NO_CACHE,
                                        log_prints=False)(_call_handler)


@lru_cache(maxsize=1024)
def _step_task(node: str, retries: int, retry_delay_seconds: float, timeout_seconds: float | None) -> Task[..., Any]:
    """One task per step of the definitions, named after the step; cached because with_options copies."""
    return _STEP.with_options(name=node, task_run_name=node, retries=retries,
                              retry_delay_seconds=retry_delay_seconds, timeout_seconds=timeout_seconds)


__all__ = [
    "DEFER_ALL", "FlowEngine", "collecting", "configure", "current_segment", "engine_from_settings", "get_engine",
    "prefect_executor", "segment", "use_engine",
]
