"""Knobs of the Prefect layer, on top of the engine's settings (same SVCFLOW_ prefix).

Kept here rather than in engine/settings.py because the engine must not know that flow runs
pause, poll or get served; the values still come from the same environment variables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.settings import Settings


class FlowSettings(Settings):
    """Engine settings plus how case flows wait for people and how the sweep is served."""

    human_wait: Literal["auto", "pause", "suspend", "none"] = Field(
        default="auto",
        description="how a case flow waits at a human step: auto = suspend when run from a deployment "
        "(frees the worker), pause otherwise (keeps the process); none = end the segment",
    )
    pause_poll_seconds: float = Field(default=5.0, gt=0, description="how often a paused run checks for its input")
    pause_min_seconds: int = Field(default=3600, ge=1, description="shortest wait at a human step before the run ends")
    pause_margin_seconds: int = Field(default=3600, ge=0, description="wait this long past the task's due time")
    pause_default_seconds: int = Field(default=7 * 86400, ge=1, description="wait for tasks without a due time")
    pause_max_seconds: int = Field(default=30 * 86400, ge=1,
                                   description="longest wait at a human step: a blocking pause holds a runner slot")
    serve_limit: int = Field(default=4, ge=1, description="most flow runs `svcflow serve` runs at once when no "
                             "--limit is given: each run is a process, and a suspended run holds no slot")
    reconcile: bool = Field(default=True, description="served, the sweep gives every case that waits for a person "
                            "one live waiting run (flows/waiting.py)")
    stale_run_seconds: int = Field(default=1800, ge=1, description="a Running / Pending case run older than this "
                                   "is taken for dead by the reconciliation and run again")
    reconcile_batch: int = Field(default=100, ge=1, description="most new waiting runs one reconciliation pass "
                                 "starts; the next passes start the rest")
    revive_max: int = Field(default=5, ge=1, description="how often a dead run is run again before a new run "
                            "replaces it")
    case_deployment: str = Field(default="svcflow-case/run-case", description="deployment that continues a case")
    artifacts: bool = Field(default=True, description="publish a Markdown artifact per case after each segment")
    artifact_flowchart: bool = Field(default=True, description="embed the case's flowchart (SVG, ~100 kB) in it")


def get_flow_settings() -> FlowSettings:
    return FlowSettings()
