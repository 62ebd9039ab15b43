"""Event-log exports read back by independent parsers agree with svcflow's own review statistics."""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from analytics.fold import INSTANT_KINDS
from analytics.stats import ProcessStats, compute_stats
from interop.csv_log import write_csv
from interop.eventlog import cases
from interop.ocel import write_ocel
from interop.xes import XES_NS, write_xes
from simulation.scenario import load_scenario
from simulation.simulator import SimulationResult, simulate

ROOT = Path(__file__).resolve().parent.parent
X = f"{{{XES_NS}}}"


@pytest.fixture(scope="module")
def simulated() -> SimulationResult:
    return simulate(load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml"), cases=120, seed=11)


@pytest.fixture(scope="module")
def review(simulated: SimulationResult) -> ProcessStats:
    return compute_stats(simulated.graph, simulated.events)


@pytest.fixture(scope="module")
def xes(simulated: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> etree._Element:
    out = tmp_path_factory.mktemp("xes") / "log.xes"
    write_xes(cases(simulated.events), out)
    return etree.parse(str(out)).getroot()


def _attrs(element: etree._Element) -> dict[str, str]:
    return {child.get("key", ""): child.get("value", "") for child in element if child.tag != f"{X}event"}


def _traces(root: etree._Element, process: str) -> list[etree._Element]:
    return [t for t in root.iter(f"{X}trace") if _attrs(t).get("process") == process]


def _events(trace: etree._Element) -> list[dict[str, str]]:
    return [_attrs(e) for e in trace.iter(f"{X}event")]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_xes_declares_the_standard_extensions_and_a_trace_per_case(xes: etree._Element,
                                                                   simulated: SimulationResult) -> None:
    assert {e.get("prefix") for e in xes.iter(f"{X}extension")} == {"concept", "time", "lifecycle", "org"}
    assert xes.get("xes.version") == "1849-2016"
    assert len(list(xes.iter(f"{X}trace"))) == len({e.case_id for e in simulated.events})


def test_xes_is_valid_against_the_xes_schema_subset(simulated: SimulationResult, tmp_path: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(ROOT / "interop" / "schemas" / "xes.xsd")))
    out = tmp_path / "log.xes"
    write_xes(cases(simulated.events), out)
    assert schema.validate(etree.parse(str(out))), [str(e) for e in schema.error_log][:3]


def test_ocel_is_valid_against_the_ocel2_schema_subset(simulated: SimulationResult, tmp_path: Path) -> None:
    import jsonschema

    schema = json.loads((ROOT / "interop" / "schemas" / "ocel2.schema.json").read_text(encoding="utf-8"))
    out = tmp_path / "log.json"
    write_ocel(cases(simulated.events), out)
    jsonschema.validate(json.loads(out.read_text(encoding="utf-8")), schema,
                        format_checker=jsonschema.FormatChecker())


def test_xes_case_count_matches_the_review(xes: etree._Element, review: ProcessStats) -> None:
    traces = _traces(xes, "complaint_handling")
    assert len(traces) == review.cases == 120
    outcomes = Counter(_attrs(t).get("status") for t in traces)
    assert outcomes["completed"] == review.completed


def test_xes_step_starts_and_completions_match_the_review(xes: etree._Element, review: ProcessStats) -> None:
    started: Counter[str] = Counter()
    completed: Counter[str] = Counter()
    for trace in _traces(xes, "complaint_handling"):
        for event in _events(trace):
            if event["svcflow:kind"] == "step":
                (started if event["lifecycle:transition"] == "start" else completed)[event["concept:name"]] += 1
    assert review.steps
    for node, step in review.steps.items():
        assert started[node] == step.entered, node
        if step.kind not in INSTANT_KINDS:  # the review times no instant node (start, end, gateways)
            assert completed[node] == step.completed, node


def test_xes_cycle_times_match_the_reviews_wall_clock_median(xes: etree._Element, review: ProcessStats) -> None:
    cycles = []
    for trace in _traces(xes, "complaint_handling"):
        if _attrs(trace).get("status") != "completed":
            continue
        times = [_time(e["time:timestamp"]) for e in _events(trace)]
        cycles.append((max(times) - min(times)).total_seconds() / 3600)
    assert review.cycle_median_wall_h is not None
    assert statistics.median(cycles) == pytest.approx(review.cycle_median_wall_h, abs=1e-6)


def test_xes_step_durations_match_the_reviews_wall_clock_median(xes: etree._Element, review: ProcessStats) -> None:
    durations: dict[str, list[float]] = defaultdict(list)
    for trace in _traces(xes, "complaint_handling"):
        entered: dict[str, datetime] = {}
        for event in _events(trace):
            if event["svcflow:kind"] != "step":
                continue
            name, at = event["concept:name"], _time(event["time:timestamp"])
            if event["lifecycle:transition"] == "start":
                entered[name] = at
            elif name in entered:
                durations[name].append((at - entered.pop(name)).total_seconds() / 3600)
    for node in ("register", "handle", "reply_customer", "close"):
        assert review.steps[node].median_wall_h is not None
        assert statistics.median(durations[node]) == pytest.approx(review.steps[node].median_wall_h, abs=1e-6), node


def test_xes_resources_and_roles_are_the_actors_of_human_steps(xes: etree._Element) -> None:
    completions = [e for t in _traces(xes, "complaint_handling") for e in _events(t)
                   if e["concept:name"] == "register" and e["lifecycle:transition"] == "complete"]
    assert completions and all(e["org:role"] == "front_desk" and e["org:resource"] for e in completions)


def test_xes_sla_breaches_and_escalations_are_events_of_their_own(xes: etree._Element, review: ProcessStats) -> None:
    kinds: Counter[str] = Counter()
    for trace in _traces(xes, "complaint_handling"):
        for event in _events(trace):
            if event["svcflow:kind"] == "sla":
                kinds[event["concept:name"].split(":")[0]] += 1
    breaches = review.task_sla_breached + sum(c.breached for c in review.clocks.values())
    assert kinds["sla_breached"] == breaches > 0
    assert kinds["escalated"] == sum(review.escalations_by_kind.values())


def test_ocel_links_a_complaint_to_its_major_complaint_child_and_its_customer(
        simulated: SimulationResult, tmp_path: Path) -> None:
    out = tmp_path / "log.ocel.json"
    events, objects = write_ocel(cases(simulated.events), out)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert set(document) == {"objectTypes", "eventTypes", "objects", "events"}
    assert len(document["events"]) == events and len(document["objects"]) == objects
    by_id = {o["id"]: o for o in document["objects"]}
    children = [o for o in document["objects"] if o["type"] == "case"
                and any(r["qualifier"] == "started by" for r in o["relationships"])]
    assert children, "the scenario starts major-complaint children"
    parent_id = next(r["objectId"] for r in children[0]["relationships"] if r["qualifier"] == "started by")
    assert {"objectId": children[0]["id"], "qualifier": "started"} in by_id[parent_id]["relationships"]
    assert {o["type"] for o in document["objects"]} == {"case", "customer", "task"}
    declared = {t["name"] for t in document["eventTypes"]}
    assert all(e["type"] in declared and e["relationships"][0]["qualifier"] == "case" for e in document["events"])


def test_ocel_and_csv_hold_the_same_events_as_xes(simulated: SimulationResult, xes: etree._Element,
                                                  tmp_path: Path) -> None:
    xes_events = sum(1 for _ in xes.iter(f"{X}event"))
    ocel_events, _objects = write_ocel(cases(simulated.events), tmp_path / "log.json")
    rows = write_csv(cases(simulated.events), tmp_path / "log.csv")
    with (tmp_path / "log.csv").open(encoding="utf-8", newline="") as fh:
        read_back = list(csv.DictReader(fh))
    assert xes_events == ocel_events == rows == len(read_back)
    assert {r["lifecycle"] for r in read_back} == {"start", "complete"}


def test_since_keeps_the_cases_started_from_then_on(simulated: SimulationResult) -> None:
    starts = sorted(e.at for e in simulated.events if e.type == "case_started"
                    and e.process_id == "complaint_handling")
    cut = starts[len(starts) // 2]
    kept = [c for c in cases(simulated.events, since=cut) if c.process_id == "complaint_handling"]
    assert len(kept) == compute_stats(simulated.graph, simulated.events, since=cut).cases == len(
        [s for s in starts if s >= cut])


# -- from the store, through the command line ----------------------------------------------------------
@pytest.fixture
def store_with_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two complaint cases in a real SQLite store, one registered by 'li' at the front desk."""
    from typer.testing import CliRunner

    from svcflow.cli import app

    url = f"sqlite:///{tmp_path / 'svcflow.db'}"
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for customer in ("C001", "C002"):
        result = runner.invoke(app, ["start", "complaint_handling", "--set", f"customer_id={customer}",
                                     "--set", "customer_name=张三", "--set", "tier=gold", "--set", "category=billing",
                                     "--set", "description=多扣费"])
        assert result.exit_code == 0, result.output
    task = json.loads(runner.invoke(app, ["tasks", "--role", "front_desk", "--json"]).stdout)[0]
    result = runner.invoke(app, ["complete", task["id"], "--as", "li", "--role", "front_desk", "--set",
                                 "channel=phone", "--set", "category=billing", "--set", "description=多扣费"])
    assert result.exit_code == 0, result.output
    return url


def test_the_store_is_read_in_batches_giving_the_same_events_as_store_events(store_with_cases: str) -> None:
    from engine.store.sql import Store
    from interop.eventlog import read_store

    store = Store(store_with_cases)
    expected = [tuple(e) for e in store.events()]
    assert len(expected) > 7
    assert [tuple(e) for e in read_store(store, batch=3)] == expected


def test_export_log_writes_xes_from_the_store(store_with_cases: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from svcflow.cli import app

    out = tmp_path / "cases.xes"
    result = CliRunner().invoke(app, ["export", "log", "--format", "xes", "--out", str(out),
                                      "--process", "complaint_handling"])
    assert result.exit_code == 0, result.output
    root = etree.parse(str(out)).getroot()
    traces = list(root.iter(f"{X}trace"))
    assert [(_attrs(t)["process"], _attrs(t)["version"], _attrs(t)["tier"]) for t in traces] == [
        ("complaint_handling", "1", "gold")] * 2
    resources = [e.get("org:resource") for t in traces for e in _events(t) if "org:resource" in e]
    assert resources == ["li"]


def test_export_log_refuses_an_unreadable_since_date(store_with_cases: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from svcflow.cli import app

    result = CliRunner().invoke(app, ["export", "log", "--format", "csv", "--out", str(tmp_path / "x.csv"),
                                      "--since", "last tuesday"])
    assert result.exit_code == 1 and "--since" in result.output and "Traceback" not in result.output


def test_every_object_an_ocel_export_of_one_process_links_to_is_in_it(simulated: SimulationResult,
                                                                       tmp_path: Path) -> None:
    complaints = [e for e in simulated.events if e.process_id == "complaint_handling"]
    out = tmp_path / "complaints.json"
    write_ocel(cases(complaints), out)
    document = json.loads(out.read_text(encoding="utf-8"))
    ids = {o["id"] for o in document["objects"]}
    links = [r["objectId"] for item in document["objects"] + document["events"] for r in item["relationships"]]
    assert links and all(link in ids for link in links)
    parents = {e.case_id for e in complaints if e.type == "subprocess_started"}
    assert parents, "the scenario starts major-complaint children"
    assert not [r for o in document["objects"] if o["id"] in parents for r in o["relationships"]
                if r["qualifier"] == "started"]


def _csv_rows(simulated: SimulationResult, out: Path) -> list[dict[str, str]]:
    write_csv(cases(simulated.events), out)
    with out.open(encoding="utf-8", newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["process"] == "complaint_handling"]


def test_csv_cases_step_counts_and_cycle_times_match_the_review(simulated: SimulationResult, review: ProcessStats,
                                                                tmp_path: Path) -> None:
    rows = _csv_rows(simulated, tmp_path / "log.csv")
    by_case: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_case[row["case_id"]].append(row)
    assert len(by_case) == review.cases
    assert sum(1 for r in by_case.values() if r[0]["status"] == "completed") == review.completed
    started = Counter(r["activity"] for r in rows if r["kind"] == "step" and r["lifecycle"] == "start")
    assert {node: started[node] for node in review.steps} == {node: s.entered for node, s in review.steps.items()}
    cycles = [(max(_time(r["timestamp"]) for r in case) - min(_time(r["timestamp"]) for r in case)).total_seconds()
              / 3600 for case in by_case.values() if case[0]["status"] == "completed"]
    assert review.cycle_median_wall_h is not None
    assert statistics.median(cycles) == pytest.approx(review.cycle_median_wall_h, abs=1e-6)


def test_ocel_case_objects_step_events_and_breaches_match_the_review(simulated: SimulationResult,
                                                                     review: ProcessStats, tmp_path: Path) -> None:
    out = tmp_path / "log.json"
    write_ocel(cases(simulated.events), out)
    document = json.loads(out.read_text(encoding="utf-8"))

    def attribute(item: dict[str, Any], name: str) -> str | None:
        return next((a["value"] for a in item["attributes"] if a["name"] == name), None)

    complaint_cases = {o["id"] for o in document["objects"]
                       if o["type"] == "case" and attribute(o, "process") == "complaint_handling"}
    assert len(complaint_cases) == review.cases
    events = [e for e in document["events"] if e["relationships"][0]["objectId"] in complaint_cases]
    started = Counter(e["type"][:-len(" (start)")] for e in events if e["type"].endswith(" (start)"))
    assert {node: started[node] for node in review.steps} == {node: s.entered for node, s in review.steps.items()}
    breaches = sum(1 for e in events if e["type"].startswith("sla_breached:"))
    assert breaches == review.task_sla_breached + sum(c.breached for c in review.clocks.values()) > 0
