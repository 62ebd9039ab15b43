"""Order statistics over sorted runs, and the traffic-light status of a step: the small statistics of a review."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

HOUR = 3600.0


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), so small samples read naturally."""
    return quantile_of_runs([sorted_values], q)


def _kth(runs: Sequence[Sequence[float]], k: int) -> float:
    """The k-th smallest (from 0) of the union of sorted runs, found by bisection instead of a merge."""
    if len(runs) == 1:
        return runs[0][k]
    for run in runs:  # the value is in some run: there, it is the first element with more than k at or below it
        lo, hi = 0, len(run)
        while lo < hi:
            mid = (lo + hi) // 2
            if sum(bisect_right(r, run[mid]) for r in runs) > k:
                hi = mid
            else:
                lo = mid + 1
        if lo < len(run) and sum(bisect_left(r, run[lo]) for r in runs) <= k:
            return run[lo]
    raise IndexError(k)


def quantile_of_runs(runs: Sequence[Sequence[float]], q: float, divisor: int | None = None) -> float | None:
    """`quantile` of the values of several sorted runs taken together: the same number, bit for bit.

    With `divisor`, the quantile of every value divided by it (the same order, as dividing by a
    positive number keeps it), without making that list.
    """
    runs = [run for run in runs if len(run)]
    n = sum(len(run) for run in runs)
    if n == 0:
        return None
    position = (n - 1) * q
    low = int(math.floor(position))
    high = min(low + 1, n - 1)
    fraction = position - low
    value_low = _kth(runs, low)
    value_high = value_low if high == low else _kth(runs, high)
    if divisor is not None:
        value_low, value_high = value_low / divisor, value_high / divisor
    return value_low + (value_high - value_low) * fraction


def status_of(median_ratio: float | None, p90_ratio: float | None) -> str:
    """green: p90 within target; amber: median within, p90 over; red: median over; none: no target/data."""
    if median_ratio is None or p90_ratio is None:
        return "none"
    if p90_ratio <= 1.0:
        return "green"
    if median_ratio <= 1.0:
        return "amber"
    return "red"


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / HOUR
