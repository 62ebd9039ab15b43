"""The event log's contract (engine/run/log.py): what the interpreter writes, what every reader accepts,
and how rows stored in an older version (v1: before the log had a schema) stay readable.

The v1 fixtures in tests/fixtures/v1 were captured with the code before the contract existed
(see capture.py there): a SQLite store dumped as SQL, a simulated complaint log as stored rows, and
what that code's readers made of them. Today's readers must make the same of them.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from analytics.stats import compute_stats
from engine.definition.graph import compile_graph
from engine.definition.loader import load_text
from engine.errors import AccessDenied, InputError, LogError
from engine.run import log
from engine.run.log import LOG_SCHEMA_VERSION, SCHEMA, LogEntry
from engine.run.runtime import Engine, LogNotifier
from engine.store.sql import Store
from engine.store.tables import SCHEMA_VERSION
from engine.time.clock import FakeClock
from flows.artifacts import path_rows
from simulation.scenario import load_scenario
from simulation.simulator import simulate
from visualize.overlay import case_overlay
from analytics.weekly import build_weekly
from engine.access import Gate
from tests.test_access import COMPLAINT, complaint_at_register, gate  # noqa: F401  (fixture)

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"
ROOT = V1.parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def plain(value: Any) -> Any:
    """Results as JSON-like data, as capture.py wrote them (dataclasses, tuples and datetimes flattened)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 9)
    return value


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads((V1 / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def v1_store(tmp_path: Path) -> Iterator[Store]:
    """A store file in the format of the first release (schema 1, no versions), opened by today's code."""
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript((V1 / "store.sql").read_text(encoding="utf-8"))
    conn.close()
    store = Store(f"sqlite:///{path}")
    yield store
    store.dispose()


def v1_rows() -> list[list[Any]]:
    with gzip.open(V1 / "complaint_log.jsonl.gz", "rt", encoding="utf-8") as rows:
        return [json.loads(line) for line in rows]


def insert_rows(store: Store, rows: list[list[Any]], version: int | None = None) -> None:
    """Rows as an older (or newer) svcflow stored them: straight into the events table."""
    with store.transaction() as conn:
        conn.execute(text("INSERT INTO events (case_id, process_id, seq, at, type, node, payload, log_version) "
                          "VALUES (:c, :p, :s, :at, :t, :n, :d, :v)"),
                     [dict(c=r[0], p=r[1], s=r[2], at=datetime.fromisoformat(r[3]).astimezone(ZoneInfo("UTC"))
                           .replace(tzinfo=None).isoformat(" ", "microseconds"), t=r[4], n=r[5], d=r[6], v=version)
                      for r in rows])


# -- what the writers write ---------------------------------------------------------------------------------
def test_every_event_of_simulated_complaints_conforms_to_the_contract() -> None:
    result = simulate(load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml"), cases=30, seed=5)
    problems = [p for p in map(log.problem, result.events) if p is not None]
    assert problems == []
    assert {"case_started", "escalated", "sla_met", "task_completed", "subprocess_completed"} <= {
        e.type for e in result.events}


def test_every_event_stored_by_the_engine_conforms_to_the_contract_and_carries_the_version(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'now.db'}")
    engine = Engine(store, Engine.in_memory().library, clock=FakeClock(datetime(2025, 9, 15, 9, tzinfo=SHANGHAI)),
                    notifier=LogNotifier())
    case_id = engine.start("complaint_handling", {"tier": "gold"})
    engine.sweep(datetime(2025, 9, 30, 9, tzinfo=SHANGHAI))  # SLA warnings, breaches, escalations
    with store.engine.connect() as conn:
        versions = {row[0] for row in conn.execute(text("SELECT log_version FROM events"))}
    events = store.events(case_id)
    assert versions == {LOG_SCHEMA_VERSION}
    assert [p for p in map(log.problem, events) if p is not None] == []
    assert "escalated" in {e.type for e in events}
    store.dispose()


def test_the_contract_declares_each_type_once_with_its_fields() -> None:
    fields = {name: (spec.__required_keys__, spec.__optional_keys__) for name, spec in SCHEMA.items()}  # type: ignore[attr-defined]
    assert fields["escalated"] == ({"clock", "level", "percent", "kind"},
                                   {"notify", "reassign", "raise_priority", "route"})
    assert fields["node_completed"] == ({"token"}, {"branches"})
    assert set(log.EventType.__args__) == set(SCHEMA)  # type: ignore[attr-defined]


def test_refusals_by_the_engine_and_by_the_access_rules_are_both_in_the_contract(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    with pytest.raises(AccessDenied):  # the access rules: not a user of the directory
        gate.complete(gate.principal("mallory"), task_id, {"channel": "phone", **COMPLAINT})
    with pytest.raises(InputError):  # the engine: a form that does not fit
        gate.complete(gate.principal("wang"), task_id, {**COMPLAINT, "channel": "phone", "tier": "diamond"})
    refused = [e for e in gate.engine.store.events(case_id) if e.type == "refused"]
    # the gate names its rule (action) and the event it stood for; the engine names the event only
    assert [(e.data.get("action"), e.data.get("event")) for e in refused] == [("complete", "CompleteTask"),
                                                                              (None, "CompleteTask")]
    assert [p for p in map(log.problem, refused) if p is not None] == []


# -- old rows stay readable -----------------------------------------------------------------------------
def test_a_store_of_the_first_release_is_migrated_and_keeps_every_event(v1_store: Store, expected: dict[str, Any]) -> None:
    with v1_store.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM svcflow_schema")).scalar() == SCHEMA_VERSION
        assert conn.execute(text("SELECT count(*) FROM events WHERE log_version IS NULL")).scalar() == \
            expected["event_count"]
    assert len(v1_store.events()) == expected["event_count"]


def test_a_first_release_store_gets_the_open_task_indexes_and_lists_the_same_open_tasks(v1_store: Store) -> None:
    with v1_store.engine.connect() as conn:
        indexes = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' "
                                        "AND tbl_name = 'tasks'")).scalars())
        open_ids = set(conn.execute(text("SELECT id FROM tasks WHERE status = 'open'")).scalars())
    assert {"ix_tasks_role_open", "ix_tasks_due_open"} <= indexes
    assert not {"ix_tasks_open_role", "ix_tasks_due"} & indexes
    assert open_ids and {t["id"] for t in v1_store.tasks()} == open_ids


def test_the_weekly_report_reads_a_first_release_store_as_before(v1_store: Store, expected: dict[str, Any]) -> None:
    events = [*v1_store.events(process_id="complaint_handling"), *v1_store.events(process_id="major_complaint")]
    counted = plain(build_weekly(events, "2025-W38", SHANGHAI))
    del counted["previous"], counted["labels"]  # last week's report and the display names came later
    assert counted == expected["weekly"]


def test_a_case_overlay_and_path_table_read_a_first_release_store_as_before(v1_store: Store,
                                                                            expected: dict[str, Any]) -> None:
    engine = Engine(v1_store, Engine.in_memory().library, notifier=LogNotifier())
    view = engine.case("B")
    graph = engine.graph_for(view.state)
    assert plain(path_rows(graph, view.events, lambda v: v.isoformat() if v else "")) == expected["path_rows_B"]
    overlay = case_overlay(graph, view, datetime(2025, 9, 19, 17, 30, tzinfo=SHANGHAI))
    assert plain(overlay) == expected["overlay_B"]


V1_COMPLAINT_HASH = "5d650349479c60e9"
"""The complaint_handling version both v1 fixtures were written under (stored in store.sql)."""


def test_statistics_of_a_first_release_log_are_the_same(tmp_path: Path, v1_store: Store,
                                                        expected: dict[str, Any]) -> None:
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    insert_rows(store, v1_rows())  # no version: written before the log had one
    # the store gives instants in UTC; the reference was computed on the simulator's Shanghai times
    events = [e._replace(at=e.at.astimezone(SHANGHAI)) for e in store.events()]
    # statistics are read against the definition the cases ran on, not today's edited library
    graph = compile_graph(load_text(*v1_store.definition_source(V1_COMPLAINT_HASH)))
    assert sorted({e.type for e in events}) == expected["stats_types"]
    assert plain(compute_stats(graph, events, workers=1).to_dict()) == expected["stats"]
    store.dispose()


# -- what readers refuse ------------------------------------------------------------------------------
def test_a_stored_event_of_an_unknown_type_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'bad.db'}")
    insert_rows(store, [["K-1", "complaint_handling", 1, "2025-09-15T09:00:00+08:00", "case_reopened", None, "{}"]])
    with pytest.raises(LogError, match=r"case K-1 \(complaint_handling\), event #1 'case_reopened': unknown event type"):
        store.events()
    store.dispose()


