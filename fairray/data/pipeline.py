"""Ray Data labeling and balancing.

label:   read Parquet -> decode + resize on CPU tasks (bad files become error rows) -> labeler actor pool
         (GPU when the cluster has one, bf16) -> labeled Parquet (<head>, <head>_prob, labeler) + errors.parquet,
         summary.json and distribution charts. Rows in == rows out, always.
balance: exact undersampling to equal cell counts, or per-row weights 1/(K * share), over hard labels of one
         attribute or an intersection (fair-distill's balanced sampler).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fairray.config import BalanceConfig, LabelConfig
from fairray.data.cells import balance_weights, select_balanced
from fairray.data.table import (
    DATA_DIR,
    column_names,
    count_rows,
    iter_batches,
    read_manifest,
    read_table,
    shard_paths,
    write_manifest,
)
from fairray.errors import FairrayError
from fairray.labelers.base import Head, Labeler
from fairray.labelers.registry import absolute_spec, input_size, load_labeler
from fairray.machine import compute_setup, resolve_precision
from fairray.ray_env import actor_pool, init_ray, model_actors, resolve_device, runs_in_process

log = logging.getLogger("fairray.data")

TRUE_SUFFIX = "_true"  # ground-truth labels that a labeler's predictions displace


def _text(v: object) -> str | None:
    """A string cell, or None for null (all-null Parquet columns arrive as NaN floats)."""
    return v if isinstance(v, str) else None


def decode_table(table: pa.Table, size: int, max_pixels: int) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array]]:
    """An Arrow batch's image bytes (or files at `path`) -> uint8 (N, size, size, 3), the mask of rows that
    decoded, and the batch's columns with `error` (one reason per failed row; a row whose `error` was already set
    is not decoded) and `path` filled in, ready for a stage to add its own. Rows never go missing."""
    from fairray.data.decode import decode_batch

    n, names = table.num_rows, table.column_names
    errors = [_text(e) for e in table.column("error").to_pylist()] if "error" in names else [None] * n
    paths = [_text(p) for p in table.column("path").to_pylist()] if "path" in names else [None] * n
    blobs = table.column("image").to_pylist() if "image" in names else [None] * n
    for i in range(n):
        if errors[i] is not None:
            blobs[i] = None
        elif blobs[i] is None and paths[i] is not None:
            p = Path(paths[i])
            blobs[i] = p.read_bytes() if p.is_file() else None
            if blobs[i] is None:
                errors[i] = f"file not found: {paths[i]}"
    pixels, decode_errors = decode_batch(blobs, size, max_pixels)
    errors = [e if e is not None else d for e, d in zip(errors, decode_errors, strict=True)]
    cols = {name: table.column(name) for name in names}
    cols["error"] = pa.array(errors, type=pa.string())
    cols["path"] = pa.array(paths, type=pa.string())
    return pixels, np.array([e is None for e in errors], dtype=bool), cols


class BatchClock:
    """Appends "<unix time> <rows>" to <dir>/<pid>.txt as each batch leaves an actor: the benchmarks' steady-state
    clock (off unless a directory is given)."""

    def __init__(self, directory: str | None):
        self.file = Path(directory) / f"{os.getpid()}.txt" if directory else None

    def tick(self, rows: int) -> None:
        if self.file is not None:
            with open(self.file, "a") as f:
                f.write(f"{time.time()} {rows}\n")


class LabelStage:
    """The labeling stage, one Ray Data actor: decode and label each Arrow batch in the same process.

    Decoding in the actor saves an object-store round trip of the decoded pixels per batch (a separate decode
    task ships 4-48x the encoded bytes), and Arrow batches let every column the stage does not touch (the
    image bytes above all) pass through without a copy. Rows in == rows out: a row that does not decode keeps its
    place with `error` set and null labels. `timings`: see BatchClock.
    """

    def __init__(self, spec: str, device: str, size: int, max_pixels: int, threads: int | None = None,
                 timings: str | None = None, precision: str = "fp32", labeler: Labeler | None = None):
        compute_setup(threads)
        # in the command's own process the labeler the driver checked is this one: loaded once
        self.labeler = labeler if labeler is not None else load_labeler(spec, device, precision)
        self.spec, self.size, self.max_pixels = spec, size, max_pixels
        self.clock = BatchClock(timings)

    def __call__(self, table: pa.Table) -> pa.Table:
        pixels, ok, cols = decode_table(table, self.size, self.max_pixels)
        n = table.num_rows
        probs = self.labeler.predict_proba(pixels[ok]) if ok.any() else {}
        for head in self.labeler.heads:
            if head.name in cols and head.name + TRUE_SUFFIX not in cols:
                cols[head.name + TRUE_SUFFIX] = cols.pop(head.name)
            k = len(head.classes)
            p = np.zeros((n, k), np.float32)
            if ok.any():
                p[ok] = probs[head.name]
            cols[head.name] = pa.array(np.asarray(head.codes)[p.argmax(1)], mask=~ok, type=pa.int64())
            cols[head.name + "_prob"] = pa.ListArray.from_arrays(
                pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), pa.array(p.ravel()), mask=pa.array(~ok))
        cols["labeler"] = pa.array([self.spec] * n, type=pa.string())
        out = pa.table(cols)
        self.clock.tick(n)
        return out


GENERATED = "generated"  # generated samples: in the domain of the generator's training data, not checked here


def domain(labeler_sources: tuple[str, ...] | None, dataset: Path) -> dict:
    """Which `source` values of the dataset the labeler never saw in training (a cartoon-trained labeler applied
    to photographs gives near-chance labels with confident probabilities)."""
    data = sorted(str(v) for v in read_table(dataset, columns=["source"]).source.unique())
    unseen = [] if labeler_sources is None else [s for s in data if s not in labeler_sources and s != GENERATED]
    if unseen:
        log.warning("the labeler was trained on source(s) %s and is labeling %s: expect labels near chance "
                    "(train one on this data: fairray train-attrclf --set dataset=...)",
                    list(labeler_sources or []), unseen)
    return {"data_sources": data, "labeler_sources": None if labeler_sources is None else list(labeler_sources),
            "labeler_domain_mismatch": bool(unseen)}


def label(cfg: LabelConfig, out: Path, timings: Path | None = None, stamps: dict | None = None,
          dashboard: bool = True) -> dict:
    """Label every row of cfg.dataset into <out> (Parquet, summary.json, errors.parquet, distributions.png).

    The LabelStage runs in a Ray Data actor pool, or in this process when cfg.engine says so (auto: no Ray running
    or given and a pool of one actor, see ray_env.runs_in_process); the rows, labels and files are the same.
    dashboard=False starts a local Ray without its dashboard (about 4 s less start-up; `fairray label` alone needs
    none, Ray Train in the same process would). For benchmarks: `timings` is where the stage logs each batch's
    exit time, `stamps` gets time.time() at each phase (start, labeler_loaded, ray_ready, written, done)."""
    stamp = (lambda k: stamps.__setitem__(k, time.time())) if stamps is not None else (lambda k: None)
    stamp("start")
    out = Path(out).absolute()  # Ray write tasks run in directories of their own
    if (out / DATA_DIR).exists():
        raise FairrayError(f"{out / DATA_DIR} exists; choose a new --out")
    paths = [str(p) for p in shard_paths(Path(cfg.dataset))]
    rows = count_rows(Path(cfg.dataset))
    local_device = resolve_device(cfg.ray.device)  # before Ray starts: this machine's
    in_process = runs_in_process(cfg.engine, cfg.ray.address, local_device, cfg.actors, rows)
    # fail fast on a bad spec/checkpoint, before any Ray work; in process it is the stage's own labeler
    probe = (load_labeler(cfg.labeler, local_device, cfg.ray.precision) if in_process
             else load_labeler(cfg.labeler, "cpu"))
    heads, size = probe.heads, input_size(probe)
    checked = domain(probe.sources, Path(cfg.dataset))
    stamp("labeler_loaded")
    stage_kwargs = {"spec": absolute_spec(cfg.labeler), "size": size, "max_pixels": cfg.max_pixels,
                    "timings": str(timings) if timings else None,
                    "precision": cfg.ray.precision}  # "auto" resolves on the stage's machine, maybe not the driver's
    if in_process:
        device = local_device
        stamp("ray_ready")
        run_in_process(LabelStage(device=device, labeler=probe, **stage_kwargs),
                       iter_batches(Path(cfg.dataset), cfg.batch_size), out / DATA_DIR, rows, "label (in process)")
    else:
        device = _label_with_ray(cfg, paths, out / DATA_DIR, stage_kwargs, rows, dashboard, stamp)
    stamp("written")
    # as resolved on this machine: the actors' own for a local Ray or a cluster of one CPU kind
    summary = summarize(cfg, out, heads, checked | {"labeler_precision": resolve_precision(device, cfg.ray.precision),
                                                   "engine": "process" if in_process else "ray"})
    stamp("done")
    return summary


def _label_with_ray(cfg: LabelConfig, paths: list[str], data_dir: Path, stage_kwargs: dict, rows: int,
                    dashboard: bool, stamp: Callable[[str], None]) -> str:
    """The Ray Data pipeline: read tasks -> LabelStage actor pool -> write tasks. Returns the device it used."""
    import ray

    init_ray(cfg.ray.address, dashboard=dashboard)
    stamp("ray_ready")
    device = resolve_device(cfg.ray.device)
    n_actors, cpus, threads = actor_pool(device, cfg.actors, rows=rows)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows line up with input rows
    ds = ray.data.read_parquet(paths)
    ds = ds.map_batches(LabelStage, fn_constructor_kwargs=stage_kwargs | {"device": device, "threads": threads},
                        batch_format="pyarrow", batch_size=cfg.batch_size, num_gpus=1 if device == "cuda" else 0,
                        num_cpus=cpus, compute=model_actors(n_actors))
    ds.write_parquet(str(data_dir))
    return device


def run_in_process(stage: Callable[[Any], pa.Table], batches: Iterable[Any], data_dir: Path, rows: int,
                   desc: str, progress: bool = True) -> None:
    """A model stage (LabelStage, GeneratorActor, WeightActor) on its batches in this process, in order, into one
    Parquet file under data_dir, written under a temporary name and renamed: a failed run leaves no table behind.
    What ray_env.runs_in_process picks when a Ray Data pool would be one actor on a Ray of the command's own."""
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    data_dir.mkdir(parents=True)
    tmp = data_dir / ".part-00000.parquet.tmp"
    writer = None
    with tqdm(total=rows, desc=desc, unit="img", disable=None if progress else True) as bar:
        try:
            for batch in batches:
                table = stage(batch)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
                bar.update(table.num_rows)
        finally:
            if writer is not None:
                writer.close()
    if writer is not None:
        tmp.rename(data_dir / "part-00000.parquet")


