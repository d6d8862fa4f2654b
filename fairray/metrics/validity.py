"""Are a generator's samples images the labeler can be trusted on? Precision, recall, density and coverage
(Naeem et al. 2020, the `prdc` package) in the labeler's feature space, each beside its real-vs-real reference.

A fairness number on generated samples is only a claim about faces if the labeler reads faces: a generator that
emits noise, or one face, can have any gender share. So every evaluation of generated samples gets

* `precision_<n>`, `recall_<n>`, `density_<n>`, `coverage_<n>`: fake vs real half A of held-out rows of the data
  the generator was trained on (`data.reference.heldout_images`: the val/test splits). Not the balanced reference
  rows: a generator that keeps its data's 90/10 bias covers at most about half of a balanced set, and its fairness
  is what the fairness metrics are for; validity asks whether it learnt the faces of its data;
* `precision_real_<n>`, ... : real half B vs real half A, the same computation on two real samples of the same
  size. k-NN manifold metrics depend on sample size, dimension and k, so an absolute threshold would mean
  different things for different sets; a ratio to the real-vs-real value does not;
* `coverage_target_<n>`, `coverage_target_real_<n>` for a generator trained towards a reweighted distribution
  (fairgen: p_data x w^alpha): coverage with each real row of half A counted by its weight, i.e. the share of the
  *target* distribution with a sample nearby. A reweighted GAN that does its job draws fewer of the majority's
  faces than the data holds, so plain coverage of the data falls for the fairness it was asked for (measured: a
  demo alpha-1 GAN at 43% female covers 0.47 of the 82%-male held-out rows); against its target it does not.
  Likewise a fair distillation student, whose target is its data with the balanced cells drawn equally (each
  held-out row weighted 1 / (K share(cell)), `data.reference.heldout_rows(..., balance_by=...)`);
* `valid_<n>`: 1.0 when the rule below holds, else 0.0.

The rule (`VALIDITY_RULE`): samples are valid when precision >= 0.5 x real-vs-real precision AND coverage >= 0.5 x
real-vs-real coverage (the target coverage where the generator has a reweighted or balanced target). Precision (the share of samples inside the real manifold) guards "not faces": noise or
broken renders fall outside every real k-NN ball. Coverage (the share of real rows with a sample nearby) guards
"one face": a collapsed generator can have perfect precision and still cover almost no real row. Recall and
density are reported, not ruled on: recall is over-optimistic with outliers among the samples, and density has no
upper bound. Half the real-vs-real value lets an honest, imperfect generator through and stops the two failures
that make a fairness number meaningless.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping

import numpy as np

from fairray.metrics.names import count_tag

PRDC = ("precision", "recall", "density", "coverage")
RULE_FRACTION = 0.5
VALIDITY_RULE = (f"valid when precision >= {RULE_FRACTION} x real-vs-real precision and coverage >= "
                 f"{RULE_FRACTION} x real-vs-real coverage of the generator's target (held-out rows, weighted by "
                 f"w^alpha for a reweighted GAN, balanced over its cells for a fair student; attrclf features, k-NN "
                 f"manifolds of Naeem et al. 2020)")


def split_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves (A, B) of range(n) by a fixed-seed permutation: the same rows on every call, and
    no bias from how the rows were ordered (reference rows may come grouped by attribute)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2: 2 * (n // 2)])


def subsample(x: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    """m rows of x (all of them, in order, when m >= len(x)), chosen by a fixed seed."""
    if m >= len(x):
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), m, replace=False))]


def min_rows(nearest_k: int) -> int:
    """The fewest rows per set the k-NN radii are defined for (each point's k-th neighbour besides itself)."""
    return nearest_k + 2


def _prdc(real: np.ndarray, fake: np.ndarray, nearest_k: int) -> dict[str, float]:
    import prdc

    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes on every call
        out = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=nearest_k)
    return {k: float(out[k]) for k in PRDC}


def _target_coverage(real: np.ndarray, fake: np.ndarray, weights: np.ndarray, nearest_k: int) -> float:
    """prdc's coverage (a real row is covered when a sample lies inside its k-NN ball) with each real row counted
    by its weight; prdc's own distance helpers, so weights of 1 give exactly prdc's coverage."""
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    radii = compute_nearest_neighbour_distances(real, nearest_k)
    covered = compute_pairwise_distance(real, fake).min(axis=1) < radii
    return float(np.average(covered, weights=weights))


def prdc_metrics(real_a: np.ndarray, real_b: np.ndarray, fake: np.ndarray, nearest_k: int = 5,
                 weights_a: np.ndarray | None = None) -> dict[str, float]:
    """`<m>_<n>` of fake vs real_a and `<m>_real_<n>` of real_b vs real_a for m in precision, recall, density,
    coverage; n = count_tag(len(fake)), the evaluated sample set the other metrics are named by.

    Features are (N, D) arrays. real_b and fake are cut to the same size, min(len(real_b), len(fake)), by a
    fixed-seed subsample, so the fake and the real-vs-real values are measured with the same set sizes against
    the same real manifold (real_a) and differ only by what the samples are. Computed in float32 (prdc holds
    N x N distance matrices). With `weights_a` (one non-negative weight per real_a row: the generator's target
    relative to the data) also `coverage_target_<n>` and `coverage_target_real_<n>`."""
    a, b, f = (np.asarray(x, np.float32) for x in (real_a, real_b, fake))
    if a.ndim != 2 or b.ndim != 2 or f.ndim != 2 or not a.shape[1] == b.shape[1] == f.shape[1]:
        raise ValueError(f"need (N, D) features of one D, got {a.shape}, {b.shape}, {f.shape}")
    m = min(len(b), len(f))
    if min(len(a), m) < min_rows(nearest_k):
        raise ValueError(f"need >= {min_rows(nearest_k)} rows per set for k={nearest_k}, got real_a {len(a)}, "
                         f"real_b {len(b)}, fake {len(f)}")
    tag = count_tag(len(f))
    fake_m = _prdc(a, subsample(f, m), nearest_k)
    real_m = _prdc(a, subsample(b, m), nearest_k)
    out = {f"{k}_{tag}": fake_m[k] for k in PRDC} | {f"{k}_real_{tag}": real_m[k] for k in PRDC}
    if weights_a is not None:
        w = np.asarray(weights_a, np.float64)
        if w.shape != (len(a),) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise ValueError(f"weights_a: need {len(a)} finite non-negative weights with a positive sum")
        out[f"coverage_target_{tag}"] = _target_coverage(a, subsample(f, m), w, nearest_k)
        out[f"coverage_target_real_{tag}"] = _target_coverage(a, subsample(b, m), w, nearest_k)
    return out


def is_valid(metrics: Mapping[str, float], tag: str) -> bool:
    """VALIDITY_RULE on the `prdc_metrics` of sample set `tag` (precision guards "not faces", coverage "one
    face"; the target coverage when there is one). KeyError when the metrics are missing: no measurement is not a
    pass."""
    cov = "coverage_target" if f"coverage_target_{tag}" in metrics else "coverage"
    return bool(metrics[f"precision_{tag}"] >= RULE_FRACTION * metrics[f"precision_real_{tag}"]
                and metrics[f"{cov}_{tag}"] >= RULE_FRACTION * metrics[f"{cov}_real_{tag}"])


def validity_metric(metrics: Mapping[str, float], tag: str) -> dict[str, float]:
    """{"valid_<tag>": 1.0 or 0.0}: the rule as a number, so MLflow can log and compare it like any metric."""
    return {f"valid_{tag}": 1.0 if is_valid(metrics, tag) else 0.0}
