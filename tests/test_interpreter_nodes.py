"""Graph nodes typed by kind: the compiled graph's one-kind maps and the interpreter that reads them.

The interpreter looks a node up in the map of the kind it needs (`graph.auto_tasks`, ...); a node of
another kind is not there. These tests pin what that means: the maps hold exactly the nodes of their
class, and a result delivered for a token that has since moved on to a node of another kind is
ignored (exactly-once), not mistaken for that node's result.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.definition.graph import ProcessGraph, compile_graph
from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_text
from engine.definition.model import AutoTask, HumanTask, MessageWait, SubProcess
from engine.run.events import AutoStepDone, RunAutoStep, StartCase
from engine.run.interpreter import apply
from tests.conftest import MONDAY_9AM
from tests.test_semantics import definition

LIBRARY = ProcessLibrary.from_dir()

SCORE_THEN_ASK = definition("""
data: {score: {type: integer}}
nodes:
  - {id: start, kind: start}
  - id: score
    kind: auto
    handler: test.score
    outputs: {score: {type: integer}}
  - {id: ask, kind: human, lane: agent, form: [{id: ok, type: boolean, required: true}]}
  - {id: done, kind: end}
edges:
  - {from: start, to: score}
  - {from: score, to: ask}
  - {from: ask, to: done}
""")


@pytest.mark.parametrize("process_id", LIBRARY.process_ids())
def test_the_typed_maps_hold_exactly_the_nodes_of_their_kind(process_id: str) -> None:
    graph = LIBRARY.get(process_id)
    for typed, cls, kind in ((graph.human_tasks, HumanTask, "human"), (graph.auto_tasks, AutoTask, "auto"),
                             (graph.message_waits, MessageWait, "message"),
                             (graph.subprocesses, SubProcess, "subprocess")):
        expected = [node.id for node in graph.definition.nodes if node.kind == kind]
        assert list(typed) == expected, kind  # definition order kept
        assert all(isinstance(node, cls) and graph.nodes[node_id] is node for node_id, node in typed.items())


def test_the_library_uses_every_one_kind_map() -> None:
    """The maps above are checked on real content: the eight processes have nodes of each of those kinds."""
    graphs = [LIBRARY.get(process_id) for process_id in LIBRARY.process_ids()]
    assert all(any(getattr(graph, name) for graph in graphs)
               for name in ("human_tasks", "auto_tasks", "message_waits", "subprocesses"))


def demo_graph() -> ProcessGraph:
    return compile_graph(load_text(SCORE_THEN_ASK, "demo.yaml"))


def test_a_step_result_delivered_again_after_the_case_moved_on_is_ignored() -> None:
    graph = demo_graph()
    started = apply(graph, None, StartCase("K-1", {}), MONDAY_9AM)
    run = next(c for c in started.commands if isinstance(c, RunAutoStep))
    done = AutoStepDone(run.token_id, run.attempt, {"score": 7})
    after = apply(graph, started.state, done, MONDAY_9AM + timedelta(seconds=1))
    token = after.state.tokens[run.token_id]
    assert token.node == "ask" and after.state.data["score"] == 7
    again = apply(graph, after.state, AutoStepDone(run.token_id, run.attempt, {"score": 99}),
                  MONDAY_9AM + timedelta(seconds=2))
    assert again.log == [] and again.commands == []
    assert again.state.data["score"] == 7 and again.state.tokens[run.token_id].node == "ask"
