"""The weekly complaint report as Markdown and HTML (the counting is analytics/weekly.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from analytics.weekly import Counts, WeeklyReport, analysis
from visualize.review import html_table, page


# -- output ------------------------------------------------------------------------------------------------
_COUNT_HEADERS = ["open (end of week)", "closed in week", "overdue (end of week)", "escalated in week", "new in week"]
_SECTIONS: tuple[tuple[str, str, str, str | None], ...] = (  # table, title, column, kind of label
    ("by_owner", "按负责人 By owner", "owner", None),
    ("by_department", "按部门 By department (role holding the handling task)", "department", "role"),
    ("by_category", "按类别 By category", "category", "category"),
    ("by_cause", "按原因 By cause", "cause", "cause"),
    ("by_process", "按流程 By process", "process", "process"),
)
_MEANING = ("Open = not yet closed with the customer, at the end of the week; overdue = open and past due at the "
            "end of the week (a clock still running past its due time); closed = closed with the customer during "
            "the week; escalated (a breach or a higher escalation level) and new count what happened during it. "
            "A major complaint opened from a complaint counts once, under the complaint.")
_TREND = (("open", "未结 open (end of week)"), ("overdue", "逾期 overdue (end of week)"),
          ("closed", "结案 closed in week"), ("escalated", "升级 escalated in week"), ("new", "新增 new in week"))


def _count_cells(c: Counts) -> list[Any]:
    return [c.open, c.closed, c.overdue, c.escalated, c.new]


def _name(report: WeeklyReport, kind: str | None, key: str) -> str:
    """The display name from the definitions, with the code the log holds."""
    if kind is None:
        return key
    label = report.labels.of(kind, key)
    return key if label == key else f"{label} ({key})"


def trend_rows(report: WeeklyReport) -> list[list[Any]]:
    """(count, this week, last week, change) for the totals; last week '–' when it is not known."""
    before = report.trend("total")
    rows: list[list[Any]] = []
    for attr, title in _TREND:
        now = getattr(report.total, attr)
        if before is None:
            rows.append([title, now, "–", "–"])
        else:
            diff = now - getattr(before, attr)
            rows.append([title, now, getattr(before, attr), "±0" if diff == 0 else f"{diff:+d}"])
    return rows


def _when(value: datetime | None, tz: tzinfo) -> str:
    return "" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _title(report: WeeklyReport) -> str:
    last = (report.end - timedelta(days=1)).date()
    return f"客户投诉周报 Weekly complaint report {report.week} ({report.start.date()} – {last})"


def weekly_markdown(report: WeeklyReport) -> str:
    tz = report.start.tzinfo or ZoneInfo("Asia/Shanghai")
    t = report.total
    zh, en = analysis(report)
    lines = [
        f"# {_title(report)}",
        "",
        "## 本周小结 Summary",
        "",
        zh,
        "",
        en,
        "",
        f"Time zone {tz}. {_MEANING}",
        "",
        "| | " + " | ".join(_COUNT_HEADERS) + " |",
        "|---|" + "---:|" * len(_COUNT_HEADERS),
        "| **total** | " + " | ".join(str(v) for v in _count_cells(t)) + " |",
        "",
        "## 与上周对比 Against last week",
        "",
        "| | this week | last week | change |",
        "|---|---:|---:|---:|",
        *[f"| {title} | {now} | {before} | {change} |" for title, now, before, change in trend_rows(report)],
    ]
    if report.cancelled:
        lines.append(f"\n{report.cancelled} complaint(s) were cancelled.")
    for attr, title, label, kind in _SECTIONS:
        table: dict[str, Counts] = getattr(report, attr)
        lines += ["", f"## {title}", "", f"| {label} | " + " | ".join(_COUNT_HEADERS) + " |",
                  "|---|" + "---:|" * len(_COUNT_HEADERS)]
        lines += [f"| {_name(report, kind, key)} | " + " | ".join(str(v) for v in _count_cells(c)) + " |"
                  for key, c in table.items()]
    overdue = [r for r in report.rows if r.overdue]
    lines += ["", "## 逾期投诉 Overdue complaints", ""]
    if overdue:
        lines += ["| case | owner | department | category | waiting at | overdue since | level |",
                  "|---|---|---|---|---|---|---:|"]
        lines += [f"| {r.case_id} | {r.owner} | {_name(report, 'role', r.department)} | "
                  f"{_name(report, 'category', r.category)} | {r.waiting_at} | "
                  f"{_when(r.overdue_since, tz)} | {r.escalation_level} |" for r in overdue]
    else:
        lines.append("None.")
    escalated = [r for r in report.rows if r.escalated]
    lines += ["", "## 本周升级 Escalated this week", ""]
    if escalated:
        lines += ["| case | status | owner | category | level |", "|---|---|---|---|---:|"]
        lines += [f"| {r.case_id} | {r.status} | {r.owner} | {_name(report, 'category', r.category)} | "
                  f"{r.escalation_level} |" for r in escalated]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def weekly_html(report: WeeklyReport) -> str:
    tz = report.start.tzinfo or ZoneInfo("Asia/Shanghai")
    from html import escape

    zh, en = analysis(report)
    parts = [
        '<h2 id="summary">本周小结 Summary</h2>',
        f'<p id="analysis-zh">{escape(zh)}</p><p id="analysis-en">{escape(en)}</p>',
        f'<p class="note">{escape(_MEANING)}</p>',
        '<h2 id="totals">合计 Totals</h2>',
        html_table(["", *_COUNT_HEADERS], [["total", *_count_cells(report.total)]], numeric=(1, 2, 3, 4, 5),
                   table_id="totals-table"),
        '<h2 id="trend">与上周对比 Against last week</h2>',
        html_table(["", "this week", "last week", "change"], trend_rows(report), numeric=(1, 2, 3),
                   table_id="trend-table"),
    ]
    for attr, title, label, kind in _SECTIONS:
        table: dict[str, Counts] = getattr(report, attr)
        parts.append(f'<h2 id="{attr}">{title}</h2>')
        parts.append(html_table([label, *_COUNT_HEADERS],
                                [[_name(report, kind, key), *_count_cells(c)] for key, c in table.items()],
                                numeric=(1, 2, 3, 4, 5), table_id=f"{attr}-table"))
    parts.append('<h2 id="overdue">逾期投诉 Overdue complaints</h2>')
    parts.append(html_table(
        ["case", "owner", "department", "category", "waiting at", "overdue since", "level"],
        [[r.case_id, r.owner, _name(report, "role", r.department), _name(report, "category", r.category),
          r.waiting_at, _when(r.overdue_since, tz), r.escalation_level]
         for r in report.rows if r.overdue], numeric=(6,), table_id="overdue-table"))
    parts.append('<h2 id="escalated">本周升级 Escalated this week</h2>')
    parts.append(html_table(
        ["case", "status", "owner", "category", "level"],
        [[r.case_id, r.status, r.owner, _name(report, "category", r.category), r.escalation_level]
         for r in report.rows if r.escalated], numeric=(4,), table_id="escalated-table"))
    return page(_title(report), [f"time zone {tz}"], "\n".join(parts))


def write_weekly(report: WeeklyReport, out_dir: Path) -> tuple[Path, Path]:
    """Write complaints-YYYY-Www.md and .html into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"complaints-{report.week}.md"
    htm = out_dir / f"complaints-{report.week}.html"
    md.write_text(weekly_markdown(report), encoding="utf-8")
    htm.write_text(weekly_html(report), encoding="utf-8")
    return md, htm

