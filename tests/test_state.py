"""The case state: copies are complete and independent, JSON round-trips exactly."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, UTC

import pytest

from engine.run.state import InstanceState, SlaClock, Task, Token
from engine.store.serializer import state_from_json, state_json

NOW = datetime(2025, 9, 22, 1, 0, tzinfo=UTC)


def _state() -> InstanceState:
    state = InstanceState("C-1", "demo", "abc", NOW, data={"a": [1, {"b": 2}]})
    state.tokens["t1"] = Token("t1", "handle", NOW, task_id="C-1-k2")
    state.tasks["C-1-k2"] = Task("C-1-k2", "handle", "t1", "agent", NOW, escalation_roles=["supervisor"])
    state.clocks["task:C-1-k2"] = SlaClock("task:C-1-k2", "task", "SLA", 3600, "1h", NOW, "node:handle",
                                           running_since=NOW, fired=[50])
    return state


@pytest.mark.parametrize("obj", [Token("t", "n", NOW), Task("k", "n", "t", "r", NOW),
                                 SlaClock("c", "task", "x", 1, "1s", NOW, "node:n"), _state()])
def test_copy_carries_every_field(obj):
    """A field added to a state class must be added to its hand-written copy() too."""
    copied = obj.copy()
    for f in fields(obj):
        assert getattr(copied, f.name) == getattr(obj, f.name), f.name


def test_clone_is_independent_of_the_original():
    state = _state()
    clone = state.clone()
    clone.data["a"] = "replaced"
    clone.tokens["t1"].node = "other"
    clone.tasks["C-1-k2"].escalation_roles.append("director")
    clone.clocks["task:C-1-k2"].fired.append(75)
    assert state.data["a"] == [1, {"b": 2}] and state.tokens["t1"].node == "handle"
    assert state.tasks["C-1-k2"].escalation_roles == ["supervisor"]
    assert state.clocks["task:C-1-k2"].fired == [50]


def test_json_round_trip_is_exact():
    state = _state()
    assert state_from_json(state_json(state), state.case_id) == state
