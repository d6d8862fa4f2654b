"""What a generator's samples are compared with: the balanced reference rows of a dataset (the fairness target,
fd_attrclf) and held-out rows of the data it was trained on (the validity metrics: did it learn its data?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def heldout_rows(dataset: Path, size: int, n: int, alpha: float = 0.0) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`heldout_images` and, for a generator trained towards p_data x w^alpha (alpha > 0 on a dataset with a
    `weight` column: `fairray debias ratio`), each row's w^alpha; None for an unweighted target."""
    weighted = alpha > 0 and "weight" in column_names(dataset)
    parts, weights = [], []
    for split in ("val", "test"):
        try:
            images, df = load_split(dataset, split, ["weight"] if weighted else [], size=size)
        except FairrayError:
            continue
        parts.append(images)
        if weighted:
            weights.append(np.power(np.clip(df["weight"].to_numpy(np.float64), 0, None), alpha))
    if not parts:
        return reference_images(dataset, size, n), None
    return np.concatenate(parts)[:n], (np.concatenate(weights)[:n] if weights else None)
