"""Words for a change in a metric, computed from the numbers: the report never says "lower" when a number rose.

`change` reads a before/after pair (with intervals when the metric has them) and says whether it rose, fell or did
not change within its interval, and whether that is better or worse for a metric whose good direction is known.
"""

from __future__ import annotations

import math

STILL = 0.01  # a relative change below 1% is "unchanged" when no interval says otherwise


def direction(before: float, after: float, before_ci: tuple[float, float] | None = None,
              after_ci: tuple[float, float] | None = None) -> str:
    """'rose', 'fell', 'unchanged' (overlapping intervals, or a change below 1%), or 'unknown' (a NaN)."""
    if not (math.isfinite(before) and math.isfinite(after)):
        return "unknown"
    if before_ci is not None and after_ci is not None and max(before_ci[0], after_ci[0]) <= min(before_ci[1],
                                                                                                 after_ci[1]):
        return "unchanged"
    if abs(after - before) <= STILL * max(abs(before), 1e-12):
        return "unchanged"
    return "rose" if after > before else "fell"


def change(name: str, before: float, after: float, lower_is_better: bool = True,
           before_ci: tuple[float, float] | None = None, after_ci: tuple[float, float] | None = None,
           fmt: str = ".3f") -> str:
    """'the fairness discrepancy fell 58% (0.543 -> 0.233, better)', 'DEO rose 12% (0.30 -> 0.34, worse)',
    'DEO did not change within its interval (0.30 -> 0.31)'."""
    d = direction(before, after, before_ci, after_ci)
    pair = f"{before:{fmt}} -> {after:{fmt}}"
    if d == "unknown":
        return f"{name}: {pair} (not measured)"
    if d == "unchanged":
        why = "within its interval" if before_ci is not None and after_ci is not None else "(less than 1%)"
        return f"{name} did not change {why} ({pair})"
    pct = abs(after - before) / abs(before) if before != 0 else math.inf
    better = (d == "fell") == lower_is_better
    amount = f" {pct:.0%}" if math.isfinite(pct) else ""
    return f"{name} {d}{amount} ({pair}, {'better' if better else 'worse'})"


def relative_cut(before: float, after: float) -> float:
    """1 - after / before: 0.58 for a 58% cut, negative when the number rose (NaN for a zero or NaN before)."""
    return 1 - after / before if before and math.isfinite(before) and math.isfinite(after) else float("nan")
