"""Interchange at the edges: BPMN 2.0 in and out for modelers, XES / OCEL 2.0 / CSV out for process mining.

Adapters over the definition model and the event log, never a second model: export reads a
`ProcessDefinition`, import produces one (and a report of what it could not carry over).
"""
