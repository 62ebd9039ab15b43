"""The exported log as one flat CSV table: a row per activity event, case attributes repeated."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from interop.eventlog import Case

COLUMNS = ("case_id", "process", "version", "tier", "outcome", "status", "activity", "lifecycle", "timestamp",
           "resource", "role", "kind", "task_id", "attributes")


def write_csv(traces: Iterable[Case], out: Path) -> int:
    """Write the cases to `out` (UTF-8, header row); returns the number of event rows."""
    rows = 0
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for case in traces:
            for a in case.events:
                writer.writerow((case.case_id, case.process_id, case.version or "", case.tier or "",
                                 case.outcome or "", case.status, a.activity, a.lifecycle, a.at.isoformat(),
                                 a.resource or "", a.role or "", a.kind, a.task_id or "",
                                 json.dumps(a.attributes, ensure_ascii=False) if a.attributes else ""))
                rows += 1
    return rows


__all__ = ["write_csv", "COLUMNS"]
