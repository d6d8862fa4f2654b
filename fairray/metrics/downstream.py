"""Fairness of a downstream binary classifier: GAN Data Debiasing's AP/DEO/BA/KL and DiGA's acc/worst-group/DP/EO.

Inputs are per-row arrays: the true target `y` (0/1), the classifier's score P(y=1|x) and the protected group `g`
(0/1). Hard predictions use one threshold (`calibrated_threshold`, chosen on validation, or 0.5).

Point estimates go through `fairlearn.metrics.MetricFrame` (by-group rates, differences, group minima). Every
hard-label metric is a function of the 2x2x2 table of counts over (y, g, y_hat), so the bootstrap resamples those
counts in one vectorised step (`count_metrics`) instead of re-running MetricFrame hundreds of times; the tests
check that both paths agree with hand-computed values. Names follow DESIGN.md: `deo_<target>_<protected>`,
`ba_...`, `kl_...`, `ap_<target>`, plus `acc`, `worst_group_acc`, `dp_gap`, `eo_gap`; `<name>_lo`/`_hi` are
bootstrap percentile intervals (95% by default).

Definitions (seeds note, sections 2.3 and 3.3):
- DEO = |FNR_{g=0} - FNR_{g=1}| (difference in equal opportunity).
- BA = BiasAmp_{A->T} (Wang & Russakovsky): mean over the four (t, a) cells of
  sign(P(T=t|A=a) - P(T=t)) * (P(T_hat=t|A=a) - P(T=t|A=a)); the sign ("which way the data is biased") comes
  from the *training* table when given, because on a balanced test split every sign is 0.
- KL: per class t, 50-bin score histograms of the two groups, Gaussian-smoothed (sigma 1 bin), normalised,
  + 1e-6; KL both ways in both classes; the median of those four values.
- DP = |P(y_hat=1|g=0) - P(y_hat=1|g=1)|; EO = max(|TPR gap|, |TNR gap|) (fairlearn's equalized-odds difference).
- worst_group_acc = the lowest accuracy over the four (y, g) groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_negative_rate,
    selection_rate,
)
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import accuracy_score, average_precision_score

from fairray.errors import FairrayError

KL_BINS = 50
KL_EPS = 1e-6
HARD_METRICS = ("acc", "worst_group_acc", "deo", "ba", "dp_gap", "eo_gap")


def metric_name(metric: str, target: str, protected: str) -> str:
    """The protocol name of a metric: `deo` -> `deo_Smiling_gender`, `ap` -> `ap_Smiling`, others unchanged."""
    if metric in ("deo", "ba", "kl"):
        return f"{metric}_{target}_{protected}"
    if metric == "ap":
        return f"ap_{target}"
    return metric


def _binary(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise FairrayError(f"{name} must be one-dimensional, got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise FairrayError(f"{name} must hold only 0/1 values, got {sorted(set(np.unique(a).tolist()))[:6]}")
    return a.astype(np.int64)


def calibrated_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """GAN Data Debiasing's calibrated threshold: the score of the n+-th highest row, so that as many rows are
    predicted positive as there are true positives (0.5 when there are none)."""
    y, score = _binary("y", y), np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return 0.5
    return float(np.sort(score)[::-1][n_pos - 1])


def cell_counts(y: np.ndarray, g: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts c[y, g, y_hat] (2x2x2)."""
    return np.bincount(y * 4 + g * 2 + pred, minlength=8).reshape(2, 2, 2).astype(np.float64)


