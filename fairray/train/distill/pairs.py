"""The student's training pairs: teacher samples with their latents, labelled through Ray Data, and the balanced
sampler over the cells of the predicted labels (fair-distill's sampler, seeded and over any intersection)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from fairray.config import DistillConfig, LabelConfig
from fairray.data.cells import balance_weights, select_balanced
from fairray.data.decode import decode_column
from fairray.data.table import read_table
from fairray.errors import FairrayError

SELECTION = "selection.parquet"

def make_pairs(cfg: DistillConfig, out: Path) -> Path:
    """Ray Data: teacher samples (with latents) -> labeler actor pool -> <out>/pairs_labeled. Reused when done."""
    from fairray.data.pipeline import label
    from fairray.generate import generate

    labeled = out / "pairs_labeled"
    if (labeled / "summary.json").is_file():
        return labeled
    if labeled.exists():
        shutil.rmtree(labeled)  # an interrupted labeling run: its partial output is never read
    generate(Path(cfg.teacher), cfg.n_pairs, out / "pairs", seed=cfg.seed + 1000, device=cfg.ray.device,
             address=cfg.ray.address)
    label(LabelConfig(dataset=str(out / "pairs"), labeler=cfg.labeler, ray=cfg.ray), labeled)
    return labeled


def select_pairs(labels: pd.DataFrame, by: list[str], sampler: str, seed: int) -> pd.DataFrame:
    """(image_id, weight) of the pairs the student sees: balanced over the cells of `by` (fair-distill's sampler,
    here seeded and over any intersection). Rows without labels (error rows) are dropped."""
    ok = labels.dropna(subset=by).reset_index(drop=True)
    if ok.empty:
        raise FairrayError("no labeled pairs to distill from")
    if sampler == "undersample":
        ok = ok.loc[select_balanced(ok, by, seed)]
        w = np.ones(len(ok))
    elif sampler == "weights":
        w = balance_weights(ok, by)
    else:
        w = np.ones(len(ok))
    return pd.DataFrame({"image_id": ok.image_id.to_numpy(), "weight": w, **{a: ok[a].to_numpy() for a in by}})


def selection_summary(selection: pd.DataFrame, labels: pd.DataFrame, by: list[str]) -> dict:
    """Per cell: pairs drawn from the teacher, pairs selected and the share of the student's training draws."""
    drawn = labels.dropna(subset=by).groupby(by).size()
    sel = selection.groupby(by).agg(rows=("image_id", "size"), weight=("weight", "sum"))
    cells = {}
    for key, n in drawn.items():
        k = key if isinstance(key, tuple) else (key,)
        name = " & ".join(f"{a}={int(v)}" for a, v in zip(by, k, strict=True))
        row = sel.loc[key] if key in sel.index else None
        cells[name] = {"drawn": int(n), "selected": int(row.rows) if row is not None else 0,
                       "training_share": float(row.weight / sel.weight.sum()) if row is not None else 0.0}
    return {"by": by, "pairs": int(len(labels)), "selected": int(len(selection)), "cells": cells}


def load_pairs(pairs: Path, selection: Path, rank: int, world: int, size: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This rank's shard of the selected pairs: (latents float32 (N, z), uint8 images NHWC, sampling weights)."""
    sel = pd.read_parquet(selection, columns=["image_id", "weight"])
    df = read_table(pairs, columns=["image_id", "image", "latent", "error"])
    df = df[df.error.isna()].merge(sel, on="image_id").sort_values("image_id").iloc[rank::world]
    if df.empty:
        raise FairrayError(f"rank {rank}: no selected pairs in {pairs}")
    images, errors = decode_column(df.image, size)
    ok = np.array([e is None for e in errors], dtype=bool)  # a pair whose image does not decode is left out
    df = df[ok]
    z = np.stack([np.asarray(v, dtype=np.float32) for v in df.latent])
    return z, images, df.weight.to_numpy(np.float64)

