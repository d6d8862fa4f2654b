"""fairgen density ratios, done right: calibrate the classifier, then w = gamma * p / (1 - p), clip, flatten.

A binary classifier separates the small reference set (y=1, the fair target distribution) from the biased set
(y=0). With p = P(ref | x), Bayes' rule gives p_ref(x) / p_bias(x) = gamma * p / (1 - p), where
gamma = P(y=0) / P(y=1) is the class prior ratio the classifier was trained under: 1 for fairgen's
class-balanced 100 + 100 batches, |D_bias| / |D_ref| for a classifier trained on the natural mix.

The ratio is only as good as p's calibration (fairgen#7: an overconfident classifier at perc 0.1 gives huge
weights and the GAN collapses), hence temperature / isotonic calibration fitted on held-out data, a reliability
check (ECE, curve, figure), clipping and the alpha flattening. Everything here is math on arrays: no data, no Ray.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression


def binary_logit(logits: np.ndarray) -> np.ndarray:
    """(N,) logits of y=1, or (N, 2) two-class logits reduced to l1 - l0 (softmax = sigmoid of the gap)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 2:
        return z[:, 1] - z[:, 0]
    if z.ndim != 1:
        raise ValueError(f"expected (N,) or (N, 2) logits, got shape {z.shape}")
    return z


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling of the binary classifier: the two-class case of the shared implementation."""
    from fairray.metrics.calibration import fit_temperature as fit_multiclass

    z = binary_logit(logits)
    return fit_multiclass(np.stack([np.zeros_like(z), z], 1), np.asarray(labels, dtype=np.int64))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated P(y=1 | x) = sigmoid(logit / T)."""
    return expit(binary_logit(logits) / temperature)


def fit_isotonic(probs: np.ndarray, labels: np.ndarray) -> IsotonicRegression:
    """A monotone map raw p -> calibrated p (use `.predict`); clipped outside the fitted range."""
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(probs, labels)


def density_ratio(p: np.ndarray, gamma: float = 1.0, eps: float = 1e-6) -> np.ndarray:
    """w = gamma * p / (1 - p) with p = P(reference | x), clipped to [eps, 1 - eps] so w stays finite.

    gamma = |D_bias| / |D_ref| corrects a classifier trained on the natural mix; 1 for balanced batches."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return gamma * p / (1 - p)


def clip_weights(w: np.ndarray, max_quantile: float | None = 0.99, max_value: float | None = None) -> np.ndarray:
    """Cap weights at their `max_quantile` and/or at `max_value` (the tighter cap wins)."""
    w = np.asarray(w, dtype=np.float64)
    cap = np.inf
    if max_quantile is not None:
        cap = np.quantile(w, max_quantile)
    if max_value is not None:
        cap = min(cap, max_value)
    return np.minimum(w, cap)


def flatten(w: np.ndarray, alpha: float) -> np.ndarray:
    """w**alpha: alpha=0 is the unweighted GAN, alpha<1 tempers extreme ratios, alpha=1 is the full correction."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return np.power(np.asarray(w, dtype=np.float64), alpha)


def normalize_batch(w: np.ndarray | torch.Tensor, eps: float = 1e-12) -> np.ndarray | torch.Tensor:
    """w / mean(w) over one batch (self-normalised importance weights): the loss scale, and with it D's effective
    learning rate, no longer swings with how many minority rows a batch happens to hold."""
    if isinstance(w, torch.Tensor):
        return w / w.mean().clamp_min(eps)
    w = np.asarray(w, dtype=np.float64)
    return w / max(float(w.mean()), eps)


def importance_weights(probs: np.ndarray, *, gamma: float = 1.0, alpha: float = 1.0,
                       clip_quantile: float | None = 0.99, clip_value: float | None = None) -> np.ndarray:
    """fairgen's weights for the biased rows, in its order: ratio -> clip -> alpha.

    Clipping comes before the power so the cap is in ratio units (the same cap for every alpha in a sweep) and
    alpha=0 still gives exactly 1. The quantile is taken over `probs`, so pass the biased training rows' calibrated
    P(ref | x). Reference rows keep w = 1 (fairgen); per-batch normalisation belongs to the training loop."""
    w = density_ratio(probs, gamma=gamma)
    return flatten(clip_weights(w, clip_quantile, clip_value), alpha)


def reliability_curve(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted p, fraction of positives, count) for each non-empty equal-width bin of p.

    The first two come from sklearn's `calibration_curve`; the counts use its binning (searchsorted on the
    inner edges), so the three arrays line up."""
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    count = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p), minlength=n_bins)
    return mean_pred, frac_pos, count[count > 0]


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Binary expected calibration error of P(y=1): sum_b n_b/N |frac positives_b - mean p_b| (equal-width bins).

    This is the reliability-curve ECE of the positive class, not the top-1 confidence ECE of
    `fairray.metrics.calibration.ece`: a density ratio uses p itself, so p's calibration is what matters."""
    mean_pred, frac_pos, count = reliability_curve(probs, labels, n_bins)
    return float(np.sum(count * np.abs(frac_pos - mean_pred)) / max(count.sum(), 1))


def reliability_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], n_bins: int = 10,
                       title: str = "density-ratio classifier: reliability") -> Figure:
    """Fraction of reference rows vs predicted P(ref | x), one line per name (e.g. raw, temperature, isotonic),
    ECE in the legend, and the histogram of p below (where the weights actually come from)."""
    from fairray.report import PALETTE

    fig = Figure(figsize=(4.2, 5.0))  # no pyplot: no global figure registry, works under any backend
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    for i, (name, (probs, labels)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        mean_pred, frac_pos, _ = reliability_curve(probs, labels, n_bins)
        top.plot(mean_pred, frac_pos, "o-", color=color, ms=3, label=f"{name} (ECE {ece(probs, labels, n_bins):.3f})")
        bottom.hist(np.asarray(probs), bins=n_bins, range=(0, 1), histtype="step", color=color)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="fraction reference")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=7, loc="upper left")
    bottom.set(xlabel="predicted P(reference | x)", ylabel="rows")
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
