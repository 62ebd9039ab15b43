"""IEEE 1849-2016 XES, written as the log is read (lxml's incremental writer): one trace per case.

Standard extensions: concept (names), time (timestamps), lifecycle (start / complete per step),
org (resource = the person, role = their role). Case attributes: process, version, tier,
outcome, status, parent case. SLA warnings, breaches and escalations are events of their own
("sla_breached:<step or clock>"), with the level, percent and roles notified.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from interop.eventlog import Case

XES_NS = "http://www.xes-standard.org/"
EXTENSIONS = (
    ("Concept", "concept", "http://www.xes-standard.org/concept.xesext"),
    ("Time", "time", "http://www.xes-standard.org/time.xesext"),
    ("Lifecycle", "lifecycle", "http://www.xes-standard.org/lifecycle.xesext"),
    ("Organizational", "org", "http://www.xes-standard.org/org.xesext"),
)


def xes_time(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def _attr(kind: str, key: str, value: Any) -> etree._Element:
    element = etree.Element(kind)
    element.set("key", key)
    element.set("value", str(value).lower() if isinstance(value, bool) else str(value))
    return element


def _typed(key: str, value: Any) -> etree._Element:
    if isinstance(value, bool):
        return _attr("boolean", key, value)
    if isinstance(value, int):
        return _attr("int", key, value)
    if isinstance(value, float):
        return _attr("float", key, value)
    if isinstance(value, datetime):
        return _attr("date", key, xes_time(value))
    return _attr("string", key, value)


def trace_element(case: Case) -> etree._Element:
    trace = etree.Element("trace")
    trace.append(_attr("string", "concept:name", case.case_id))
    for key, value in (("process", case.process_id), ("version", case.version), ("tier", case.tier),
                       ("outcome", case.outcome), ("status", case.status), ("parent_case", case.parent_case),
                       ("customer", case.customer)):
        if value is not None:
            trace.append(_typed(key, value))
    for activity in case.events:
        event = etree.SubElement(trace, "event")
        event.append(_attr("string", "concept:name", activity.activity))
        event.append(_attr("string", "lifecycle:transition", activity.lifecycle))
        event.append(_attr("date", "time:timestamp", xes_time(activity.at)))
        if activity.resource:
            event.append(_attr("string", "org:resource", activity.resource))
        if activity.role:
            event.append(_attr("string", "org:role", activity.role))
        event.append(_attr("string", "svcflow:kind", activity.kind))
        for key, value in activity.attributes.items():
            event.append(_typed(f"svcflow:{key}", value))
    return trace


def write_xes(traces: Iterable[Case], out: Path) -> int:
    """Write the cases as XES to `out`; returns how many traces were written."""
    count = 0
    with etree.xmlfile(str(out), encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element("log", {"xes.version": "1849-2016", "xes.features": "", "xmlns": XES_NS}):
            for name, prefix, uri in EXTENSIONS:
                xf.write(etree.Element("extension", {"name": name, "prefix": prefix, "uri": uri}))
            trace_globals = etree.Element("global", {"scope": "trace"})
            trace_globals.append(_attr("string", "concept:name", "UNKNOWN"))
            xf.write(trace_globals)
            event_globals = etree.Element("global", {"scope": "event"})
            event_globals.append(_attr("string", "concept:name", "UNKNOWN"))
            event_globals.append(_attr("string", "lifecycle:transition", "complete"))
            event_globals.append(_attr("date", "time:timestamp", "1970-01-01T00:00:00.000+00:00"))
            xf.write(event_globals)
            xf.write(etree.Element("classifier", {"name": "Activity", "keys": "concept:name lifecycle:transition"}))
            xf.write(_attr("string", "concept:name", "svcflow event log"))
            for case in traces:
                xf.write(trace_element(case))
                count += 1
    return count


__all__ = ["write_xes", "XES_NS", "xes_time", "trace_element"]
