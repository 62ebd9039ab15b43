"""BPMN 2.0 files (Camunda Modeler, bpmn.io, or our own export) to a svcflow definition.

Everything svcflow runs is carried over; everything it cannot run is *reported* with the element's
id and line (lxml's `sourceline`), never dropped silently. Files written by `export_bpmn` carry our
extension (`svc:`) and come back as the same definition; files from modelers are translated:
userTasks -> human steps in their lane's role, serviceTasks -> automatic steps with the handler the
file names (`camunda:delegateExpression`, `camunda:class`, `camunda:topic`, zeebe task type) or a
reported missing one, FEEL/JUEL conditions -> CEL, boundary timers -> SLA targets with an escalation
ladder (an interrupting timer routes along an escalation edge), call activities -> sub-processes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from engine.errors import DefinitionError, Problem
from interop.bpmn_names import BPMN, CAMUNDA, CEL_LANGUAGE, ZEEBE, b, q, s, snake
from interop.feel import FeelError, to_cel, variables

IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
REFUSED = "bpmn.refused"
NOTE = "bpmn.note"
_TASK_TAGS = {"userTask", "manualTask", "task"}
_AUTO_TAGS = {"serviceTask", "sendTask", "businessRuleTask", "scriptTask"}
_GATEWAYS = {"exclusiveGateway": "exclusive", "inclusiveGateway": "inclusive", "parallelGateway": "parallel"}
_NOT_EXECUTED = {"textAnnotation", "association", "group", "dataObject", "dataObjectReference", "dataStoreReference",
                 "category"}
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_CYCLE = re.compile(r"^R(\d*)/(P[^/]+)$")
_FORM_TYPES = {"string": "string", "long": "integer", "boolean": "boolean", "date": "date", "enum": "enum"}


@dataclass
class ImportResult:
    """The definition as a YAML-ready mapping, and what the file held that it does not carry."""

    raw: dict[str, Any]
    findings: list[Problem] = field(default_factory=list)

    @property
    def refused(self) -> list[Problem]:
        return [p for p in self.findings if p.code.startswith(REFUSED)]

    def yaml(self) -> str:
        header = "# yaml-language-server: $schema=../schema/process-definition.json\n"
        return header + yaml.safe_dump(self.raw, allow_unicode=True, sort_keys=False, width=120)


def local(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


to_ident = snake


def iso_to_business(text: str) -> str:
    """ISO 8601 duration to ours ("PT4H" -> "4h", "P2D" -> "2d"); days count as working days."""
    match = _ISO.match(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(f"'{text}' is not an ISO 8601 duration svcflow reads (days, hours, minutes, seconds)")
    parts = [f"{int(n)}{u}" for n, u in zip(match.groups(), "dhms") if n and int(n)]
    return " ".join(parts) or "0m"


class _Reader:
    def __init__(self, root: etree._Element, file: str) -> None:
        self.root = root
        self.file = file
        self.findings: list[Problem] = []
        self.ids: dict[str, str] = {}  # BPMN id -> svcflow id
        self.taken: set[str] = set()
        self.ours = root.get("exporter") == "svcflow"

    # -- reporting ------------------------------------------------------------------------------------
    def report(self, element: etree._Element, message: str, hint: str | None = None, *, refused: bool = True,
               what: str = "element") -> None:
        element_id = element.get("id")
        self.findings.append(Problem(
            message=f"{local(element)} '{element_id}': {message}" if element_id else f"{local(element)}: {message}",
            file=self.file, line=element.sourceline, node=self.ids.get(element_id or ""),
            hint=hint, code=f"{REFUSED if refused else NOTE}.{what}"))

    # -- small readers ---------------------------------------------------------------------------------
    def ident(self, bpmn_id: str) -> str:
        if bpmn_id in self.ids:
            return self.ids[bpmn_id]
        base = bpmn_id if IDENT.match(bpmn_id) else to_ident(bpmn_id)
        candidate, n = base, 2
        while candidate in self.taken:
            candidate, n = f"{base}_{n}", n + 1
        self.taken.add(candidate)
        self.ids[bpmn_id] = candidate
        return candidate

    @staticmethod
    def text(element: etree._Element, name_attr: str = "name", en_attr: str = "nameEn") -> dict[str, str] | None:
        name = element.get(name_attr)
        if name is None:
            return None
        english = element.get(s(en_attr)) if name_attr == "name" else element.get(en_attr)
        if english is None:
            name = " ".join(name.split())
            return {"zh": name, "en": name}
        return {"zh": name, "en": english}

    @staticmethod
    def ext(element: etree._Element, tag: str) -> etree._Element | None:
        holder = element.find(b("extensionElements"))
        return holder.find(s(tag)) if holder is not None else None

    def ext_json(self, element: etree._Element, tag: str) -> Any:
        item = self.ext(element, tag)
        if item is None or not item.text:
            return None
        try:
            return json.loads(item.text)
        except json.JSONDecodeError as exc:
            self.report(item, f"svc:{tag} is not valid JSON ({exc.msg})", "re-export the file from svcflow",
                        what="extension")
            return None

    def description(self, element: etree._Element) -> dict[str, str] | None:
        docs = element.findall(b("documentation"))
        english = self.ext(element, "descriptionEn")
        if english is not None and len(docs) == 1:
            return {"zh": docs[0].text or "", "en": english.text or ""}
        plain = " ".join(" ".join((d.text or "").split()) for d in docs).strip()
        return {"zh": plain, "en": plain} if plain else None

    def number(self, element: etree._Element, attr: str, kind: type[int] | type[float] = int) -> int | float | None:
        """A numeric attribute; an unreadable one is reported at its element and left out."""
        text = element.get(attr)
        if text is None:
            return None
        try:
            return kind(text)
        except ValueError:
            name = etree.QName(attr).localname
            self.report(element, f"{name}={text!r} is not a {'whole ' if kind is int else ''}number: left out",
                        f"write {name} as a number, or export the file again from svcflow", what="extension")
            return None

    # -- svc extension structures -----------------------------------------------------------------------
    def levels(self, parent: etree._Element) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in parent.findall(s("level")):
            at = self.number(item, "at")
            if at is None:
                continue
            level: dict[str, Any] = {"at": at}
            if item.get("notify"):
                level["notify"] = item.get("notify", "").split()
            for attr, key in (("reassign", "reassign"), ("raisePriority", "raise_priority"), ("route", "route")):
                if item.get(attr) is not None:
                    level[key] = item.get(attr)
            if item.get("message") is not None:
                level["message"] = {"zh": item.get("message"), "en": item.get("messageEn", item.get("message"))}
            out.append(level)
        return out

    def escalation(self, parent: etree._Element) -> str | list[dict[str, Any]]:
        ladder = parent.get("ladder")
        return ladder if ladder is not None else self.levels(parent)

    @staticmethod
    def policies(parent: etree._Element) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in parent.findall(s("policy")):
            policy: dict[str, Any] = {"target": item.get("target")}
            if item.get("when") is not None:
                policy["when"] = item.get("when")
            out.append(policy)
        return out

    def sla(self, element: etree._Element) -> dict[str, Any] | None:
        item = self.ext(element, "sla")
        if item is None:
            return None
        sla: dict[str, Any] = {}
        if item.get("target") is not None:
            sla["target"] = item.get("target")
        policies = self.policies(item)
        if policies:
            sla["policies"] = policies
        sla["escalation"] = self.escalation(item)
        return sla


def _parse(source: bytes, file: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False)
    try:
        root = etree.fromstring(source, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else None
        raise DefinitionError(problems=[Problem(f"not well-formed XML: {exc.msg}", file, line,
                                                hint="open and save the file again in the modeler")]) from None
    if root.tag != b("definitions"):
        raise DefinitionError(problems=[Problem(
            f"the root element is {root.tag!r}, not BPMN 2.0 definitions", file, root.sourceline,
            hint=f"a BPMN 2.0 file starts with <bpmn:definitions xmlns:bpmn=\"{BPMN}\">")])
    return root


def import_bpmn(source: bytes, file: str = "<bpmn>", process_id: str | None = None) -> ImportResult:
    """Read a BPMN document; raises DefinitionError only when there is no process to import at all."""
    root = _parse(source, file)
    reader = _Reader(root, file)
    processes = root.findall(b("process"))
    if not processes:
        raise DefinitionError(problems=[Problem("the file holds no process", file, root.sourceline,
                                                hint="draw the process in a pool, or check the namespace")])
    chosen = None
    for process in processes:
        if process_id is not None and process.get("id") == process_id:
            chosen = process
    if chosen is None:
        if process_id is not None:
            raise DefinitionError(problems=[Problem(
                f"no process with id '{process_id}'", file, root.sourceline,
                hint="processes in the file: " + ", ".join(p.get("id", "?") for p in processes))])
        with_nodes = [p for p in processes if any(local(c).endswith(("Event", "Task", "task", "Gateway", "Activity"))
                                                  for c in p)]
        chosen = (with_nodes or processes)[0]
    for process in processes:
        if process is not chosen and len(process):
            reader.report(process, "a second process in the file is not imported",
                          "import it on its own with --process " + process.get("id", ""), what="process")
    for flow in root.iter(b("messageFlow")):
        reader.report(flow, "message flows between pools are not carried over",
                      "svcflow receives messages with `svcflow message CASE NAME`", what="message_flow")
    raw = _process(reader, root, chosen)
    return ImportResult(raw=raw, findings=reader.findings)


def import_file(path: Path, process_id: str | None = None) -> ImportResult:
    return import_bpmn(path.read_bytes(), str(path), process_id)


def _lanes(reader: _Reader, process: etree._Element) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """Lanes (roles) and each flow node's lane; the system lane of our export holds nodes without one."""
    lanes: list[dict[str, Any]] = []
    member: dict[str, str | None] = {}

    def walk(lane_set: etree._Element, nested: bool) -> None:
        for lane in lane_set.findall(b("lane")):
            children = lane.find(b("childLaneSet"))
            if children is not None:
                reader.report(lane, "nested lanes are flattened: each inner lane is a role of its own",
                              refused=False, what="lane")
                walk(children, True)
                continue
            lane_xml_id = lane.get("id", "")
            role: str | None
            if lane.get(s("system")) == "true":
                role = None
            else:
                rest = lane_xml_id[len("Lane_"):] if lane_xml_id.startswith("Lane_") else ""
                name = lane.get("name") or ""
                if IDENT.match(rest):
                    role = rest
                elif name and name.isascii() and to_ident(name) != "n_":
                    role = to_ident(name)
                else:
                    role = to_ident(lane_xml_id)
                if role not in {item["id"] for item in lanes}:
                    lanes.append({"id": role, "name": reader.text(lane) or {"zh": role, "en": role}})
            for ref in lane.findall(b("flowNodeRef")):
                member[(ref.text or "").strip()] = role

    for lane_set in process.findall(b("laneSet")):
        walk(lane_set, False)
    return lanes, member


