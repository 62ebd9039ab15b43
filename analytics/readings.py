"""What a reading of (a stretch of) the log finds, in forms that combine exactly across readers.

A review may be read by several processes (analytics/parallel.py); each produces a `Partial`
(counts and sorted runs of values) and a `CaseSummary` (its cases summed up), and adding them
in any order gives the same result as one reader, to the last bit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


Run = Sequence[float]  # sorted values: a list, or a memoryview of doubles from a worker


def pack_run(values: Sequence[float]) -> bytes:
    """Doubles as raw bytes: pickled by copying, where a list pickles float by float (and an
    array('d') is built item by item through argument parsing, slower still)."""
    return struct.pack(f"{len(values)}d", *values)


def unpack_run(raw: bytes) -> Run:
    return memoryview(raw).cast("d")


@dataclass
class Partial:
    """What one reading of a stretch of the log found, in a form where readings combine exactly.

    Counts add up. Values whose quantiles are shown are kept as sorted runs, one per reading:
    combining readings is appending runs, and `quantile_of_runs` finds the same order statistics
    a sort of everything would. Hours per role are summed with `math.fsum` at the end, whose
    result does not depend on the order of the terms (a running `+=` does, in the last bits).
    A worker sends its runs as raw doubles (`packed`), read in place here (`unpacked`).
    """

    first_ts: float | None = None
    last_end: float = float("-inf")
    interrupted: dict[str, int] = field(default_factory=dict)
    durations: dict[str, tuple[list[Run], list[Run], list[Run]]] = field(default_factory=dict)  # business, wall, ratio
    policy_targets: dict[tuple[str, str], int] = field(default_factory=dict)
    target_seconds: dict[str, int] = field(default_factory=dict)
    edges: dict[str, int] = field(default_factory=dict)
    breached_by_node: dict[str, int] = field(default_factory=dict)
    clock_started: dict[str, int] = field(default_factory=dict)
    clock_met: dict[str, int] = field(default_factory=dict)
    clock_breached: dict[str, int] = field(default_factory=dict)
    clock_cancelled: dict[str, int] = field(default_factory=dict)
    clock_consumed: dict[str, list[Run]] = field(default_factory=dict)
    escalation_rows: dict[tuple[Any, ...], int] = field(default_factory=dict)
    escalations_by_node: dict[str, int] = field(default_factory=dict)
    escalations_by_kind: dict[str, int] = field(default_factory=dict)
    role_completed: dict[str, int] = field(default_factory=dict)
    role_wall: dict[str, list[Run]] = field(default_factory=dict)
    role_business: dict[str, list[Run]] = field(default_factory=dict)

    def add(self, other: Partial) -> None:
        """Take in another reading's findings (in any order: the result is the same)."""
        if other.first_ts is not None and (self.first_ts is None or other.first_ts < self.first_ts):
            self.first_ts = other.first_ts
        self.last_end = max(self.last_end, other.last_end)
        for name in ("interrupted", "policy_targets", "edges", "breached_by_node", "clock_started", "clock_met",
                     "clock_breached", "clock_cancelled", "escalation_rows", "escalations_by_node", "escalations_by_kind",
                     "role_completed"):
            mine: dict[Any, int] = getattr(self, name)
            for key, count in getattr(other, name).items():
                mine[key] = mine.get(key, 0) + count
        self.target_seconds.update(other.target_seconds)
        for node, runs in other.durations.items():
            own = self.durations.get(node)
            if own is None:
                self.durations[node] = runs
            else:
                for own_runs, their_runs in zip(own, runs):
                    own_runs += their_runs
        for name in ("clock_consumed", "role_wall", "role_business"):
            runs_by_key: dict[str, list[Run]] = getattr(self, name)
            for key, runs_of_key in getattr(other, name).items():
                runs_by_key.setdefault(key, []).extend(runs_of_key)

    def packed(self) -> Partial:
        """The same, with every run as bytes: what a worker sends back."""
        return self._convert(pack_run)

    def unpacked(self) -> Partial:
        """A worker's result made readable again (without copying the values)."""
        return self._convert(unpack_run)

    def _convert(self, convert: Callable[[Any], Any]) -> Partial:
        self.durations = {node: tuple([convert(run) for run in runs] for runs in lists)  # type: ignore[misc]
                          for node, lists in self.durations.items()}
        for name in ("clock_consumed", "role_wall", "role_business"):
            setattr(self, name, {key: [convert(run) for run in runs] for key, runs in getattr(self, name).items()})
        return self


