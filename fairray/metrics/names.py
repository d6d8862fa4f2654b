"""How metric names carry their sample count (`fairness_discrepancy_gender_10k`): one helper shared by every
metrics module, kept apart so they can import it without importing each other."""

from __future__ import annotations


def count_tag(n: int) -> str:
    """10000 -> "10k", 2500 -> "2500": the suffix that says on how many samples a metric was computed."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def sampled(metrics: dict, prefix: str, parts: int = 1) -> float | None:
    """The metric named by `prefix` plus `parts` more name parts (share_gender_1 -> share_gender_1_2k; deo with
    parts=2 -> deo_Smiling_gender), intervals (_lo, _hi) and exact values (_exact) skipped; None when absent."""
    want = prefix.count("_") + parts
    return next((float(v) for k, v in metrics.items() if k.startswith(prefix + "_") and k.count("_") == want
                 and not k.endswith(("_exact", "_lo", "_hi"))), None)