def _handler(reader: _Reader, element: etree._Element, node_id: str) -> str:
    named = element.get(s("handler"))
    if named:
        return named
    expression = element.get(q(CAMUNDA, "delegateExpression"))
    klass = element.get(q(CAMUNDA, "class"))
    topic = element.get(q(CAMUNDA, "topic"))
    zeebe = None
    holder = element.find(b("extensionElements"))
    if holder is not None:
        definition = holder.find(q(ZEEBE, "taskDefinition"))
        zeebe = definition.get("type") if definition is not None else None
    for candidate in (topic, zeebe, expression, klass):
        if candidate:
            text = candidate.strip()
            if text.startswith(("${", "#{")) and text.endswith("}"):
                text = text[2:-1]
            return ".".join(to_ident(part) for part in text.split(".") if part)
    if element.get(q(CAMUNDA, "expression")):
        reader.report(element, "a camunda:expression is not run (svcflow never evaluates foreign code)",
                      f"register a Python handler named '{node_id}' and keep it here", what="handler")
    elif local(element) == "scriptTask":
        reader.report(element, "the script is not run (svcflow never evaluates foreign code)",
                      f"register a Python handler named '{node_id}' that does what the script did", what="script")
    else:
        reader.report(element, "names no handler",
                      f"set camunda:delegateExpression or camunda:topic, or register a handler named '{node_id}'",
                      what="handler")
    return node_id


