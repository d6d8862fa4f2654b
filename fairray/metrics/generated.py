"""Fairness and quality of a generator's samples, measured with a labeler (fairgen's protocol).

Names say the protocol: `fairness_discrepancy_gender_10k` is the L2 distance to uniform of the labeler's hard
predictions on 10k samples, averaged over `repeats` disjoint sets; `fd_attrclf_10k` is a Frechet distance in
the attribute classifier's feature space against a reference set (never called FID); `precision_10k`, ...,
`valid_10k` say whether the samples are images the labeler can be trusted on (`fairray.metrics.validity`).
"""

from __future__ import annotations

import numpy as np

from fairray.labelers.base import Head, Labeler
from fairray.metrics.fairness import fairness_discrepancy, kl_to_uniform, shares
from fairray.metrics.names import count_tag

__all__ = ["bootstrap_ci", "count_tag", "evaluate_samples", "fairness_metrics", "labeler_features"]


def bootstrap_ci(values: np.ndarray, stat, n_boot: int = 200, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    stats = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n_boot)]
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def fairness_metrics(labels: np.ndarray, head: Head, repeats: int = 1) -> dict[str, float]:
    """Discrepancy/KL averaged over `repeats` disjoint sets; shares with bootstrap 95% intervals."""
    tag = count_tag(len(labels))
    idx = np.searchsorted(np.asarray(head.codes), labels)
    k = len(head.codes)
    sets = np.array_split(idx, repeats)
    fd = [fairness_discrepancy(shares(s, k)) for s in sets]
    kl = [kl_to_uniform(shares(s, k)) for s in sets]
    m = {f"fairness_discrepancy_{head.name}_{tag}": float(np.mean(fd)),
         f"kl_to_uniform_{head.name}_{tag}": float(np.mean(kl))}
    if repeats > 1:
        m[f"fairness_discrepancy_{head.name}_{tag}_std"] = float(np.std(fd))
    for c, share in enumerate(shares(idx, k)):
        code = head.codes[c]
        lo, hi = bootstrap_ci(idx, lambda v, c=c: float((v == c).mean()))
        m[f"share_{head.name}_{code}_{tag}"] = float(share)
        m[f"share_{head.name}_{code}_{tag}_lo"], m[f"share_{head.name}_{code}_{tag}_hi"] = lo, hi
    return m


def labeler_features(labeler: Labeler, images: np.ndarray, batch: int = 500,
                     cache: dict[tuple, np.ndarray] | None = None) -> np.ndarray:
    """The labeler's features of `images`, in batches. With a `cache` (a dict the caller keeps while the arrays it
    scores are alive), each array's features are computed once: teacher and student are scored against the same
    reference and held-out rows."""
    key = (id(images), images.shape)
    if cache is not None and key in cache:
        return cache[key]
    f = np.concatenate([labeler.features(images[i:i + batch]) for i in range(0, len(images), batch)])
    if cache is not None:
        cache[key] = f
    return f


def evaluate_samples(images: np.ndarray, labeler: Labeler, heads: list[str], reference: np.ndarray | None = None,
                     repeats: int = 1, batch: int = 500, nearest_k: int = 5, heldout: np.ndarray | None = None,
                     heldout_weights: np.ndarray | None = None, feature_cache: dict[tuple, np.ndarray] | None = None
                     ) -> dict[str, float]:
    """Label samples and compute fairness per head. When the labeler exposes features: fd_attrclf against the
    `reference` images (the fairness target, e.g. balanced reference rows) and validity against `heldout` real
    rows of the data the generator was trained on (default: the reference): precision/recall/density/coverage of
    the samples vs heldout half A beside the same of half B vs A, and `valid_<n>` (see fairray.metrics.validity).
    A generator that keeps its data's bias is valid against its own data: judged against a balanced set, its
    coverage would fall for the bias alone. Validity is left out when there are too few rows for k-NN radii
    (fewer than 2 x (nearest_k + 2)). `heldout_weights` (one per heldout row; `data.reference.heldout_rows`) is
    the generator's target relative to its data (w^alpha for a fairgen GAN): coverage is then also measured
    against that target and the rule judges it. `feature_cache`: see labeler_features."""
    from fairray.metrics.quality import feature_stats, frechet_distance
    from fairray.metrics.validity import min_rows, prdc_metrics, split_halves, validity_metric

    probs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch):
        for h, p in labeler.predict_proba(images[i:i + batch]).items():
            probs.setdefault(h, []).append(p)
    by_name = {h.name: h for h in labeler.heads}
    metrics: dict[str, float] = {}
    for h in heads:
        p = np.concatenate(probs[h])
        labels = np.asarray(by_name[h].codes)[p.argmax(1)]
        metrics |= fairness_metrics(labels, by_name[h], repeats)
    manifold = heldout if heldout is not None else reference
    if manifold is not None and hasattr(labeler, "features"):
        def feats(x: np.ndarray) -> np.ndarray:
            return labeler_features(labeler, x, batch, feature_cache)

        tag = count_tag(len(images))
        f_fake = feats(images)
        f_ref = feats(reference) if reference is not None else None
        if f_ref is not None:
            metrics[f"fd_attrclf_{tag}"] = float(frechet_distance(*feature_stats(f_fake), *feature_stats(f_ref)))
        f_real = f_ref if manifold is reference else feats(manifold)  # features once per image set
        if len(f_real) // 2 >= min_rows(nearest_k) and len(f_fake) >= min_rows(nearest_k):
            a, b = split_halves(len(f_real))
            w = None if heldout_weights is None or heldout is None else np.asarray(heldout_weights)[a]
            v = prdc_metrics(f_real[a], f_real[b], f_fake, nearest_k, weights_a=w)
            metrics |= v | validity_metric(v, tag)
    return metrics
