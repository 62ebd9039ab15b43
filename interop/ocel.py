"""OCEL 2.0 JSON: the log as events over objects of three types — case, customer, task.

Objects link across processes: a case relates to its customer (so a complaint and the return
visit of the same customer meet there) and to the child cases it started (a complaint and its
major-complaint child, a return visit that opened a complaint: qualifier "started"). Events
relate to their case and, for steps done through a task, to the task.

Written as the log is read: events go straight to the file; objects, which must be listed once
with all their links, are spooled to temporary files of JSON lines and appended at the end. A link
to a case outside the export (a child of another process when one process is exported) is left
out, so every objectId resolves.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from interop.eventlog import Case

OBJECT_TYPES = [
    {"name": "case", "attributes": [{"name": n, "type": "string"} for n in
                                    ("process", "version", "tier", "outcome", "status")]},
    {"name": "customer", "attributes": []},
    {"name": "task", "attributes": [{"name": "node", "type": "string"}, {"name": "role", "type": "string"}]},
]


def _time(case: Case) -> str:
    return (case.started_at.isoformat() if case.started_at else "1970-01-01T00:00:00+00:00")


def write_ocel(traces: Iterable[Case], out: Path) -> tuple[int, int]:
    """Write OCEL 2.0 JSON to `out`; returns (events, objects)."""
    event_types: dict[str, set[str]] = {}
    customers: set[str] = set()
    events = objects = 0
    exported: set[str] = set()
    with out.open("w", encoding="utf-8") as fh, tempfile.TemporaryFile("w+", encoding="utf-8") as spool, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as case_spool:
        fh.write('{"events": [')
        for case in traces:
            objects += _spool_case(case, case_spool, customers)
            exported.add(case.case_id)
            for activity in case.events:
                etype = f"{activity.activity} ({activity.lifecycle})" if activity.kind == "step" else activity.activity
                attributes: list[dict[str, Any]] = [{"name": "lifecycle", "value": activity.lifecycle}]
                if activity.resource:
                    attributes.append({"name": "resource", "value": activity.resource})
                if activity.role:
                    attributes.append({"name": "role", "value": activity.role})
                attributes += [{"name": k, "value": v} for k, v in activity.attributes.items()]
                event_types.setdefault(etype, set()).update(a["name"] for a in attributes)
                relationships = [{"objectId": case.case_id, "qualifier": "case"}]
                if activity.task_id:
                    relationships.append({"objectId": activity.task_id, "qualifier": "task"})
                    spool.write(json.dumps({"id": activity.task_id, "type": "task", "attributes": [
                        {"name": "node", "time": activity.at.isoformat(), "value": activity.node},
                        {"name": "role", "time": activity.at.isoformat(), "value": activity.role or ""}],
                        "relationships": [{"objectId": case.case_id, "qualifier": "of case"}]},
                        ensure_ascii=False) + "\n")
                    objects += 1
                record = {"id": f"{case.case_id}#{events}", "type": etype, "time": activity.at.isoformat(),
                          "attributes": attributes, "relationships": relationships}
                fh.write(("," if events else "") + "\n" + json.dumps(record, ensure_ascii=False))
                events += 1
        fh.write('\n], "objectTypes": ' + json.dumps(OBJECT_TYPES) + ', "eventTypes": ')
        fh.write(json.dumps([{"name": name, "attributes": [{"name": a, "type": "string"} for a in sorted(attrs)]}
                             for name, attrs in sorted(event_types.items())], ensure_ascii=False))
        fh.write(', "objects": [')
        first = True
        for customer in sorted(customers):
            fh.write(("" if first else ",") + "\n" + json.dumps({"id": f"customer:{customer}", "type": "customer",
                                                                 "attributes": []}, ensure_ascii=False))
            first = False
        case_spool.seek(0)
        for line in case_spool:
            record = json.loads(line)
            record["relationships"] = [r for r in record["relationships"] if r["qualifier"] == "customer"
                                       or r["objectId"] in exported]
            fh.write(("" if first else ",") + "\n" + json.dumps(record, ensure_ascii=False))
            first = False
        spool.seek(0)
        for line in spool:
            fh.write(("" if first else ",") + "\n" + line.rstrip("\n"))
            first = False
        fh.write("\n]}\n")
    return events, objects + len(customers)


def _spool_case(case: Case, spool: IO[str], customers: set[str]) -> int:
    relationships = [{"objectId": child, "qualifier": "started"} for child in case.children]
    if case.parent_case:
        relationships.append({"objectId": case.parent_case, "qualifier": "started by"})
    if case.customer:
        customers.add(case.customer)
        relationships.append({"objectId": f"customer:{case.customer}", "qualifier": "customer"})
    attributes = [{"name": name, "time": _time(case), "value": str(value)} for name, value in
                  (("process", case.process_id), ("version", case.version), ("tier", case.tier),
                   ("outcome", case.outcome), ("status", case.status)) if value is not None]
    spool.write(json.dumps({"id": case.case_id, "type": "case", "attributes": attributes,
                            "relationships": relationships}, ensure_ascii=False) + "\n")
    return 1


__all__ = ["write_ocel", "OBJECT_TYPES"]
