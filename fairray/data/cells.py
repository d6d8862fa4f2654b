"""Balanced cells of one attribute or an intersection: exact undersampling to equal counts, and per-row weights
1 / (K share(cell)). Pure pandas, so callers outside a Ray pipeline (distill's sampler, held-out target weights)
need not import Ray: the balance stage, fair-distill's sampler and the validity target all use these."""

from __future__ import annotations

import numpy as np
import pandas as pd


def select_balanced(labels: pd.DataFrame, by: list[str], seed: int) -> pd.Index:
    """Exactly min-cell-count rows from every observed cell of `by` (rows without a label are left out)."""
    labels = labels.dropna(subset=by)
    n = labels.groupby(by).size().min()
    return labels.groupby(by, group_keys=False).sample(n=int(n), random_state=seed).index


def balance_weights(labels: pd.DataFrame, by: list[str]) -> np.ndarray:
    """w = 1 / (K * share(cell)): every cell gets equal total weight; unlabeled rows get 0; mean 1 over labeled."""
    ok = labels[by].notna().all(axis=1)
    w = np.zeros(len(labels))
    share = labels[ok].groupby(by)[by[0]].transform("size") / ok.sum()
    k = labels[ok].groupby(by).ngroups
    w[ok.to_numpy()] = 1.0 / (k * share.to_numpy())
    return w
