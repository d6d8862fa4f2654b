"""What a generator's samples are compared with: the balanced reference rows of a dataset (the fairness target,
fd_attrclf) and held-out rows of the data it was trained on (the validity metrics: did it learn its data?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fairray.data.loading import load_split
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
    parts = []
    for split in ("val", "test"):
        try:
            parts.append(load_split(dataset, split, [], size=size)[0])
        except FairrayError:
            continue
    if not parts:
        return reference_images(dataset, size, n)
    return np.concatenate(parts)[:n]
