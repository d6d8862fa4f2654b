"""In-memory loading of a canonical table split for training (one worker's shard, decoded once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairray.data.table import decode_images, read_table
from fairray.errors import FairrayError


def load_split(dataset: Path, split: str | None, columns: list[str], rank: int = 0, world: int = 1,
               size: int | None = None, subset: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows rank::world of `split` (and `subset`) that decoded fine: uint8 (N, size, size, 3) + columns.

    Rows with `error` set carry no usable image; they are left out of training and reported by the caller."""
    wanted = list(dict.fromkeys(["image_id", "image", "split", "error", *columns] + (["subset"] if subset else [])))
    df = read_table(dataset, columns=wanted)
    if split is not None:
        df = df[df.split == split]
    if subset is not None:
        df = df[df.subset == subset]
    if df.empty:
        raise FairrayError(f"{dataset}: no rows with split={split!r}" + (f", subset={subset!r}" if subset else ""))
    df = df[df.error.isna()].iloc[rank::world].reset_index(drop=True)
    images = decode_images(df.pop("image"), size)
    return images, df
