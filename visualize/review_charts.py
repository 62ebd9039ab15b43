"""The review's process-mining charts as inline SVG: a dotted chart and a performance spectrum.

- Dotted chart: one row per case (the sampled ones, by start), one dot per activity at the instant it
  ended, coloured by activity; the spread of a row is the case's duration, gaps are where it waited.
- Performance spectrum: for the busiest arcs (A then B), each occurrence is a line from the instant A
  ended (upper edge) to the instant B ended (lower edge); steep lines are quick, slanted ones slow,
  bunches of parallel lines are batches. Lines slower than the arc's p90 are drawn in red.

Both are drawn by hand (no plotting library): plain SVG the browser and a PDF printer both show.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape

from analytics.quantiles import quantile
from analytics.views import Arc, SampleCase

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777", "#4b5563",
           "#ca8a04", "#7c3aed", "#059669")
WIDTH = 1100
LEFT = 150
RIGHT = 20


def _scale(cases: list[SampleCase]) -> tuple[datetime, datetime, Callable[[datetime], float]]:
    first = min(c.started for c in cases)
    last = max([c.ended or c.started for c in cases] + [t for c in cases for _n, t in c.activities])
    span = max((last - first).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (at - first).total_seconds() / span, 1)

    return first, last, x


def _axis(first: datetime, last: datetime, y: float) -> str:
    return (f'<text x="{LEFT}" y="{y}" font-size="11" fill="#6b7280">{first:%Y-%m-%d %H:%M}</text>'
            f'<text x="{WIDTH - RIGHT}" y="{y}" font-size="11" fill="#6b7280" text-anchor="end">'
            f"{last:%Y-%m-%d %H:%M}</text>")


def dotted_chart_svg(cases: list[SampleCase], label: Callable[[str], str]) -> str:
    """Cases (rows) against time (x), a dot per activity completion; empty text when there is nothing."""
    if not cases:
        return ""
    first, last, x = _scale(cases)
    row = max(2.0, min(8.0, 600.0 / len(cases)))
    colours: dict[str, str] = {}
    squares: set[str] = set()  # past the palette's twelve colours, activities are drawn as squares
    for case in cases:
        for node, _at in case.activities:
            if node not in colours:
                if len(colours) >= len(PALETTE):
                    squares.add(node)
                colours[node] = PALETTE[len(colours) % len(PALETTE)]
    top = 10.0
    height = top + row * len(cases) + 30
    legend_rows = (len(colours) + 3) // 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="dotted-chart" width="{WIDTH}" '
             f'height="{height + 18 * legend_rows:.0f}" font-family="sans-serif">']
    for index, case in enumerate(cases):
        y = top + row * index + row / 2
        end = case.ended or (case.activities[-1][1] if case.activities else case.started)
        parts.append(f'<line x1="{x(case.started)}" y1="{y:.1f}" x2="{x(end)}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        radius = max(1.2, row / 2.5)
        for node, at in case.activities:
            title = f"<title>{escape(case.case_id)} · {escape(label(node))} · {at:%Y-%m-%d %H:%M}</title>"
            if node in squares:
                parts.append(f'<rect x="{x(at) - radius:.1f}" y="{y - radius:.1f}" width="{2 * radius:.1f}" '
                             f'height="{2 * radius:.1f}" fill="{colours[node]}">{title}</rect>')
            else:
                parts.append(f'<circle cx="{x(at)}" cy="{y:.1f}" r="{radius:.1f}" fill="{colours[node]}">{title}</circle>')
    parts.append(f'<text x="4" y="{top + 10}" font-size="11" fill="#6b7280">cases ↓ (by start)</text>')
    parts.append(_axis(first, last, top + row * len(cases) + 16))
    for index, (node, colour) in enumerate(colours.items()):
        lx, ly = 10 + (index % 4) * 270, height + 4 + (index // 4) * 18
        mark = (f'<rect x="{lx}" y="{ly - 5}" width="10" height="10" fill="{colour}"/>' if node in squares
                else f'<circle cx="{lx + 5}" cy="{ly}" r="5" fill="{colour}"/>')
        parts.append(f'{mark}<text x="{lx + 14}" y="{ly + 4}" font-size="11">{escape(label(node))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def performance_spectrum_svg(cases: list[SampleCase], arcs: list[Arc], label: Callable[[str], str],
                             top_arcs: int = 4) -> str:
    """One band per busy arc; a line per occurrence from A's completion (top) to B's completion (bottom)."""
    chosen = [a for a in arcs if a.source != a.target][:top_arcs]
    if not cases or not chosen:
        return ""
    first, last, x = _scale(cases)
    band, gap = 70.0, 34.0
    height = len(chosen) * (band + gap) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="performance-spectrum" width="{WIDTH}" '
             f'height="{height:.0f}" font-family="sans-serif">']
    for index, arc in enumerate(chosen):
        y0 = gap + index * (band + gap)
        y1 = y0 + band
        pairs = [(ta, tb) for case in cases for (a, ta), (b, tb) in zip(case.activities, case.activities[1:])
                 if a == arc.source and b == arc.target]
        slow = quantile(sorted((tb - ta).total_seconds() for ta, tb in pairs), 0.9) or 0.0
        parts.append(f'<text x="4" y="{y0 - 8}" font-size="12" font-weight="600">'
                     f"{escape(label(arc.source))} → {escape(label(arc.target))} "
                     f'<tspan font-weight="400" fill="#6b7280">({arc.count}×, median '
                     f'{(arc.median_h or 0):.1f} h business; red: the slowest tenth of the lines drawn)</tspan></text>')
        parts.append(f'<line x1="{LEFT}" y1="{y0}" x2="{WIDTH - RIGHT}" y2="{y0}" stroke="#9ca3af"/>'
                     f'<line x1="{LEFT}" y1="{y1}" x2="{WIDTH - RIGHT}" y2="{y1}" stroke="#9ca3af"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y0 + 4}" font-size="10" text-anchor="end">{escape(arc.source)}</text>'
                     f'<text x="{LEFT - 6}" y="{y1 + 4}" font-size="10" text-anchor="end">{escape(arc.target)}</text>')
        for ta, tb in pairs:
            colour = "#dc2626" if (tb - ta).total_seconds() > slow else "#2563eb"
            parts.append(f'<line x1="{x(ta)}" y1="{y0}" x2="{x(tb)}" y2="{y1}" stroke="{colour}" '
                         'stroke-opacity="0.55" stroke-width="1"/>')
    parts.append(_axis(first, last, height - 6))
    parts.append("</svg>")
    return "".join(parts)
