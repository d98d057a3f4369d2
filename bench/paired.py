"""Paired step timing for the bench scripts: two ways of running a training step, alternated in one process.

Alternating (a, b, a, b, ...) lets the slow drifts of a shared machine hit both sides alike; the per-pair
ratio is the robust figure.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

from common import table


def time_pairs(
    first: Callable[[], float], second: Callable[[], float], pairs: int, names: tuple[str, str]
) -> tuple[list[float], list[float]]:
    """One warm-up pair, then ``pairs`` timed pairs of ``first()`` and ``second()`` (each returns its seconds)."""
    first(), second()
    a, b = [], []
    for i in range(pairs):
        a.append(first())
        b.append(second())
        print(f"pair {i + 1}: {names[0]} {a[-1]:.2f} s, {names[1]} {b[-1]:.2f} s", file=sys.stderr, flush=True)
    return a, b


def print_pairs(column: str, names: tuple[str, str], a: list[float], b: list[float]) -> None:
    """The two sides' mean, median and min step times, and the per-pair speed-up of the second over the first."""
    rows = [[name, *(f"{f(times):.2f}" for f in (statistics.mean, statistics.median, min))]
            for name, times in zip(names, (a, b), strict=True)]  # fmt: skip
    print(table([column, "mean s/step", "median s/step", "min s/step"], rows))
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    print(f"\nMedian per-pair speed-up ({names[0]} / {names[1]} step time): {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}); mean-time ratio "
          f"{statistics.mean(a) / statistics.mean(b):.2f}x")  # fmt: skip
