"""How metric names carry their sample count (`fairness_discrepancy_gender_10k`): one helper shared by every
metrics module, kept apart so they can import it without importing each other."""

from __future__ import annotations


def count_tag(n: int) -> str:
    """10000 -> "10k", 2500 -> "2500": the suffix that says on how many samples a metric was computed."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)