def bias_direction(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """s[t, a] = sign(P(T=t|A=a) - P(T=t)) of a (training) table: which target value each group over-shows."""
    y, g = _binary("y", y), _binary("g", g)
    s = np.zeros((2, 2))
    for a in (0, 1):
        if (g == a).any():
            for t in (0, 1):
                s[t, a] = np.sign(round(float((y[g == a] == t).mean() - (y == t).mean()), 12))
    return s


def count_metrics(c: np.ndarray, direction: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Hard-label metrics from counts c[..., y, g, y_hat] (any leading batch shape, e.g. bootstrap resamples).

    A rate over an empty group is NaN (the group is absent), never a silent 0."""
    c = np.asarray(c, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = c.sum(axis=(-3, -2, -1))
        correct = c[..., 0, :, 0] + c[..., 1, :, 1]  # [..., g]
        acc = correct.sum(-1) / n
        grp = c.sum(-1)  # [..., y, g]
        acc_yg = np.stack([c[..., 0, :, 0], c[..., 1, :, 1]], -2) / grp  # [..., y, g]
        tpr = acc_yg[..., 1, :]
        tnr = acc_yg[..., 0, :]
        sel = (c[..., 0, :, 1] + c[..., 1, :, 1]) / c.sum(axis=(-3, -1))  # P(y_hat=1 | g)
        # BA over (t, a): P(T_hat=t | A=a) - P(T=t | A=a)
        n_g = c.sum(axis=(-3, -1))  # [..., g]
        p_hat = np.stack([1 - sel, sel], -2)  # [..., t, g]
        p_true = grp / n_g[..., None, :]  # [..., t, g]
        if direction is None:
            p_t = grp.sum(-1) / n[..., None]  # [..., t]
            direction = np.sign(np.round(p_true - p_t[..., :, None], 12))
        ba = (direction * (p_hat - p_true)).mean(axis=(-2, -1))
    return {
        "acc": acc,
        "worst_group_acc": np.nanmin(acc_yg.reshape(*acc_yg.shape[:-2], 4), axis=-1),
        "deo": np.abs((1 - tpr[..., 0]) - (1 - tpr[..., 1])),
        "ba": ba,
        "dp_gap": np.abs(sel[..., 0] - sel[..., 1]),
        "eo_gap": np.maximum(np.abs(tpr[..., 0] - tpr[..., 1]), np.abs(tnr[..., 0] - tnr[..., 1])),
    }


def score_kl(y: np.ndarray, score: np.ndarray, g: np.ndarray, bins: int = KL_BINS) -> float:
    """Median of KL(p||q), KL(q||p) for t in {0, 1}, p/q the smoothed score histograms of groups 0/1 in class t."""
    vals = []
    for t in (0, 1):
        hs = []
        for a in (0, 1):
            s = score[(y == t) & (g == a)]
            if len(s) == 0:
                return float("nan")
            h = gaussian_filter1d(np.histogram(s, bins=bins, range=(0.0, 1.0))[0].astype(np.float64), sigma=1)
            hs.append(h / h.sum() + KL_EPS)
        p, q = hs
        vals += [float(np.sum(p * np.log(p / q))), float(np.sum(q * np.log(q / p)))]
    return float(np.median(vals))


def _ap(y: np.ndarray, score: np.ndarray) -> float:
    return float(average_precision_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def metricframe_metrics(y: np.ndarray, pred: np.ndarray, g: np.ndarray,
                        direction: np.ndarray | None = None) -> dict[str, float]:
    """The hard-label metrics through fairlearn (the reference path; `count_metrics` is its fast twin)."""
    by_g = MetricFrame(metrics={"fnr": false_negative_rate, "sel": selection_rate}, y_true=y, y_pred=pred,
                       sensitive_features=pd.Series(g, name="g"))
    by_yg = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred,
                        sensitive_features=pd.DataFrame({"y": y, "g": g}))
    # BA: per group a, P(T_hat=1|a) - P(T=1|a); the t=0 cell is its negative.
    true_rate = MetricFrame(metrics=selection_rate, y_true=y, y_pred=y, sensitive_features=pd.Series(g, name="g"))
    direction = bias_direction(y, g) if direction is None else direction
    d1 = (by_g.by_group["sel"] - true_rate.by_group).to_numpy()  # indexed by a = 0, 1
    ba = float(sum(direction[1, a] * d1[a] + direction[0, a] * -d1[a] for a in (0, 1)) / 4)  # mean over 4 cells
    return {
        "acc": float(accuracy_score(y, pred)),
        "worst_group_acc": float(by_yg.group_min()),
        "deo": float(by_g.difference()["fnr"]),
        "ba": ba,
        "dp_gap": float(demographic_parity_difference(y, pred, sensitive_features=g)),
        "eo_gap": float(equalized_odds_difference(y, pred, sensitive_features=g)),
    }


def evaluate(y: np.ndarray, score: np.ndarray, g: np.ndarray, target: str, protected: str,
             threshold: float = 0.5, direction: np.ndarray | None = None, n_boot: int = 200, seed: int = 0,
             level: float = 0.95) -> dict[str, float]:
    """All downstream metrics with bootstrap percentile intervals (`_lo`, `_hi`), named by protocol.

    `direction` is `bias_direction` of the training table (for BA); `threshold` turns scores into predictions."""
    y, g = _binary("y", y), _binary("g", g)
    score = np.asarray(score, dtype=np.float64)
    if not (len(y) == len(g) == len(score)) or len(y) == 0:
        raise FairrayError(f"y, score and g must be non-empty and equally long, got {len(y)}, {len(score)}, {len(g)}")
    pred = (score >= threshold).astype(np.int64)
    point = metricframe_metrics(y, pred, g, direction)
    point["ap"] = _ap(y, score)
    point["kl"] = score_kl(y, score, g)
    out: dict[str, float] = {}
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    boot: dict[str, np.ndarray] = {}
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(y), size=(n_boot, len(y)))
        cells = (y * 4 + g * 2 + pred)[idx] + 8 * np.arange(n_boot)[:, None]
        counts = np.bincount(cells.ravel(), minlength=8 * n_boot).reshape(n_boot, 2, 2, 2)
        boot = count_metrics(counts, direction)
        boot["ap"] = np.array([_ap(y[i], score[i]) for i in idx])
        boot["kl"] = np.array([score_kl(y[i], score[i], g[i]) for i in idx])
    for k, v in point.items():
        name = metric_name(k, target, protected)
        out[name] = float(v)
        if n_boot > 0:
            lo, hi = np.nanpercentile(boot[k], [lo_q, hi_q])
            out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    out["threshold"] = float(threshold)
    out["n_eval"] = float(len(y))
    return out


def group_table(y: np.ndarray, score: np.ndarray, g: np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
    """Accuracy, selection rate and count per (y, g) group (MetricFrame.by_group), for reports."""
    y, g = _binary("y", y), _binary("g", g)
    pred = (np.asarray(score) >= threshold).astype(np.int64)
    mf = MetricFrame(metrics={"accuracy": accuracy_score, "selection_rate": selection_rate,
                              "n": lambda t, p: len(t)}, y_true=y, y_pred=pred,
                     sensitive_features=pd.DataFrame({"y": y, "g": g}))
    return mf.by_group.reset_index()
