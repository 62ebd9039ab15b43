"""Fresh case artifacts after changes made outside flow runs: the HTTP server, the inbox, the CLI.

A case flow publishes its case's artifact after each segment and the sweep after each pass, but a
task completed in the inbox, a message sent through the API or a case reclassified with the CLI
changes the case without either: the operators' Prefect view would show the old state until the
case's next run. `ArtifactRefresher` is an `Engine.on_stored` hook that republishes the artifact of
each changed case.

It must never slow down or fail the change it follows: the hook only records the case id; a
daemon thread publishes, coalescing changes made meanwhile (ten completions in a burst cost one
artifact version per case, not ten), and `publish_case_artifact` logs and swallows Prefect's
errors. Importing this module does not import Prefect: the CLI pays for it only once it has
changed something and a Prefect API is configured.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.run.runtime import Engine

log = logging.getLogger("svcflow.flows")

Publish = Callable[[Engine, str], Any]


def _publish_with_settings(engine: Engine, case_id: str) -> Any:
    from flows.artifacts import publish_case_artifact
    from flows.settings import get_flow_settings

    settings = get_flow_settings()
    return publish_case_artifact(engine, case_id, zone=settings.display_timezone,
                                 flowchart=settings.artifact_flowchart)


class ArtifactRefresher:
    """Republish the artifact of every case the engine stores a change of, in the background."""

    def __init__(self, engine: Engine, publish: Publish = _publish_with_settings) -> None:
        self.engine = engine
        self.publish = publish
        self._pending: dict[str, None] = {}  # ordered set: cases changed since their last publication
        self._busy = 0  # cases taken from _pending and being published
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.published = 0

    def __call__(self, case_id: str) -> None:
        """The hook: note the case; inside a flow run the flow publishes it itself."""
        if _in_flow_run():
            return
        with self._cond:
            self._pending[case_id] = None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="svcflow-artifacts", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._busy

    def flush(self, timeout: float) -> bool:
        """Wait until every noted case is published (or failed, logged); False on timeout.

        For short-lived processes (a CLI command), which would otherwise exit first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = list(self._pending)
                self._pending.clear()
                self._busy = len(batch)
            for case_id in batch:
                try:
                    self.publish(self.engine, case_id)
                    self.published += 1
                except Exception as exc:  # publish_case_artifact never raises; another publisher might
                    log.warning("artifact of case %s not refreshed: %s", case_id, exc)
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._cond.notify_all()


def _in_flow_run() -> bool:
    """Inside a flow run (Prefect already imported then): the case flow and the sweep publish themselves."""
    import sys

    context = sys.modules.get("prefect.context")
    return context is not None and context.FlowRunContext.get() is not None


def prefect_api_configured() -> bool:
    """A Prefect API to publish to: PREFECT_API_URL in the environment, as `svcflow serve` reads it."""
    return bool(os.environ.get("PREFECT_API_URL", "").strip())


def refresh_artifacts(engine: Engine) -> ArtifactRefresher | None:
    """Hook a refresher into the engine when a Prefect API is configured and artifacts are on."""
    if not prefect_api_configured():
        return None
    from flows.settings import get_flow_settings

    if not get_flow_settings().artifacts:
        return None
    refresher = next((hook for hook in engine.on_stored if isinstance(hook, ArtifactRefresher)), None)
    if refresher is None:
        refresher = ArtifactRefresher(engine)
        engine.on_stored.append(refresher)
    return refresher


__all__ = ["ArtifactRefresher", "prefect_api_configured", "refresh_artifacts"]
