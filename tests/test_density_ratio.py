"""fairgen density-ratio math: calibration, Bayes-optimal ratios, clipping, alpha, per-batch normalisation."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve

from fairray.debias.density_ratio import (
    apply_temperature,
    clip_weights,
    density_ratio,
    ece,
    fit_isotonic,
    fit_temperature,
    flatten,
    importance_weights,
    normalize_batch,
    reliability_curve,
    reliability_figure,
)


@pytest.fixture(scope="module")
def overconfident():
    """A classifier whose logits are 3x the true log-odds: right ranking, far too confident."""
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 40_000)
    y = (rng.random(len(true_logit)) < 1 / (1 + np.exp(-true_logit))).astype(int)
    return 3 * true_logit, y


def test_temperature_scaling_repairs_an_overconfident_classifier(overconfident):
    logits, y = overconfident
    fit, held = slice(0, 20_000), slice(20_000, None)  # fit on one half, judge on the other
    t = fit_temperature(logits[fit], y[fit])
    assert t == pytest.approx(3.0, abs=0.15)
    raw, cal = apply_temperature(logits[held], 1.0), apply_temperature(logits[held], t)
    assert ece(raw, y[held]) > 0.05 and ece(cal, y[held]) < 0.015
    # two-class logits: softmax over (l0, l1) is the sigmoid of the gap, so the same temperature
    two = np.stack([np.full(20_000, 0.7), logits[fit] + 0.7], 1)
    assert fit_temperature(two, y[fit]) == pytest.approx(t, rel=1e-4)


def test_isotonic_repairs_an_overconfident_classifier(overconfident):
    logits, y = overconfident
    raw = apply_temperature(logits, 1.0)
    iso = fit_isotonic(raw[:20_000], y[:20_000])
    cal = iso.predict(raw[20_000:])
    assert cal.min() >= 0 and cal.max() <= 1
    assert ece(cal, y[20_000:]) < ece(raw[20_000:], y[20_000:]) / 3


def test_density_ratio_recovers_the_bayes_ratio_of_a_90_10_vs_50_50_mixture():
    """The attribute a is 10% in D_bias and 50% in D_ref, so p_ref(x)/p_bias(x) is 0.5/0.9 for a=0 and 0.5/0.1
    for a=1. The Bayes-optimal P(ref | a) under a natural mix of 40k biased + 10k reference rows (perc 0.25) is
    the share of reference rows among rows with that a; gamma = |D_bias|/|D_ref| = 4 undoes the prior."""
    rng = np.random.default_rng(1)
    a_bias, a_ref = rng.random(40_000) < 0.1, rng.random(10_000) < 0.5
    a = np.concatenate([a_bias, a_ref])
    is_ref = np.r_[np.zeros(40_000), np.ones(10_000)]
    p = np.array([is_ref[a == v].mean() for v in (False, True)])  # Bayes classifier, estimated by counting
    w = density_ratio(p, gamma=40_000 / 10_000)
    assert w == pytest.approx([0.5 / 0.9, 0.5 / 0.1], rel=0.05)
    assert density_ratio(p) == pytest.approx(w / 4)  # without gamma: off by the class prior
    # a classifier trained on class-balanced batches (fairgen) has p = r / (1 + r) exactly: gamma = 1
    r = np.array([0.5 / 0.9, 0.5 / 0.1])
    assert density_ratio(r / (1 + r)) == pytest.approx(r)
    # reweighting the biased rows by w restores the reference share of a=1
    w_rows = w[a_bias.astype(int)]
    assert (w_rows * a_bias).sum() / w_rows.sum() == pytest.approx(0.5, abs=0.01)


def test_density_ratio_stays_finite_at_p_one():
    w = density_ratio(np.array([0.0, 0.5, 1.0]))
    assert np.isfinite(w).all() and w[1] == 1.0 and w[0] > 0


def test_clip_flatten_normalise():
    w = np.r_[np.ones(98), 2.0, 100.0]
    assert clip_weights(w, 0.98).max() == pytest.approx(np.quantile(w, 0.98))
    assert clip_weights(w, None, max_value=5.0).max() == 5.0
    assert clip_weights(w, 0.999, max_value=1.5).max() == 1.5  # the tighter cap wins
    assert np.array_equal(clip_weights(w, None), w)
    assert np.all(flatten(w, 0.0) == 1) and np.array_equal(flatten(w, 1.0), w)
    assert flatten(np.array([4.0, 9.0]), 0.5) == pytest.approx([2.0, 3.0])
    with pytest.raises(ValueError):
        flatten(w, -1.0)
    assert normalize_batch(w).mean() == pytest.approx(1.0)
    t = normalize_batch(torch.tensor([1.0, 3.0]))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([0.5, 1.5]))


def test_importance_weights_order_is_ratio_clip_alpha():
    p = np.random.default_rng(2).uniform(0.05, 0.99, 1000)
    r = density_ratio(p, gamma=2.0)
    w = importance_weights(p, gamma=2.0, alpha=0.5, clip_quantile=0.9)
    assert w == pytest.approx(np.minimum(r, np.quantile(r, 0.9)) ** 0.5)
    assert w.max() == pytest.approx(np.quantile(r, 0.9) ** 0.5)  # the cap is in ratio units
    assert np.all(importance_weights(p, gamma=2.0, alpha=0.0, clip_quantile=0.9) == 1.0)
    assert importance_weights(p, alpha=1.0, clip_quantile=None, clip_value=3.0).max() == 3.0


def test_reliability_curve_is_sklearns_with_counts():
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 5000)
    y = (rng.random(5000) < p).astype(int)  # calibrated by construction
    mean_pred, frac_pos, count = reliability_curve(p, y, n_bins=10)
    ref_true, ref_pred = calibration_curve(y, p, n_bins=10)
    assert np.allclose(mean_pred, ref_pred) and np.allclose(frac_pos, ref_true)
    assert count.sum() == 5000 and len(count) == len(mean_pred)
    assert ece(p, y) < 0.03
    assert ece(np.clip(p + 0.2, 0, 1), y) > 0.15


def test_reliability_figure():
    from fairray.report import fig_png

    rng = np.random.default_rng(4)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    fig = reliability_figure({"raw": (p, y), "calibrated": (np.sqrt(p), y)}, n_bins=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "ECE" in fig.axes[0].get_legend().get_texts()[1].get_text()
    assert fig_png(fig).startswith(b"\x89PNG")
