"""95 % intervals for the numbers the notebooks report: a mean over seeds, a proportion over examples.

Introduced in notebook 06.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Interval", "mean_interval", "wilson_interval", "T975"]

#: two-sided 95 % quantiles of Student's t, by degrees of freedom 1..30 (beyond: the normal's 1.96).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % interval and the n behind it."""

    estimate: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"

    @property
    def degenerate(self) -> bool:
        """True for a mean of a single value: its "interval" is a point and says nothing."""
        return self.n == 1 and self.low == self.high

    def pct(self) -> str:
        """As percentages: ``'81.2 % [78.0, 84.4]'``; a mean of one value says so instead of a point interval.

        Example:
            >>> mean_interval([0.8, 0.82, 0.78]).pct(), mean_interval([0.826]).pct()
            ('80.0 % [75.0, 85.0]', '82.6 % [n = 1: no interval]')
        """
        if self.degenerate:
            return f"{100 * self.estimate:.1f} % [n = 1: no interval]"
        return f"{100 * self.estimate:.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean of ``values`` with a two-sided 95 % Student-t interval (a point interval when n = 1).

    Example:
        >>> print(mean_interval([0.8, 0.82, 0.78]))
        0.800 [0.750, 0.850] (n=3)
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    half = t * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def wilson_interval(successes: int, n: int) -> Interval:
    """A proportion with its 95 % Wilson score interval (good at small n and near 0 or 1).

    Example:
        >>> print(wilson_interval(80, 100))
        0.800 [0.711, 0.867] (n=100)
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0; got {successes} of {n}")
    z = 1.959964
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the bounds hold p mathematically; min/max keep them so where rounding (p = 0 or 1) would not
    return Interval(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), n)