def _form(reader: _Reader, element: etree._Element) -> list[dict[str, Any]]:
    """camunda:formData fields as a svcflow form (ids, types, labels, required, enum values)."""
    holder = element.find(b("extensionElements"))
    data = holder.find(q(CAMUNDA, "formData")) if holder is not None else None
    if data is None:
        return []
    fields: list[dict[str, Any]] = []
    for item in data.findall(q(CAMUNDA, "formField")):
        kind = _FORM_TYPES.get(item.get("type", "string"))
        if kind is None:
            reader.report(item, f"form field type '{item.get('type')}' is not supported; read as a string",
                          refused=False, what="form")
            kind = "string"
        spec: dict[str, Any] = {"id": to_ident(item.get("id", "field")), "type": kind}
        label = item.get("label")
        if label:
            spec["label"] = {"zh": label, "en": label}
        for constraint in item.iter(q(CAMUNDA, "constraint")):
            if constraint.get("name") == "required":
                spec["required"] = True
        if kind == "enum":
            spec["choices"] = [to_ident(v.get("id", "")) for v in item.findall(q(CAMUNDA, "value"))]
        fields.append(spec)
    return fields


def _call_mappings(element: etree._Element) -> tuple[dict[str, str], dict[str, str]]:
    holder = element.find(b("extensionElements"))
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    if holder is not None:
        for item in holder.findall(q(CAMUNDA, "in")):
            if item.get("source") and item.get("target"):
                inputs[to_ident(item.get("target", ""))] = f"data.{to_ident(item.get('source', ''))}"
        for item in holder.findall(q(CAMUNDA, "out")):
            if item.get("source") and item.get("target"):
                outputs[to_ident(item.get("target", ""))] = f"data.{to_ident(item.get('source', ''))}"
    return inputs, outputs


