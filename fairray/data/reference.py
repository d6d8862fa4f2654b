"""What a generator's samples are compared with: the balanced reference rows of a dataset (the fairness target,
fd_attrclf) and held-out rows of the data it was trained on (the validity metrics: did it learn its data?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairray.data.cells import balance_weights
from fairray.data.loading import load_split
from fairray.data.table import column_names
from fairray.errors import FairrayError


def reference_images(dataset: Path, size: int, n: int) -> np.ndarray | None:
    """Up to n balanced reference (or else any train) images: the target distribution for fd_attrclf."""
    try:
        images, _ = load_split(dataset, "train", [], size=size, subset="reference")
    except FairrayError:
        images, _ = load_split(dataset, "train", [], size=size)
    return images[:n]


def heldout_images(dataset: Path, size: int, n: int) -> np.ndarray | None:
    """Up to n rows of the dataset's val and test splits (rows no GAN trains on, drawn like its training rows);
    a dataset without them falls back to `reference_images`."""
    return heldout_rows(dataset, size, n)[0]


def heldout_rows(dataset: Path, size: int, n: int, alpha: float = 0.0, balance_by: list[str] | None = None
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`heldout_images` and each row's weight under the generator's target relative to its data: w^alpha for a
    generator trained towards p_data x w^alpha (alpha > 0 on a dataset with a `weight` column: `fairray debias
    ratio`); 1 / (K share(cell)) over the K `balance_by` cells of the rows for one trained towards the data with
    those cells balanced (a fair distillation student, whose sampler draws every cell equally; an unlabeled row
    weighs 0, as in the balance stage). None for an
    unweighted target, or when the dataset lacks a `balance_by` column (then coverage is judged unweighted)."""
    names = set(column_names(dataset))
    weighted = alpha > 0 and "weight" in names
    by = list(balance_by) if balance_by and set(balance_by) <= names else []
    parts, frames = [], []
    for split in ("val", "test"):
        try:
            images, df = load_split(dataset, split, (["weight"] if weighted else []) + by, size=size)
        except FairrayError:
            continue
        parts.append(images)
        frames.append(df)
    if not parts:
        return reference_images(dataset, size, n), None
    images, df = np.concatenate(parts)[:n], pd.concat(frames, ignore_index=True).iloc[:n]
    if not (weighted or by):
        return images, None
    w = np.ones(len(df))
    if weighted:
        w *= np.power(np.clip(df["weight"].to_numpy(np.float64), 0, None), alpha)
    if by:
        w *= balance_weights(df, by)  # the balance stage's and the distill sampler's weights
    return images, w
