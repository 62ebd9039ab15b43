"""The XML vocabulary shared by BPMN export and import: namespaces, qualified names, our extension."""

from __future__ import annotations

import re

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
ZEEBE = "http://camunda.org/schema/zeebe/1.0"
# our extension: everything svcflow runs on that BPMN has no element for (SLAs, ladders, clocks, forms...)
SVC = "https://svcflow.dev/schema/bpmn/1"

NSMAP = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "xsi": XSI, "svc": SVC}

CEL_LANGUAGE = "https://cel.dev"  # conditionExpression/@language of the conditions we write
EXPORTER = "svcflow"


def q(namespace: str, local: str) -> str:
    """An lxml qualified name, e.g. q(BPMN, "task") -> "{http://...MODEL}task"."""
    return f"{{{namespace}}}{local}"


def b(local: str) -> str:
    return q(BPMN, local)


def s(local: str) -> str:
    return q(SVC, local)


def lane_element_id(lane_id: str) -> str:
    """Lane ids get a prefix: BPMN ids share one space per file and a lane may be named like a step."""
    return f"Lane_{lane_id}"


SYSTEM_LANE_ELEMENT = "Lane_system"


def snake(text: str) -> str:
    """A snake_case identifier from a modeler id, name or variable ("Activity_0x1" -> "activity_0x1")."""
    out = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    out = re.sub(r"[^A-Za-z0-9]+", "_", out).strip("_").lower()
    if not out or not out[0].isalpha():
        out = "n_" + out
    return out
