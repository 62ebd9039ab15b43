"""Pictures and reports drawn from definitions and the event log; nothing here changes state.

- `visualize.flowchart`: `flowchart_dot(graph, overlay=None)` and `render(dot_text, fmt)`.
- `visualize.overlay`: `Overlay` (what is painted over a chart) and `case_overlay(graph, view, now)`.
- `visualize.fonts`: the CJK font the charts are drawn with.

Modules are imported by name rather than re-exported here, so that importing one part (say the
statistics) does not load the others.
"""