def _event_kind(element: etree._Element) -> list[str]:
    return [local(child) for child in element if local(child).endswith("EventDefinition")]


def _node(reader: _Reader, element: etree._Element, lanes: dict[str, str | None],
          messages: dict[str, str]) -> dict[str, Any] | None:
    tag = local(element)
    xml_id = element.get("id", "")
    events = _event_kind(element)
    node: dict[str, Any] = {"id": reader.ident(xml_id)}
    lane = lanes.get(xml_id)
    if tag == "startEvent":
        node["kind"] = "start"
        if events:
            reader.report(element, f"the start trigger ({', '.join(events)}) is not carried over",
                          "cases start with `svcflow start` or a schedule in the definition", what="start_trigger")
    elif tag == "endEvent":
        node["kind"] = "end"
        if element.get(s("outcome")) is not None:
            node["outcome"] = element.get(s("outcome"))
        if events and events != ["terminateEventDefinition"]:
            reader.report(element, f"the end result ({', '.join(events)}) is not thrown; the case just ends",
                          "record the result as the end's outcome", what="end_result")
    elif tag in _TASK_TAGS:
        node["kind"] = "human"
        role = lane
        if role is None:
            groups = element.get(q(CAMUNDA, "candidateGroups"))
            role = to_ident(groups.split(",")[0]) if groups else None
        if role is None:
            reader.report(element, "is in no lane and names no candidate group: no role can do it",
                          "put the task in a lane (the lane is the role)", what="role")
            role = "unassigned"
        node["lane"] = role
        if tag == "task":
            reader.report(element, "an untyped task is read as a human step", refused=False, what="task")
        if element.get(s("priority")):
            node["priority"] = element.get(s("priority"))
        if element.get(s("differentActorFrom")):
            node["different_actor_from"] = element.get(s("differentActorFrom"), "").split()
        sla = reader.sla(element)
        if sla is not None:
            node["sla"] = sla
        form = reader.ext_json(element, "form")
        node_form = form if form is not None else _form(reader, element)
        if node_form:
            node["form"] = node_form
    elif tag in _AUTO_TAGS:
        node["kind"] = "auto"
        node["handler"] = _handler(reader, element, node["id"])
        for attr, key, kind in (("retries", "retries", int), ("retryDelaySeconds", "retry_delay_seconds", float),
                                ("timeoutSeconds", "timeout_seconds", float)):
            value = reader.number(element, s(attr), kind)
            if value is not None:
                node[key] = value
        outputs = reader.ext_json(element, "outputs")
        if outputs:
            node["outputs"] = outputs
    elif tag in _GATEWAYS:
        node["kind"] = _GATEWAYS[tag]
    elif tag == "callActivity":
        node["kind"] = "subprocess"
        called = element.get("calledElement")
        holder = element.find(b("extensionElements"))
        if not called and holder is not None and holder.find(q(ZEEBE, "calledElement")) is not None:
            called = holder.find(q(ZEEBE, "calledElement")).get("processId")
        if not called:
            reader.report(element, "names no called process", "set calledElement to the process id",
                          what="call")
            called = node["id"]
        node["process"] = called if IDENT.match(called) else to_ident(called)
        inputs, outputs = _call_mappings(element)
        inputs = reader.ext_json(element, "inputs") or inputs
        outputs = reader.ext_json(element, "outputs") or outputs
        if inputs:
            node["inputs"] = inputs
        if outputs:
            node["outputs"] = outputs
    elif tag in ("intermediateCatchEvent", "receiveTask"):
        if tag == "receiveTask" or events == ["messageEventDefinition"]:
            node["kind"] = "message"
            definition = element if tag == "receiveTask" else element.find(b("messageEventDefinition"))
            ref = definition.get("messageRef") if definition is not None else None
            name = messages.get(ref or "")
            if name is None:
                reader.report(element, "names no message", "add a message and set messageRef", what="message")
                name = node["id"]
            node["message"] = name
            if element.get(s("pausesSla")) == "false":
                node["pauses_sla"] = False
            fields = reader.ext_json(element, "fields")
            if fields:
                node["fields"] = fields
        elif events == ["timerEventDefinition"]:
            node["kind"] = "timer"
            timer = element.find(b("timerEventDefinition"))
            if not _timer(reader, element, timer, node):
                return None
        else:
            reader.report(element, f"a catch event of kind {', '.join(events) or 'none'} is not run",
                          "use a timer or a message event", what="event")
            return None
    else:
        return None
    if node["kind"] in ("auto", "timer", "message", "subprocess") and lane is not None \
            and element.get(s("ownLane")) != "false":
        node["lane"] = lane
    names = reader.text(element)
    if names is not None:
        node["name"] = names
    description = reader.description(element)
    if description is not None:
        node["description"] = description
    compute = reader.ext_json(element, "compute")
    if compute:
        node["compute"] = compute
    return node


