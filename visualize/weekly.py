"""The weekly complaint report as Markdown and HTML (the counting is analytics/weekly.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from analytics.weekly import Counts, WeeklyReport
from visualize.review import html_table, page


# -- output ------------------------------------------------------------------------------------------------
_COUNT_HEADERS = ["open (end of week)", "closed in week", "overdue", "escalated in week", "new in week"]
_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("by_owner", "按负责人 By owner", "owner"),
    ("by_department", "按部门 By department (role holding the handling task)", "department"),
    ("by_category", "按类别 By category", "category"),
    ("by_cause", "按原因 By cause", "cause"),
    ("by_process", "按流程 By process", "process"),
)


def _count_cells(c: Counts) -> list[Any]:
    return [c.open, c.closed, c.overdue, c.escalated, c.new]


def _when(value: datetime | None, tz: tzinfo) -> str:
    return "" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _title(report: WeeklyReport) -> str:
    last = (report.end - timedelta(days=1)).date()
    return f"客户投诉周报 Weekly complaint report {report.week} ({report.start.date()} – {last})"


def weekly_markdown(report: WeeklyReport) -> str:
    tz = report.start.tzinfo or ZoneInfo("Asia/Shanghai")
    t = report.total
    lines = [
        f"# {_title(report)}",
        "",
        f"Time zone {tz}. Open and overdue are as at the end of the week; closed, escalated (a breach or a "
        "higher escalation level) and new count what happened during it. A major complaint opened from a "
        "complaint counts once, under the complaint.",
        "",
        "| | " + " | ".join(_COUNT_HEADERS) + " |",
        "|---|" + "---:|" * len(_COUNT_HEADERS),
        "| **total** | " + " | ".join(str(v) for v in _count_cells(t)) + " |",
    ]
    if report.cancelled:
        lines.append(f"\n{report.cancelled} complaint(s) were cancelled.")
    for attr, title, label in _SECTIONS:
        table: dict[str, Counts] = getattr(report, attr)
        lines += ["", f"## {title}", "", f"| {label} | " + " | ".join(_COUNT_HEADERS) + " |",
                  "|---|" + "---:|" * len(_COUNT_HEADERS)]
        lines += [f"| {key} | " + " | ".join(str(v) for v in _count_cells(c)) + " |" for key, c in table.items()]
    overdue = [r for r in report.rows if r.overdue]
    lines += ["", "## 逾期投诉 Overdue complaints", ""]
    if overdue:
        lines += ["| case | owner | department | category | waiting at | overdue since | level |",
                  "|---|---|---|---|---|---|---:|"]
        lines += [f"| {r.case_id} | {r.owner} | {r.department} | {r.category} | {r.waiting_at} | "
                  f"{_when(r.overdue_since, tz)} | {r.escalation_level} |" for r in overdue]
    else:
        lines.append("None.")
    escalated = [r for r in report.rows if r.escalated]
    lines += ["", "## 本周升级 Escalated this week", ""]
    if escalated:
        lines += ["| case | status | owner | category | level |", "|---|---|---|---|---:|"]
        lines += [f"| {r.case_id} | {r.status} | {r.owner} | {r.category} | {r.escalation_level} |" for r in escalated]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def weekly_html(report: WeeklyReport) -> str:
    tz = report.start.tzinfo or ZoneInfo("Asia/Shanghai")
    parts = [
        '<p class="note">Open and overdue are as at the end of the week; closed, escalated (a breach or a higher '
        "escalation level) and new count what happened during it. A major complaint opened from a complaint "
        "counts once, under the complaint.</p>",
        '<h2 id="totals">合计 Totals</h2>',
        html_table(["", *_COUNT_HEADERS], [["total", *_count_cells(report.total)]], numeric=(1, 2, 3, 4, 5),
                   table_id="totals-table"),
    ]
    for attr, title, label in _SECTIONS:
        table: dict[str, Counts] = getattr(report, attr)
        parts.append(f'<h2 id="{attr}">{title}</h2>')
        parts.append(html_table([label, *_COUNT_HEADERS], [[key, *_count_cells(c)] for key, c in table.items()],
                                numeric=(1, 2, 3, 4, 5), table_id=f"{attr}-table"))
    parts.append('<h2 id="overdue">逾期投诉 Overdue complaints</h2>')
    parts.append(html_table(
        ["case", "owner", "department", "category", "waiting at", "overdue since", "level"],
        [[r.case_id, r.owner, r.department, r.category, r.waiting_at, _when(r.overdue_since, tz), r.escalation_level]
         for r in report.rows if r.overdue], numeric=(6,), table_id="overdue-table"))
    parts.append('<h2 id="escalated">本周升级 Escalated this week</h2>')
    parts.append(html_table(
        ["case", "status", "owner", "category", "level"],
        [[r.case_id, r.status, r.owner, r.category, r.escalation_level] for r in report.rows if r.escalated],
        numeric=(4,), table_id="escalated-table"))
    return page(_title(report), [f"time zone {tz}"], "\n".join(parts))


def write_weekly(report: WeeklyReport, out_dir: Path) -> tuple[Path, Path]:
    """Write complaints-YYYY-Www.md and .html into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"complaints-{report.week}.md"
    htm = out_dir / f"complaints-{report.week}.html"
    md.write_text(weekly_markdown(report), encoding="utf-8")
    htm.write_text(weekly_html(report), encoding="utf-8")
    return md, htm

