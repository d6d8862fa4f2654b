"""Downstream fairness metrics against hand-computed values on small tables (no Ray, milliseconds)."""

import numpy as np
import pytest

from fairray.errors import FairrayError
from fairray.metrics import downstream as D

# g=0: y=1 predicted [1,1,1,0], y=0 predicted [0,0,1,1]; g=1: y=1 predicted [1,0], y=0 predicted [0,0]
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0])
G = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0])
# s[t, a]: group 0 over-shows t=1 in "training"
DIRECTION = np.array([[-1.0, 1.0], [1.0, -1.0]])
HAND = {
    "acc": 8 / 12,
    "worst_group_acc": 0.5,          # (y1,g0) .75, (y0,g0) .5, (y1,g1) .5, (y0,g1) 1
    "deo": 0.25,                     # FNR .25 vs .5
    "dp_gap": 0.375,                 # selection .625 vs .25
    "eo_gap": 0.5,                   # TPR gap .25, TNR gap |.5 - 1|
    "ba": (0.125 + 0.125 + 0.25 + 0.25) / 4,
}


def test_metricframe_path_matches_hand_values():
    m = D.metricframe_metrics(Y, P, G, DIRECTION)
    for k, v in HAND.items():
        assert m[k] == pytest.approx(v), k


def test_count_path_matches_hand_values():
    m = D.count_metrics(D.cell_counts(Y, G, P), DIRECTION)
    for k, v in HAND.items():
        assert float(m[k]) == pytest.approx(v), k


def test_both_paths_agree_on_random_tables():
    rng = np.random.default_rng(3)
    for _ in range(5):
        y, g, p = (rng.integers(0, 2, 400) for _ in range(3))
        a = D.metricframe_metrics(y, p, g)
        b = D.count_metrics(D.cell_counts(y, g, p))
        for k in D.HARD_METRICS:
            assert a[k] == pytest.approx(float(b[k]), abs=1e-12), k


def test_bias_direction_and_default_ba():
    # P(T=1) = .75; group 1 is all positive (+), group 0 is half (-)
    s = D.bias_direction(np.array([1, 1, 1, 0]), np.array([1, 1, 0, 0]))
    assert s.tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    # a classifier that predicts "positive" for everyone in group 1 and nobody in group 0 amplifies it:
    # delta(t=1,a=1) = 1-1 = 0, delta(t=0,a=1) = 0; delta(t=1,a=0) = 0-.5, delta(t=0,a=0) = 1-.5
    y, g, p = np.array([1, 1, 1, 0]), np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])
    assert D.metricframe_metrics(y, p, g)["ba"] == pytest.approx((0 + 0 + 0.5 + 0.5) / 4)
    # on a balanced table every sign is 0: BA needs the training direction
    assert D.bias_direction(Y[:8], np.array([0, 1] * 4)).tolist() == [[0, 0], [0, 0]]


def test_calibrated_threshold():
    y = np.array([1, 0, 1, 0, 0])
    score = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    assert D.calibrated_threshold(y, score) == pytest.approx(0.8)  # 2 positives -> 2nd highest score
    assert D.calibrated_threshold(np.zeros(3, int), score[:3]) == 0.5


def test_score_kl():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    g = np.tile([0, 1], 200)
    same = np.where(y == 1, 0.8, 0.2) + np.zeros(400)
    assert D.score_kl(y, same, g) == pytest.approx(0.0, abs=1e-9)
    apart = np.where(g == 1, rng.uniform(0.7, 1.0, 400), rng.uniform(0.0, 0.3, 400))
    kl = D.score_kl(y, apart, g)
    assert kl > 1.0
    assert D.score_kl(y, apart, 1 - g) == pytest.approx(kl)  # symmetric in the groups


def test_evaluate_names_intervals_and_errors():
    rng = np.random.default_rng(1)
    y, g = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    score = np.clip(0.6 * y + 0.2 * g + rng.normal(0, 0.2, 500), 0, 1)
    m = D.evaluate(y, score, g, "Smiling", "gender", threshold=0.5, n_boot=100)
    for k in ("acc", "ap_Smiling", "worst_group_acc", "deo_Smiling_gender", "ba_Smiling_gender",
              "kl_Smiling_gender", "dp_gap", "eo_gap"):
        assert m[f"{k}_lo"] <= m[k] + 1e-9 and m[k] <= m[f"{k}_hi"] + 1e-9, k
    pred = (score >= 0.5).astype(int)
    assert m["acc"] == pytest.approx((pred == y).mean())
    with pytest.raises(FairrayError, match="0/1"):
        D.evaluate(y + 1, score, g, "Smiling", "gender")
    with pytest.raises(FairrayError, match="equally long"):
        D.evaluate(y, score[:10], g, "Smiling", "gender")