def test_a_stored_event_without_a_field_of_its_type_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'bad.db'}")
    insert_rows(store, [["K-1", "complaint_handling", 4, "2025-09-15T09:00:00+08:00", "edge_taken", "start",
                         json.dumps({"edge": "start->register"})]])
    with pytest.raises(LogError, match=r"event #4 'edge_taken' at node 'start': missing field\(s\) to"):
        store.events()
    store.dispose()


def test_a_row_written_by_a_newer_log_version_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    insert_rows(store, [["K-1", "complaint_handling", 1, "2025-09-15T09:00:00+08:00", "incident", None,
                         json.dumps({"message": "x"})]], version=LOG_SCHEMA_VERSION + 1)
    with pytest.raises(LogError, match="upgrade svcflow"):
        store.events()
    store.dispose()


@pytest.fixture(scope="module")
def simulated() -> tuple[Any, list[LogEntry]]:
    result = simulate(load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml"), cases=20, seed=2)
    return result.graph, list(result.events)


def _broken(events: list[LogEntry], type_: str, change: Any) -> list[LogEntry]:
    index = next(i for i, e in enumerate(events) if e.type == type_ and e.process_id == "complaint_handling")
    out = list(events)
    out[index] = change(out[index])
    return out


def test_statistics_name_the_event_that_lacks_a_field_instead_of_a_key_error(simulated: tuple[Any, list[LogEntry]]) -> None:
    graph, events = simulated
    bad = _broken(events, "edge_taken", lambda e: e._replace(data={"to": e.data["to"]}))
    with pytest.raises(LogError, match=r"'edge_taken' at node '\w+': missing field\(s\) edge"):
        compute_stats(graph, bad, workers=1)


def test_statistics_refuse_an_event_type_the_contract_does_not_know(simulated: tuple[Any, list[LogEntry]]) -> None:
    graph, events = simulated
    bad = _broken(events, "node_entered", lambda e: e._replace(type="node_visited"))
    with pytest.raises(LogError, match="unknown event type 'node_visited'"):
        compute_stats(graph, bad, workers=1)


def test_the_weekly_report_names_the_event_that_lacks_a_field(simulated: tuple[Any, list[LogEntry]]) -> None:
    _, events = simulated
    bad = _broken(events, "escalated", lambda e: e._replace(data={k: v for k, v in e.data.items() if k != "kind"}))
    week = events[0].at.strftime("%G-W%V")
    with pytest.raises(LogError, match=r"'escalated'.*missing field\(s\) kind"):
        build_weekly(bad, week, SHANGHAI)


def test_a_field_the_contract_does_not_declare_is_refused() -> None:
    entry = LogEntry("K-1", "p", 3, datetime(2025, 9, 15, tzinfo=SHANGHAI), "timer_fired", "wait",
                     {"due": "2025-09-16T09:00:00+08:00", "late": True})
    with pytest.raises(LogError, match=r"field\(s\) late not in the contract of 'timer_fired'"):
        log.check(entry)


# -- payload migrations ---------------------------------------------------------------------------------
def test_payload_migrations_run_in_order_from_the_row_version() -> None:
    def v1_to_v2(type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        if type_ != "escalated":
            return payload
        return {**{k: v for k, v in payload.items() if k != "notify"}, "actions": {"notify": payload["notify"]}}

    def v2_to_v3(type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "scope": "task" if payload["clock"].startswith("task:") else "case"} \
            if type_ == "escalated" else payload

    chain = {1: v1_to_v2, 2: v2_to_v3}
    v1 = {"clock": "task:A-k3", "level": 1, "percent": 50, "kind": "warned", "notify": ["lead"]}
    assert log.upgrade("escalated", dict(v1), None, migrations=chain, current=3) == {
        "clock": "task:A-k3", "level": 1, "percent": 50, "kind": "warned", "actions": {"notify": ["lead"]},
        "scope": "task"}
    assert log.upgrade("escalated", {"clock": "case:x", "kind": "warned"}, 2, migrations=chain, current=3)["scope"] \
        == "case"


def test_a_missing_payload_migration_step_is_a_clear_error() -> None:
    with pytest.raises(LogError, match="no migration from version 2 to 3"):
        log.upgrade("incident", {"message": "x"}, 1, migrations={1: lambda t, p: p}, current=3)
