"""The words a report uses for a change are computed from the numbers, for better, worse, unchanged and invalid."""

import math

from fairray.demo import not_meaningful
from fairray.narrative import change, direction, relative_cut


def test_a_fall_in_a_lower_is_better_metric_is_better():
    assert change("the fairness discrepancy", 0.543, 0.233) == "the fairness discrepancy fell 57% (0.543 -> 0.233, better)"


def test_a_rise_is_never_called_lower():
    text = change("the fairness discrepancy", 0.131, 0.238)
    assert text == "the fairness discrepancy rose 82% (0.131 -> 0.238, worse)"
    assert "lower" not in text and relative_cut(0.131, 0.238) < 0


def test_higher_is_better_metrics_read_the_other_way():
    assert change("accuracy", 0.90, 0.87, lower_is_better=False, fmt=".1%").endswith("(90.0% -> 87.0%, worse)")
    assert "better" in change("accuracy", 0.80, 0.90, lower_is_better=False)


def test_overlapping_intervals_are_not_a_change():
    assert direction(0.30, 0.25, (0.20, 0.40), (0.15, 0.35)) == "unchanged"
    assert change("DEO", 0.30, 0.25, before_ci=(0.20, 0.40), after_ci=(0.15, 0.35)) == \
        "DEO did not change within its interval (0.300 -> 0.250)"
    assert direction(0.30, 0.10, (0.25, 0.35), (0.05, 0.15)) == "fell"  # disjoint intervals: a change
    assert direction(0.500, 0.502) == "unchanged"  # below 1%, no interval


def test_nan_is_not_measured_and_invalid_samples_are_marked():
    assert change("DEO", 0.3, math.nan).endswith("(not measured)")
    assert not_meaningful({"gan-unweighted": 1.0, "student": 0.0}).startswith(" Not meaningful: the samples of student")
    assert not_meaningful({"gan-unweighted": 1.0, "student": None}) == ""


def test_sampled_metric_by_prefix():
    from fairray.metrics.names import sampled

    m = {"share_gender_1_2k": 0.3, "share_gender_1_2k_lo": 0.2, "share_gender_1_exact": 0.5, "precision_real_2k": 1.0,
         "precision_2k": 0.9, "deo_Smiling_gender": 0.12, "deo_Smiling_gender_lo": 0.1}
    assert sampled(m, "share_gender_1") == 0.3
    assert sampled(m, "precision") == 0.9
    assert sampled(m, "deo", parts=2) == 0.12
    assert sampled(m, "recall") is None
