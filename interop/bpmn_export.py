"""BPMN 2.0 XML of a process definition, with a complete diagram (bpmndi) so modelers open it.

What BPMN has an element for is written as BPMN (lanes, user/service tasks, gateways with
conditions, timer and message events, call activities, escalation boundary events); what only
svcflow runs on (SLA targets and policies, escalation ladders, case clocks, forms, typed data,
handler settings, computed fields, the second language of every name) goes into our extension
namespace (`svc:`, see bpmn_names.SVC), so that importing the file gives the same definition back.
Bilingual names: Chinese in `name`, English in `svc:nameEn`.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

from engine.definition.graph import ProcessGraph
from engine.definition.model import (
    AutoTask, CaseClock, Edge, EndNode, EscalationLevel, HumanTask, MessageWait, NodeBase, Policy, SlaSpec,
    SubProcess, Text, TimerWait,
)
from engine.time.durations import parse_duration
from interop.bpmn_layout import SYSTEM_LANE, Box, Layout, drawn_lanes, layout
from interop.bpmn_names import (
    BPMNDI, CEL_LANGUAGE, DC, DI, EXPORTER, NSMAP, SYSTEM_LANE_ELEMENT, XSI, b, lane_element_id, q, s,
)

FORMAT_VERSION = "1"
_TAGS = {
    "start": "startEvent", "end": "endEvent", "auto": "serviceTask", "human": "userTask",
    "exclusive": "exclusiveGateway", "parallel": "parallelGateway", "inclusive": "inclusiveGateway",
    "timer": "intermediateCatchEvent", "message": "intermediateCatchEvent", "subprocess": "callActivity",
}
OPTIONAL_LANE_KINDS = frozenset({"auto", "timer", "message", "subprocess"})


def flow_id(edge: Edge, index: int) -> str:
    """The sequence flow's id: the edge's own id, else its position (uppercase: never a snake_case id)."""
    return edge.id or f"Flow_{index}"


def boundary_id(index: int) -> str:
    return f"Escalation_{index}"


def message_element_id(message: str) -> str:
    return f"Message_{message}"


def iso_duration(text: str) -> str:
    """A business duration as ISO 8601 for other tools ("1d 4h" -> "P1DT4H"); svc:duration keeps ours exactly.

    ISO days are calendar days, ours are working days: the ISO text is what other tools can show,
    not what svcflow runs on.
    """
    duration = parse_duration(text)
    hours, rest = divmod(duration.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{duration.days}D" if duration.days else "")
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if time or not duration.days:
        out += "T" + (time or "0M")
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _dump(model: Any) -> Any:
    if isinstance(model, list):
        return [_dump(item) for item in model]
    if isinstance(model, dict):
        return {key: _dump(value) for key, value in model.items()}
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return model


def _names(element: etree._Element, name: Text | None) -> None:
    if name is not None:
        element.set("name", name.zh)
        element.set(s("nameEn"), name.en)


def _documentation(element: etree._Element, description: Text | None) -> None:
    """Chinese in bpmn:documentation (what modelers show), English in our extension."""
    if description is None:
        return
    etree.SubElement(element, b("documentation")).text = description.zh
    etree.SubElement(_ext(element), s("descriptionEn")).text = description.en


def _ext(element: etree._Element) -> etree._Element:
    found = element.find(b("extensionElements"))
    return found if found is not None else etree.SubElement(element, b("extensionElements"))


def _json_child(element: etree._Element, tag: str, value: Any) -> None:
    if value:
        etree.SubElement(_ext(element), s(tag)).text = _json(_dump(value))


def _levels(parent: etree._Element, levels: list[EscalationLevel]) -> None:
    for level in levels:
        item = etree.SubElement(parent, s("level"))
        item.set("at", str(level.at))
        if level.notify:
            item.set("notify", " ".join(level.notify))
        for attr in ("reassign", "raise_priority", "route"):
            value = getattr(level, attr)
            if value is not None:
                item.set(attr.replace("_p", "P"), value)
        if level.message is not None:
            item.set("message", level.message.zh)
            item.set("messageEn", level.message.en)


def _escalation(parent: etree._Element, escalation: str | list[EscalationLevel]) -> None:
    if isinstance(escalation, str):
        parent.set("ladder", escalation)
    else:
        _levels(parent, escalation)


def _policies(parent: etree._Element, policies: list[Policy]) -> None:
    for policy in policies:
        item = etree.SubElement(parent, s("policy"))
        if policy.when is not None:
            item.set("when", policy.when)
        item.set("target", policy.target)


def _sla(element: etree._Element, sla: SlaSpec) -> None:
    item = etree.SubElement(_ext(element), s("sla"))
    if sla.target is not None:
        item.set("target", sla.target)
    _policies(item, sla.policies)
    _escalation(item, sla.escalation)


def _clock(parent: etree._Element, clock: CaseClock) -> None:
    item = etree.SubElement(parent, s("clock"))
    item.set("id", clock.id)
    if clock.name is not None:
        item.set("name", clock.name.zh)
        item.set("nameEn", clock.name.en)
    if clock.start_on is not None:
        item.set("startOn", clock.start_on)
    if clock.stop_on:
        item.set("stopOn", " ".join(clock.stop_on))
    if not clock.pause_when_waiting:
        item.set("pauseWhenWaiting", "false")
    _policies(item, clock.policies)
    _escalation(item, clock.escalation)


def _process_extensions(process: etree._Element, graph: ProcessGraph) -> None:
    definition = graph.definition
    ext = _ext(process)
    meta = etree.SubElement(ext, s("process"))
    meta.set("version", str(definition.version))
    meta.set("formatVersion", FORMAT_VERSION)
    if definition.case_priority is not None:
        meta.set("casePriority", definition.case_priority)
    for ladder_id, levels in definition.ladders.items():
        ladder = etree.SubElement(ext, s("ladder"))
        ladder.set("id", ladder_id)
        _levels(ladder, levels)
    for clock in definition.clocks:
        _clock(ext, clock)
    _json_child(process, "data", definition.data)
    _json_child(process, "parameters", definition.parameters)
    if definition.calendar is not None:
        _json_child(process, "calendar", definition.calendar)
    _json_child(process, "schedules", definition.schedules)


def _node_element(process: etree._Element, node: NodeBase) -> etree._Element:
    kind = node.kind  # type: ignore[attr-defined]
    element = etree.SubElement(process, b(_TAGS[kind]))
    element.set("id", node.id)
    _names(element, node.name)
    _documentation(element, node.description)
    if kind in OPTIONAL_LANE_KINDS and getattr(node, "lane", None) is None:
        element.set(s("ownLane"), "false")  # drawn in a lane, but runs without one
    if isinstance(node, EndNode) and node.outcome is not None:
        element.set(s("outcome"), node.outcome)
    if isinstance(node, AutoTask):
        element.set(s("handler"), node.handler)
        element.set("implementation", "##unspecified")
        if node.retries:
            element.set(s("retries"), str(node.retries))
        if node.retry_delay_seconds:
            element.set(s("retryDelaySeconds"), repr(node.retry_delay_seconds))
        if node.timeout_seconds is not None:
            element.set(s("timeoutSeconds"), repr(node.timeout_seconds))
        _json_child(element, "outputs", node.outputs)
    if isinstance(node, HumanTask):
        if node.priority is not None:
            element.set(s("priority"), node.priority)
        if node.different_actor_from:
            element.set(s("differentActorFrom"), " ".join(node.different_actor_from))
        if node.sla is not None:
            _sla(element, node.sla)
        _json_child(element, "form", node.form)
    if isinstance(node, MessageWait):
        if not node.pauses_sla:
            element.set(s("pausesSla"), "false")
        _json_child(element, "fields", node.fields)
    if isinstance(node, SubProcess):
        element.set("calledElement", node.process)
        _json_child(element, "inputs", node.inputs)
        _json_child(element, "outputs", node.outputs)
    _json_child(element, "compute", node.compute)
    return element


def _event_definition(element: etree._Element, node: NodeBase) -> None:
    if isinstance(node, TimerWait):
        timer = etree.SubElement(element, b("timerEventDefinition"))
        if node.duration is not None:
            element.set(s("duration"), node.duration)
            expr = etree.SubElement(timer, b("timeDuration"))
            expr.text = iso_duration(node.duration)
        else:
            expr = etree.SubElement(timer, b("timeDate"))
            expr.set("language", CEL_LANGUAGE)
            expr.text = node.until
        expr.set(q(XSI, "type"), "bpmn:tFormalExpression")
    elif isinstance(node, MessageWait):
        etree.SubElement(element, b("messageEventDefinition")).set("messageRef", message_element_id(node.message))


def _shape(plane: etree._Element, element_id: str, box: Box, **attrs: str) -> etree._Element:
    shape = etree.SubElement(plane, q(BPMNDI, "BPMNShape"))
    shape.set("id", f"{element_id}_di")
    shape.set("bpmnElement", element_id)
    for key, value in attrs.items():
        shape.set(key, value)
    bounds = etree.SubElement(shape, q(DC, "Bounds"))
    for key in ("x", "y", "width", "height"):
        bounds.set(key, f"{getattr(box, key):g}")
    return shape


def _edge(plane: etree._Element, element_id: str, points: list[tuple[float, float]]) -> None:
    shape = etree.SubElement(plane, q(BPMNDI, "BPMNEdge"))
    shape.set("id", f"{element_id}_di")
    shape.set("bpmnElement", element_id)
    for x, y in points:
        waypoint = etree.SubElement(shape, q(DI, "waypoint"))
        waypoint.set("x", f"{x:g}")
        waypoint.set("y", f"{y:g}")


def _fallback_points(source: Box, target: Box) -> list[tuple[float, float]]:
    return [source.centre, target.centre]


def export_bpmn(graph: ProcessGraph) -> bytes:
    """The definition as a BPMN 2.0 document (UTF-8 bytes); the same graph gives the same bytes."""
    definition = graph.definition
    pid = definition.id
    places = layout(graph)
    root = etree.Element(b("definitions"), nsmap=NSMAP)
    root.set("id", f"Definitions_{pid}")
    root.set("targetNamespace", f"https://svcflow.dev/process/{pid}")
    root.set("exporter", EXPORTER)
    root.set("exporterVersion", FORMAT_VERSION)
    messages = sorted({node.message for node in definition.nodes if isinstance(node, MessageWait)})
    for message in messages:
        item = etree.SubElement(root, b("message"))
        item.set("id", message_element_id(message))
        item.set("name", message)
    escalation_edges = [(i, e) for i, e in enumerate(definition.edges) if e.kind == "escalation"]
    for index, edge in escalation_edges:
        item = etree.SubElement(root, b("escalation"))
        item.set("id", f"EscalationCode_{index}")
        item.set("escalationCode", edge.key)
    collaboration = etree.SubElement(root, b("collaboration"))
    collaboration.set("id", f"Collaboration_{pid}")
    participant = etree.SubElement(collaboration, b("participant"))
    participant.set("id", f"Participant_{pid}")
    participant.set("processRef", pid)
    _names(participant, definition.name)

    process = etree.SubElement(root, b("process"))
    process.set("id", pid)
    process.set("isExecutable", "true")
    _names(process, definition.name)
    _documentation(process, definition.description)
    _process_extensions(process, graph)

    lane_of = drawn_lanes(graph)
    lane_set = etree.SubElement(process, b("laneSet"))
    lane_set.set("id", f"LaneSet_{pid}")
    lane_elements: dict[str, etree._Element] = {}
    for lane in definition.lanes:
        item = etree.SubElement(lane_set, b("lane"))
        item.set("id", lane_element_id(lane.id))
        _names(item, lane.name)
        lane_elements[lane.id] = item
    if SYSTEM_LANE in lane_of.values():
        item = etree.SubElement(lane_set, b("lane"))
        item.set("id", SYSTEM_LANE_ELEMENT)
        item.set("name", "系统")
        item.set(s("nameEn"), "System")
        item.set(s("system"), "true")
        lane_elements[SYSTEM_LANE] = item
    boundaries: dict[int, str] = {}
    for node in definition.nodes:
        etree.SubElement(lane_elements[lane_of[node.id]], b("flowNodeRef")).text = node.id
    for index, edge in escalation_edges:
        boundaries[index] = boundary_id(index)
        etree.SubElement(lane_elements[lane_of[edge.source]], b("flowNodeRef")).text = boundary_id(index)

    elements: dict[str, etree._Element] = {}
    for node in definition.nodes:
        elements[node.id] = _node_element(process, node)
    for index, edge in escalation_edges:
        event = etree.SubElement(process, b("boundaryEvent"))
        event.set("id", boundaries[index])
        event.set("attachedToRef", edge.source)
        event.set("cancelActivity", "true")
        etree.SubElement(event, b("outgoing")).text = flow_id(edge, index)
        etree.SubElement(event, b("escalationEventDefinition")).set("escalationRef", f"EscalationCode_{index}")
    for index, edge in enumerate(definition.edges):
        fid = flow_id(edge, index)
        if edge.kind != "escalation":
            etree.SubElement(elements[edge.source], b("outgoing")).text = fid
        etree.SubElement(elements[edge.target], b("incoming")).text = fid
        if edge.default:
            elements[edge.source].set("default", fid)
    # BPMN wants incoming/outgoing before event definitions: event definitions go last
    for node in definition.nodes:
        _event_definition(elements[node.id], node)
        _move_extensions_first(elements[node.id])
    for index, edge in enumerate(definition.edges):
        flow = etree.SubElement(process, b("sequenceFlow"))
        flow.set("id", flow_id(edge, index))
        flow.set("sourceRef", boundaries.get(index, edge.source))
        flow.set("targetRef", edge.target)
        _names(flow, edge.label)
        if edge.when is not None:
            condition = etree.SubElement(flow, b("conditionExpression"))
            condition.set(q(XSI, "type"), "bpmn:tFormalExpression")
            condition.set("language", CEL_LANGUAGE)
            condition.text = edge.when
    _move_extensions_first(process)
    _diagram(root, graph, places, lane_elements, boundaries)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _move_extensions_first(element: etree._Element) -> None:
    """documentation, extensionElements, incoming, outgoing, then the rest: the order the BPMN schema requires."""
    rank = {b("documentation"): 0, b("extensionElements"): 1, b("incoming"): 2, b("outgoing"): 3}
    children = list(element)
    for child in children:
        element.remove(child)
    element.extend(sorted(children, key=lambda child: rank.get(child.tag, 4)))  # stable: same-rank order kept


def _diagram(root: etree._Element, graph: ProcessGraph, places: Layout,
             lane_elements: dict[str, etree._Element], boundaries: dict[int, str]) -> None:
    definition = graph.definition
    diagram = etree.SubElement(root, q(BPMNDI, "BPMNDiagram"))
    diagram.set("id", f"Diagram_{definition.id}")
    plane = etree.SubElement(diagram, q(BPMNDI, "BPMNPlane"))
    plane.set("id", f"Plane_{definition.id}")
    plane.set("bpmnElement", f"Collaboration_{definition.id}")
    _shape(plane, f"Participant_{definition.id}", places.pool, isHorizontal="true")
    for lane_id, element in lane_elements.items():
        _shape(plane, element.get("id", ""), places.lanes[lane_id], isHorizontal="true")
    for node in definition.nodes:
        attrs = {"isMarkerVisible": "true"} if node.kind == "exclusive" else {}
        _shape(plane, node.id, places.nodes[node.id], **attrs)
    for index, event_id in boundaries.items():
        host = places.nodes[definition.edges[index].source]
        size = 36.0
        box = Box(round(host.x + host.width - size - 4, 1), round(host.y + host.height - size / 2, 1), size, size)
        _shape(plane, event_id, box)
    for index, edge in enumerate(definition.edges):
        points = places.edges.get(index)
        if not points or len(points) < 2:
            points = _fallback_points(places.nodes[edge.source], places.nodes[edge.target])
        if index in boundaries:
            host = places.nodes[edge.source]
            points = [(host.x + host.width - 22, host.y + host.height + 18), *points[1:]]
        _edge(plane, flow_id(edge, index), points)


__all__ = ["export_bpmn", "flow_id", "iso_duration", "OPTIONAL_LANE_KINDS", "FORMAT_VERSION"]