class Tally:
    """What the readings of one process add up to, until `seal` sorts it into a `Partial`."""

    def __init__(self) -> None:
        self.part = Partial()  # counts and extremes are kept there as they are
        self.durations: dict[str, tuple[list[float], list[float], list[float]]] = {}  # node -> business, wall, ratio
        self.consumed: dict[str, list[float]] = {}  # case clock -> consumed seconds
        self.role_hours: dict[str, tuple[list[float], list[float]]] = {}  # role -> wall, business of its tasks
        self.unmatched_roles: dict[str, int] = {}  # tasks completed whose opening is not in the log read

    def seal(self) -> Partial:
        part = self.part
        for node, lists in self.durations.items():
            for values in lists:
                values.sort()
            part.durations[node] = ([lists[0]], [lists[1]], [lists[2]])
        for clock, values in self.consumed.items():
            values.sort()
            part.clock_consumed[clock] = [values]
        part.role_wall = {role: [wall] for role, (wall, _) in self.role_hours.items()}
        part.role_business = {role: [business] for role, (_, business) in self.role_hours.items()}
        part.role_completed = {role: len(self.role_hours[role][0]) if role in self.role_hours else 0
                               for role in set(self.role_hours) | set(self.unmatched_roles)}
        for role, count in self.unmatched_roles.items():
            part.role_completed[role] += count
        return part


@dataclass
class CaseSummary:
    """The cases one reader created, summed up as far as they can be without the others' cases.

    Cycle times are sorted runs (see `Partial`); the slowest finished cases are the reader's
    own top `slowest` (the overall top is among them); cases still open are kept whole, because
    their age is measured at a horizon only the combined log knows.
    """

    count: int = 0
    completed: int = 0
    cancelled: int = 0
    incidents: int = 0
    last_seen: float = float("-inf")  # latest case start or open visit's start
    cycles_b: list[Run] = field(default_factory=list)
    cycles_w: list[Run] = field(default_factory=list)
    # raw path -> [number of cases, [runs of the business cycle times of those finished]]
    paths: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)
    slowest_finished: list[tuple[Any, ...]] = field(default_factory=list)  # (business cycle, case id, row fields...)
    open_cases: list[tuple[Any, ...]] = field(default_factory=list)  # (case id, start, business start, row fields...)

    def add(self, other: CaseSummary) -> None:
        """Take in another reader's cases (in any order: the result is the same)."""
        self.count += other.count
        self.completed += other.completed
        self.cancelled += other.cancelled
        self.incidents += other.incidents
        self.last_seen = max(self.last_seen, other.last_seen)
        self.cycles_b += other.cycles_b
        self.cycles_w += other.cycles_w
        for path, (count, runs) in other.paths.items():
            group = self.paths.get(path)
            if group is None:
                self.paths[path] = [count, runs]
            else:
                group[0] += count
                group[1] += runs
        self.slowest_finished += other.slowest_finished
        self.open_cases += other.open_cases

    def packed(self) -> CaseSummary:
        """As `Partial.packed`."""
        return self._convert(pack_run)

    def unpacked(self) -> CaseSummary:
        return self._convert(unpack_run)

    def _convert(self, convert: Callable[[Any], Any]) -> CaseSummary:
        self.cycles_b = [convert(run) for run in self.cycles_b]
        self.cycles_w = [convert(run) for run in self.cycles_w]
        for group in self.paths.values():
            group[1] = [convert(run) for run in group[1]]
        return self
