"""fairgen density ratios from a calibrated reference-vs-biased classifier: w = gamma * p / (1 - p)."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression


def density_ratio(p: np.ndarray, gamma: float = 1.0, eps: float = 1e-6) -> np.ndarray:
    """p = P(reference | x) from a classifier trained on class-balanced batches (so gamma = 1); gamma =
    |D_bias| / |D_ref| corrects a classifier trained on the natural mix."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return gamma * p / (1 - p)


def fit_isotonic(probs: np.ndarray, labels: np.ndarray) -> IsotonicRegression:
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(probs, labels)


def clip_weights(w: np.ndarray, max_quantile: float = 0.99) -> np.ndarray:
    return np.minimum(w, np.quantile(w, max_quantile))


def flatten(w: np.ndarray, alpha: float) -> np.ndarray:
    """w**alpha: alpha=0 is the unweighted GAN, alpha<1 tempers extreme ratios."""
    return np.power(w, alpha)
