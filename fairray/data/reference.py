"""The target distribution a generator is judged against: the balanced reference rows of a dataset."""

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