def _timer(reader: _Reader, element: etree._Element, timer: etree._Element | None, node: dict[str, Any]) -> bool:
    if element.get(s("duration")):
        node["duration"] = element.get(s("duration"))
        return True
    if timer is None:
        return False
    duration = timer.find(b("timeDuration"))
    date = timer.find(b("timeDate"))
    if duration is not None:
        try:
            node["duration"] = iso_to_business(duration.text or "")
        except ValueError as exc:
            reader.report(duration, str(exc), "write e.g. PT4H or P2D", what="timer")
            return False
        if "D" in (duration.text or "").split("T")[0]:
            reader.report(element, "ISO days are read as working days of the business calendar",
                          refused=False, what="timer_days")
        return True
    if date is not None:
        text = (date.text or "").strip()
        language = (date.get("language") or "").lower()
        node["until"] = text if "cel" in language else json.dumps(text)
        return True
    reader.report(element, "a repeating timer (timeCycle) cannot wait in a process path",
                  "use a timeDuration, or a boundary timer for reminders", what="timer")
    return False


def _boundary(reader: _Reader, element: etree._Element,
              nodes: dict[str, dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]] | None:
    """What a boundary event becomes: (kind, attached node id, ladder levels) or None when refused.

    kinds: "escalation" (our export: its flow is an escalation edge), "route" (an interrupting timer:
    SLA target whose 100 % level routes along the flow), "notify" (a non-interrupting timer: SLA
    target with reminders at each repetition; the flow it starts is not carried over).
    """
    attached = nodes.get(element.get("attachedToRef", ""))
    events = _event_kind(element)
    if attached is None:
        reader.report(element, f"is attached to '{element.get('attachedToRef')}', which is not imported",
                      what="boundary")
        return None
    if events == ["escalationEventDefinition"]:
        return "escalation", attached["id"], []
    if events != ["timerEventDefinition"]:
        reader.report(element, f"a boundary event of kind {', '.join(events) or 'none'} is not run",
                      "svcflow reacts to time limits (boundary timers) and escalations", what="boundary")
        return None
    if attached.get("kind") != "human":
        reader.report(element, "a boundary timer on a step that is not a user task is not run",
                      "time limits belong to human steps (the step's SLA)", what="boundary")
        return None
    if "sla" in attached:
        reader.report(element, "a second boundary timer on the same task is not run",
                      "give the task one time limit; its ladder can have several levels", what="boundary")
        return None
    timer = element.find(b("timerEventDefinition"))
    assert timer is not None
    if timer.find(b("timeDate")) is not None:
        reader.report(element, "a boundary timer at a fixed date is not run",
                      "give the task a time limit (timeDuration), or wait for the date with a timer event",
                      what="boundary")
        return None
    interrupting = element.get("cancelActivity", "true") != "false"
    repeats = 1
    spec = timer.find(b("timeDuration"))
    text = (spec.text or "").strip() if spec is not None else ""
    cycle = timer.find(b("timeCycle"))
    if cycle is not None:
        match = _CYCLE.match((cycle.text or "").strip())
        if match is None:
            reader.report(cycle, f"cannot read the cycle '{cycle.text}'", "write e.g. R3/PT1H", what="timer")
            return None
        repeats = int(match.group(1)) if match.group(1) else 3
        if not match.group(1):
            reader.report(cycle, "an unbounded cycle is read as 3 reminders", refused=False, what="timer_cycle")
        text = match.group(2)
    try:
        target = iso_to_business(text)
    except ValueError as exc:
        reader.report(element, str(exc), "write e.g. PT4H or P2D", what="timer")
        return None
    role = attached["lane"]
    if interrupting:
        levels = [{"at": 100, "notify": [role]}]
    else:
        levels = [{"at": 100 * (k + 1), "notify": [role]} for k in range(repeats)]
    attached["sla"] = {"target": target, "escalation": levels}
    return ("route" if interrupting else "notify"), attached["id"], levels


