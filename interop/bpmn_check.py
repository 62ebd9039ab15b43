"""Structural check of BPMN 2.0 documents, by hand with lxml (the OMG XSDs are large and import each other).

It checks what readers (bpmn.io, Camunda, pm4py's BPMN importer) depend on: elements of the BPMN
namespaces are known ones, required attributes are there, ids are unique NCNames, every reference
(sourceRef, targetRef, incoming/outgoing, flowNodeRef, attachedToRef, messageRef, escalationRef,
default, processRef, bpmnElement) resolves, and the diagram is complete: a shape with bounds for
every flow node, lane and participant, an edge with at least two waypoints for every sequence flow.
"""

from __future__ import annotations

import re

from lxml import etree

from interop.bpmn_names import BPMN, BPMNDI, DC, DI, q

FLOW_NODES = frozenset({
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "task",
    "userTask", "serviceTask", "manualTask", "sendTask", "receiveTask", "scriptTask", "businessRuleTask",
    "callActivity", "subProcess", "exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway",
    "complexGateway",
})
KNOWN = FLOW_NODES | {
    "definitions", "process", "collaboration", "participant", "messageFlow", "laneSet", "lane", "flowNodeRef",
    "childLaneSet", "sequenceFlow", "conditionExpression", "documentation", "extensionElements", "incoming",
    "outgoing", "message", "escalation", "error", "signal", "timerEventDefinition", "timeDuration", "timeDate",
    "timeCycle", "messageEventDefinition", "escalationEventDefinition", "errorEventDefinition",
    "terminateEventDefinition", "signalEventDefinition", "conditionalEventDefinition", "textAnnotation", "text",
    "association", "dataObject", "dataObjectReference", "dataStoreReference", "group", "category",
    "categoryValue", "property", "ioSpecification", "dataInput", "dataOutput", "inputSet", "outputSet",
    "multiInstanceLoopCharacteristics", "standardLoopCharacteristics", "loopCardinality", "completionCondition",
    "condition", "script",
}
REQUIRED = {
    "definitions": ("targetNamespace",), "sequenceFlow": ("id", "sourceRef", "targetRef"),
    "participant": ("id",), "boundaryEvent": ("id", "attachedToRef"), "lane": ("id",), "process": ("id",),
    "callActivity": ("id",), "message": ("id",), "escalation": ("id",),
}
NCNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def check_bpmn(source: bytes) -> list[str]:
    """Every structural problem of the document, as "line N: what" texts; empty when it is sound."""
    problems: list[str] = []
    root = etree.fromstring(source, etree.XMLParser(resolve_entities=False, no_network=True))

    def bad(element: etree._Element, text: str) -> None:
        problems.append(f"line {element.sourceline}: {text}")

    if root.tag != q(BPMN, "definitions"):
        return [f"line {root.sourceline}: the root is {root.tag}, not bpmn:definitions"]
    ids: dict[str, etree._Element] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        name = etree.QName(element.tag)
        if name.namespace == BPMN:
            if name.localname not in KNOWN:
                bad(element, f"unknown BPMN element {name.localname}")
            for attr in REQUIRED.get(name.localname, ()):
                if not element.get(attr):
                    bad(element, f"{name.localname} needs the attribute {attr}")
            if name.localname in FLOW_NODES and not element.get("id"):
                bad(element, f"{name.localname} needs an id")
        element_id = element.get("id")
        if element_id is not None:
            if not NCNAME.match(element_id):
                bad(element, f"id '{element_id}' is not an NCName")
            if element_id in ids:
                bad(element, f"id '{element_id}' is used twice")
            ids[element_id] = element

    def resolves(element: etree._Element, ref: str | None, what: str, *tags: str) -> None:
        target = ids.get(ref or "")
        if target is None:
            bad(element, f"{what} '{ref}' does not resolve")
        elif tags and etree.QName(target.tag).localname not in tags:
            bad(element, f"{what} '{ref}' is a {etree.QName(target.tag).localname}, not {' or '.join(tags)}")

    flows = [e for e in root.iter(q(BPMN, "sequenceFlow"))]
    for flow in flows:
        resolves(flow, flow.get("sourceRef"), "sourceRef", *FLOW_NODES)
        resolves(flow, flow.get("targetRef"), "targetRef", *FLOW_NODES)
    for tag in ("incoming", "outgoing"):
        for ref in root.iter(q(BPMN, tag)):
            resolves(ref, (ref.text or "").strip(), tag, "sequenceFlow")
    for ref in root.iter(q(BPMN, "flowNodeRef")):
        resolves(ref, (ref.text or "").strip(), "flowNodeRef", *FLOW_NODES)
    for event in root.iter(q(BPMN, "boundaryEvent")):
        resolves(event, event.get("attachedToRef"), "attachedToRef", *FLOW_NODES)
    for definition in root.iter(q(BPMN, "messageEventDefinition")):
        if definition.get("messageRef"):
            resolves(definition, definition.get("messageRef"), "messageRef", "message")
    for definition in root.iter(q(BPMN, "escalationEventDefinition")):
        if definition.get("escalationRef"):
            resolves(definition, definition.get("escalationRef"), "escalationRef", "escalation")
    for participant in root.iter(q(BPMN, "participant")):
        if participant.get("processRef"):
            resolves(participant, participant.get("processRef"), "processRef", "process")
    for element in root.iter():
        if isinstance(element.tag, str) and element.get("default"):
            resolves(element, element.get("default"), "default", "sequenceFlow")
            flow = ids.get(element.get("default", ""))
            if flow is not None and flow.get("sourceRef") != element.get("id"):
                bad(element, f"default flow '{element.get('default')}' does not leave this element")
    shapes: dict[str, etree._Element] = {}
    edges: dict[str, etree._Element] = {}
    for shape in root.iter(q(BPMNDI, "BPMNShape")):
        resolves(shape, shape.get("bpmnElement"), "bpmnElement")
        shapes[shape.get("bpmnElement", "")] = shape
        bounds = shape.find(q(DC, "Bounds"))
        if bounds is None or any(bounds.get(k) is None for k in ("x", "y", "width", "height")):
            bad(shape, "a shape needs dc:Bounds with x, y, width and height")
    for edge in root.iter(q(BPMNDI, "BPMNEdge")):
        resolves(edge, edge.get("bpmnElement"), "bpmnElement")
        edges[edge.get("bpmnElement", "")] = edge
        if len(edge.findall(q(DI, "waypoint"))) < 2:
            bad(edge, f"the edge of '{edge.get('bpmnElement')}' needs at least two waypoints")
    if root.find(q(BPMNDI, "BPMNDiagram")) is None:
        bad(root, "no bpmndi:BPMNDiagram: modelers cannot draw the process")
    for element_id, element in ids.items():
        name = etree.QName(element.tag).localname if isinstance(element.tag, str) else ""
        if etree.QName(element.tag).namespace != BPMN:
            continue
        if name in FLOW_NODES | {"lane", "participant"} and element_id not in shapes:
            bad(element, f"{name} '{element_id}' has no diagram shape")
        if name == "sequenceFlow" and element_id not in edges:
            bad(element, f"sequenceFlow '{element_id}' has no diagram edge")
    return problems


__all__ = ["check_bpmn", "FLOW_NODES"]