def _shares(values: pd.Series, head: Head) -> np.ndarray:
    counts = np.array([(values == c).sum() for c in head.codes], dtype=np.float64)
    return counts / max(counts.sum(), 1)


def summarize(cfg: LabelConfig, out: Path, heads: tuple[Head, ...], checked: dict | None = None) -> dict:
    """summary.json, errors.parquet and charts: labeled vs ground truth vs reference vs uniform."""
    from fairray.report import fig_png, shares_figure

    names = [h.name for h in heads]
    have = set(column_names(out))
    # everything but the image bytes (most of the table): the summary needs labels, errors and ground truth only
    df = read_table(out, columns=[c for c in ["image_id", "path", "error", *names, *(n + TRUE_SUFFIX for n in names)]
                                  if c in have])
    n_in = count_rows(Path(cfg.dataset))
    errors = df[df.error.notna()][["image_id", *[c for c in ("path",) if c in df.columns], "error"]]
    errors.to_parquet(out / "errors.parquet", index=False)
    ref = None
    if cfg.reference:
        ref_cols = [c for c in names if c in pd.read_parquet(shard_paths(Path(cfg.reference))[0]).columns]
        ref = read_table(Path(cfg.reference), columns=ref_cols)
    summary: dict = {"rows_in": n_in, "rows_out": len(df), "errors": len(errors), "labeler": cfg.labeler,
                     **(checked or {}), "heads": {}}
    tables = {}
    for h in heads:
        cols = {"labeled": _shares(df[h.name], h)}
        entry = {"classes": list(h.classes), "shares": cols["labeled"].round(4).tolist()}
        if h.name + TRUE_SUFFIX in df.columns:
            ok = df[h.name].notna() & df[h.name + TRUE_SUFFIX].notna()
            cols["ground truth"] = _shares(df.loc[ok, h.name + TRUE_SUFFIX], h)
            entry["agreement_with_ground_truth"] = float((df.loc[ok, h.name] == df.loc[ok, h.name + TRUE_SUFFIX]).mean())
        if ref is not None and h.name in ref.columns:
            cols["reference"] = _shares(ref[h.name], h)
        cols["uniform"] = np.full(len(h.classes), 1 / len(h.classes))
        summary["heads"][h.name] = entry
        tables[h.name] = pd.DataFrame(cols, index=list(h.classes))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    fig_png(shares_figure(tables, f"{Path(cfg.dataset).name} labeled by {cfg.labeler.split(':')[0]}"),
            out / "distributions.png")
    write_manifest(out, read_manifest(Path(cfg.dataset)) | {"labeled_by": cfg.labeler, "rows": len(df)})
    if len(df) != n_in:
        raise FairrayError(f"labeling lost rows: {n_in} in, {len(df)} out")  # a bug, never a user mistake
    return summary