def _flows(reader: _Reader, process: etree._Element, nodes: dict[str, dict[str, Any]],
           boundaries: dict[str, tuple[str, str, list[dict[str, Any]]]], dropped: set[str]) -> list[dict[str, Any]]:
    defaults = {el.get("default") for el in process if el.get("default")}
    edges: list[dict[str, Any]] = []
    for flow in process.findall(b("sequenceFlow")):
        flow_xml_id = flow.get("id", "")
        source, target = flow.get("sourceRef", ""), flow.get("targetRef", "")
        edge: dict[str, Any] = {}
        if IDENT.match(flow_xml_id):
            edge["id"] = flow_xml_id
        boundary = boundaries.get(source)
        if source in dropped or target in dropped or (source not in nodes and boundary is None) \
                or target not in nodes:
            missing = next(x for x in (source, target) if x in dropped or (x not in nodes and x not in boundaries))
            reader.report(flow, f"connects '{missing}', which is not imported, so the flow is not either",
                          f"replace '{missing}' by something svcflow runs, then import again", what="flow")
            continue
        if boundary is not None:
            kind, attached, levels = boundary
            if kind == "notify":
                reader.report(flow, "the path a non-interrupting timer starts is not run; the timer becomes "
                              "reminders on the task's SLA", "model the follow-up as steps after the task",
                              what="flow")
                continue
            edge["from"] = attached
            edge["kind"] = "escalation"
            if kind == "route":
                edge.setdefault("id", f"{attached}_timeout")
                levels[0]["route"] = edge["id"]
        else:
            edge["from"] = nodes[source]["id"]
        edge["to"] = nodes[target]["id"]
        condition = flow.find(b("conditionExpression"))
        if condition is not None and (condition.text or "").strip():
            language = condition.get("language")
            if language in (CEL_LANGUAGE, "cel", "CEL"):
                edge["when"] = condition.text
            else:
                try:
                    edge["when"] = to_cel(condition.text or "", language)
                except FeelError as exc:
                    reader.report(condition, f"condition not translated: {exc.message}", exc.hint,
                                  what="condition")
        if flow_xml_id in defaults:
            edge["default"] = True
        label = reader.text(flow)
        if label is not None:
            edge["label"] = label
        edges.append(edge)
    return edges


