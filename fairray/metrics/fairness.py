"""Fairness metrics on attribute distributions (fairgen's discrepancy; KL to uniform)."""

from __future__ import annotations

import numpy as np


def shares(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class proportions over all n_classes (a class never seen counts as 0, unlike np.unique)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)[:n_classes]
    return counts / max(counts.sum(), 1)


def fairness_discrepancy(p: np.ndarray) -> float:
    """fairgen: L2 distance between the attribute distribution p and uniform."""
    p = np.asarray(p, dtype=np.float64)
    return float(np.linalg.norm(p - 1.0 / len(p)))


def kl_to_uniform(p: np.ndarray) -> float:
    """KL(p || uniform) in nats; 0 when balanced, log(K) when one class takes everything."""
    p = np.asarray(p, dtype=np.float64)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * len(p))))