def label_metrics(summary: dict) -> dict[str, float]:
    """A label summary's numbers as MLflow metrics (agreement per head where the data has ground truth)."""
    m = {k: float(summary[k]) for k in ("rows_in", "rows_out", "errors")}
    if "labeler_domain_mismatch" in summary:
        m["labeler_domain_mismatch"] = float(summary["labeler_domain_mismatch"])
    shares = {f"labeled_share_{h}_{k}": float(v) for h, e in summary["heads"].items()
              for k, v in enumerate(e["shares"])}
    return m | shares | {f"agreement_{h}": e["agreement_with_ground_truth"] for h, e in summary["heads"].items()
                         if "agreement_with_ground_truth" in e}


def _reweight(batch: pd.DataFrame, weights: pd.Series) -> pd.DataFrame:
    """Keep rows listed in weights and set their weight column."""
    batch = batch[batch.image_id.isin(weights.index)].copy()
    batch["weight"] = weights.loc[batch.image_id].to_numpy()
    return batch


def balance(cfg: BalanceConfig, out: Path) -> dict:
    import ray

    out = Path(out).absolute()
    paths = [str(p) for p in shard_paths(Path(cfg.dataset))]
    labels = read_table(Path(cfg.dataset), columns=["image_id", *cfg.by])
    init_ray(cfg.ray.address)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.read_parquet(paths)
    if cfg.mode == "undersample":
        keep = labels.loc[select_balanced(labels, cfg.by, cfg.seed), "image_id"]
        weights = pd.Series(1.0, index=keep.to_numpy())
    else:
        weights = pd.Series(balance_weights(labels, cfg.by), index=labels.image_id.to_numpy())
    # fn_kwargs travel through the object store once, not once per row
    ds = ds.map_batches(_reweight, batch_format="pandas", num_cpus=0.5, fn_kwargs={"weights": weights})
    if (out / DATA_DIR).exists():
        raise FairrayError(f"{out / DATA_DIR} exists; choose a new --out")
    ds.write_parquet(str(out / DATA_DIR))
    result = read_table(out, columns=["image_id", "weight", *cfg.by])
    cells = result.groupby(cfg.by).agg(rows=("image_id", "size"), weight=("weight", "sum"))
    cells["weighted_share"] = cells.weight / cells.weight.sum()
    summary = {"mode": cfg.mode, "by": cfg.by, "rows_in": len(labels), "rows_out": len(result),
               "cells": {" & ".join(map(str, np.atleast_1d(k))): {"rows": int(r.rows),
                                                                  "weighted_share": float(r.weighted_share)}
                         for k, r in cells.iterrows()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_manifest(out, read_manifest(Path(cfg.dataset)) | {"balanced": {"by": cfg.by, "mode": cfg.mode},
                                                            "rows": len(result)})
    return summary
