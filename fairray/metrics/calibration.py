"""Calibration of classifier probabilities: temperature scaling, ECE and reliability diagrams.

Works for any number of classes (top-1 confidence vs accuracy); a binary classifier is the K=2 case.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises held-out NLL of softmax(logits / T) (Guo et al. 2017)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def calibrated_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1).astype(np.float32)


def _bins(probs: np.ndarray, labels: np.ndarray, n_bins: int):
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    idx = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    acc = np.bincount(idx, weights=correct, minlength=n_bins) / np.maximum(count, 1)
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / np.maximum(count, 1)
    return count, acc, mean_conf


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of top-1 confidence (equal-width bins), in [0, 1]."""
    count, acc, conf = _bins(np.asarray(probs), np.asarray(labels), n_bins)
    return float(np.sum(count * np.abs(acc - conf)) / max(count.sum(), 1))


def reliability_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], n_bins: int = 10,
                       title: str = "Reliability") -> Figure:
    """One panel per name: accuracy vs confidence bars against the diagonal, ECE in the panel title."""
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, (probs, labels)) in zip(axes.flat, curves.items(), strict=False):
        count, acc, conf = _bins(np.asarray(probs), np.asarray(labels), n_bins)
        centers = (np.arange(n_bins) + 0.5) / n_bins
        keep = count > 0
        ax.bar(centers[keep], acc[keep], width=1 / n_bins, edgecolor="white", color="#4C72B0", label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.set_title(f"{name}  ECE {ece(probs, labels, n_bins):.3f}", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
