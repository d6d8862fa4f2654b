"""In-memory loading of a canonical table split for training (one worker's shard, decoded once)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fairray.data.decode import decode_column
from fairray.data.table import column_names, read_table
from fairray.errors import FairrayError

log = logging.getLogger("fairray.data")

MAX_EXAMPLES = 5


def load_split(dataset: Path, split: str | None, columns: list[str], rank: int = 0, world: int = 1,
               size: int | None = None, subset: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows rank::world of `split` (and `subset`) that decoded fine: uint8 (N, size, size, 3) + columns.

    Rows with `error` set and rows whose bytes do not decode are left out, so one broken file costs one
    row rather than a Ray Train worker. What was dropped is in df.attrs: "error_rows" (rows with `error`
    set), "bad_rows" (rows that failed to decode) and "bad_examples" (up to 5 (image_id, reason) pairs).
    Both counts are this rank's share, so summing them over ranks gives the split's totals.
    """
    wanted = list(dict.fromkeys(["image_id", "image", "split", "error", *columns] + (["subset"] if subset else [])))
    df = read_table(dataset, columns=wanted)
    if split is not None:
        df = df[df.split == split]
    if subset is not None:
        df = df[df.subset == subset]
    where = f"split={split!r}" + (f", subset={subset!r}" if subset else "")
    if df.empty:
        raise FairrayError(f"{dataset}: no rows with {where}")
    flagged = df.error.notna()
    # Shard after dropping flagged rows so ranks get equal shares of usable rows, as before.
    errored = df[flagged].iloc[rank::world]
    df = df[~flagged].iloc[rank::world].reset_index(drop=True)
    images, errors = decode_column(df.pop("image"), size)
    failed = [(str(iid), err) for iid, err in zip(df.image_id, errors, strict=True) if err is not None]
    if failed:
        df = df[[e is None for e in errors]].reset_index(drop=True)
    if df.empty:
        reasons = failed + [(str(i), str(e)) for i, e in zip(errored.image_id, errored.error, strict=True)]
        why = f"first: {reasons[0][0]}: {reasons[0][1]}" if reasons else f"rank {rank} of {world} got no rows"
        raise FairrayError(f"{dataset}: no usable image with {where} ({len(failed)} undecodable, "
                           f"{len(errored)} with error set; {why})")
    if failed or len(errored):
        log.warning("%s (%s, rank %d/%d): skipped %d undecodable rows and %d rows with error set%s",
                    dataset, where, rank, world, len(failed), len(errored),
                    f"; first: {failed[0][0]}: {failed[0][1]}" if failed else "")
    df.attrs["error_rows"] = len(errored)
    df.attrs["bad_rows"] = len(failed)
    df.attrs["bad_examples"] = failed[:MAX_EXAMPLES]
    return images, df


def subsets(dataset: Path) -> set[str]:
    """The `subset` values of a dataset (SynthFaces: biased, reference; a reader's output: real)."""
    if "subset" not in column_names(dataset):
        return set()
    return {str(s) for s in read_table(dataset, columns=["subset"]).subset.dropna().unique()}


def check_split(dataset: Path, split: str, columns: list[str], subset: str | None = None) -> int:
    """On the driver, before Ray starts: the dataset exists, has `columns`, and `split` (in `subset`) holds rows
    without `error` set. Returns their count; every failure is one line (FairrayError)."""
    if not Path(dataset).exists():
        raise FairrayError(f"dataset={dataset}: no such directory")
    df = read_table(dataset, columns=list(dict.fromkeys(["split", "error", *columns, *(["subset"] if subset else [])])))
    rows = df[(df.split == split) & df.error.isna()]
    if subset is not None:
        rows = rows[rows.subset == subset]
    if rows.empty:
        where = f"split={split!r}" + (f", subset={subset!r}" if subset else "")
        have = sorted({str(s) for s in df.split.unique()})
        raise FairrayError(f"{dataset}: no usable rows with {where} (its splits: {have}"
                           + (f"; subsets: {sorted(subsets(dataset))})" if subset else ")"))
    return len(rows)