def _infer_data(edges: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Case fields the translated conditions read that no form or handler declares, typed by use."""
    declared: set[str] = set()
    for node in nodes:
        declared.update(f["id"] for f in node.get("form", []))
        declared.update(node.get("outputs", {}))
    data: dict[str, Any] = {}
    for edge in edges:
        cel = edge.get("when") or ""
        for name in variables(cel):
            if name in declared or name in data:
                continue
            compared = re.search(rf"data\.{name}\s*(?:==|!=|<=|>=|<|>)\s*(\"|\d|true|false)", cel)
            kind = "boolean"
            if compared is not None:
                kind = {"\"": "string", "t": "boolean", "f": "boolean"}.get(compared.group(1)[0], "number")
            data[name] = {"type": kind}
    return data


def _flatten(reader: _Reader, process: etree._Element, lane_of: dict[str, str | None]) -> None:
    """Embedded sub-processes become steps of the process itself (svcflow has one level per process).

    The flows into the sub-process go to the step after its start event; the flows into its end
    events go where the sub-process's own outgoing flow went; its steps take its lane. Only the
    plain shape is flattened: one start event without a trigger, at most one flow out, no boundary
    events on it, no loop or event trigger. The rest stays refused, with the reason.
    """
    changed = True
    while changed:
        changed = False
        for sub in process.findall(b("subProcess")):
            sub_id = sub.get("id", "")
            starts = sub.findall(b("startEvent"))
            inner_flows = sub.findall(b("sequenceFlow"))
            outer_flows = process.findall(b("sequenceFlow"))
            outgoing = [f for f in outer_flows if f.get("sourceRef") == sub_id]
            start_out = [f for f in inner_flows if starts and f.get("sourceRef") == starts[0].get("id")]
            attached = [e for e in process.findall(b("boundaryEvent")) if e.get("attachedToRef") == sub_id]
            if (sub.get("triggeredByEvent") == "true" or len(starts) != 1 or _event_kind(starts[0])
                    or len(start_out) != 1 or len(outgoing) > 1 or attached
                    or sub.find(b("multiInstanceLoopCharacteristics")) is not None
                    or sub.find(b("standardLoopCharacteristics")) is not None):
                continue
            first = start_out[0].get("targetRef")
            for flow in outer_flows:
                if flow.get("targetRef") == sub_id:
                    flow.set("targetRef", first or "")
            sub.remove(starts[0])
            sub.remove(start_out[0])
            if outgoing:
                ends = {e.get("id") for e in sub.findall(b("endEvent")) if not _event_kind(e)}
                for flow in inner_flows:
                    if flow.get("targetRef") in ends:
                        flow.set("targetRef", outgoing[0].get("targetRef", ""))
                for end in sub.findall(b("endEvent")):
                    if end.get("id") in ends:
                        sub.remove(end)
                process.remove(outgoing[0])
            position = list(process).index(sub)
            moved = [c for c in sub if local(c) not in ("documentation", "extensionElements", "incoming",
                                                       "outgoing", "")]
            for offset, child in enumerate(moved):
                process.insert(position + 1 + offset, child)
                if child.get("id") and child.get("id") not in lane_of:
                    lane_of[child.get("id", "")] = lane_of.get(sub_id)
            reader.report(sub, f"the embedded sub-process is flattened: its {len(moved)} elements become part of "
                               "the process", refused=False, what="subprocess_flattened")
            process.remove(sub)
            changed = True


def _process(reader: _Reader, root: etree._Element, process: etree._Element) -> dict[str, Any]:
    messages = {m.get("id", ""): (m.get("name") or m.get("id", "")) for m in root.findall(b("message"))}
    messages = {k: v if IDENT.match(v) else to_ident(v) for k, v in messages.items()}
    lanes, lane_of = _lanes(reader, process)
    _flatten(reader, process, lane_of)
    meta = reader.ext(process, "process")
    for element in process:
        if element.get("id") and local(element) not in ("laneSet", "sequenceFlow"):
            reader.ident(element.get("id", ""))  # flow nodes keep their ids where they can, in file order
    nodes: dict[str, dict[str, Any]] = {}
    dropped: set[str] = set()
    boundary_elements: list[etree._Element] = []
    for element in process:
        tag = local(element)
        if tag in ("documentation", "extensionElements", "laneSet", "sequenceFlow", "") or tag == "ioSpecification":
            continue
        if tag == "boundaryEvent":
            boundary_elements.append(element)
            continue
        if tag in _NOT_EXECUTED:
            reader.report(element, "is documentation, not a step: not carried over", refused=False,
                          what="annotation")
            continue
        node = _node(reader, element, lane_of, messages)
        if node is None:
            if tag in ("subProcess", "adHocSubProcess", "transaction"):
                reader.report(element, f"this embedded sub-process ({len(element)} elements inside) is not run: "
                              "only one with a single plain start event, at most one flow out, no boundary "
                              "events and no loop is flattened into the process",
                              "model it as a process of its own and call it with a call activity",
                              what="subprocess")
            elif tag not in ("intermediateCatchEvent",):
                reader.report(element, "is not something svcflow runs",
                              "use tasks, gateways, timer/message events and call activities", what="element")
            dropped.add(element.get("id", ""))
            continue
        nodes[element.get("id", "")] = node
    boundaries: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
    for element in boundary_elements:
        found = _boundary(reader, element, nodes)
        if found is None:
            dropped.add(element.get("id", ""))
        else:
            boundaries[element.get("id", "")] = found
    edges = _flows(reader, process, nodes, boundaries, dropped)
    node_list = list(nodes.values())
    used_roles = {n["lane"] for n in node_list if n.get("lane")}
    for role in sorted(used_roles - {lane["id"] for lane in lanes}):
        lanes.append({"id": role, "name": {"zh": role, "en": role}})
    raw: dict[str, Any] = {
        "id": reader.ident(process.get("id", "process")) if not IDENT.match(process.get("id", "")) else process.get("id"),
        "version": (reader.number(meta, "version") or 1) if meta is not None else 1,
        "name": reader.text(process) or _participant_name(reader, root, process) or {"zh": process.get("id", ""),
                                                                                         "en": process.get("id", "")},
    }
    description = reader.description(process)
    if description is not None:
        raw["description"] = description
    raw["lanes"] = lanes
    data = reader.ext_json(process, "data")
    raw["data"] = data if data is not None else _infer_data(edges, node_list)
    for key in ("parameters", "calendar", "schedules"):
        value = reader.ext_json(process, key)
        if value is not None:
            raw[key] = value
    ladders = {item.get("id", ""): reader.levels(item) for item in _ext_all(process, "ladder")}
    if ladders:
        raw["ladders"] = ladders
    clocks = []
    for item in _ext_all(process, "clock"):
        clock: dict[str, Any] = {"id": item.get("id")}
        if item.get("name") is not None:
            clock["name"] = {"zh": item.get("name"), "en": item.get("nameEn", item.get("name"))}
        if item.get("startOn") is not None:
            clock["start_on"] = item.get("startOn")
        if item.get("stopOn"):
            clock["stop_on"] = item.get("stopOn", "").split()
        if item.get("pauseWhenWaiting") == "false":
            clock["pause_when_waiting"] = False
        clock["policies"] = reader.policies(item)
        clock["escalation"] = reader.escalation(item)
        clocks.append(clock)
    if clocks:
        raw["clocks"] = clocks
    if meta is not None and meta.get("casePriority") is not None:
        raw["case_priority"] = meta.get("casePriority")
    raw["nodes"] = node_list
    raw["edges"] = edges
    return raw


def _ext_all(element: etree._Element, tag: str) -> list[etree._Element]:
    holder = element.find(b("extensionElements"))
    return holder.findall(s(tag)) if holder is not None else []


def _participant_name(reader: _Reader, root: etree._Element, process: etree._Element) -> dict[str, str] | None:
    for participant in root.iter(b("participant")):
        if participant.get("processRef") == process.get("id"):
            return reader.text(participant)
    return None


__all__ = ["import_bpmn", "import_file", "ImportResult", "iso_to_business", "to_ident", "REFUSED", "NOTE"]
