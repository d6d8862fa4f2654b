"""Build a SynthFaces dataset: exact-count biased set + balanced reference set, rendered and sharded."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fairray.config import SynthConfig
from fairray.data.bias import BiasSpec, reference_spec, sample_attributes
from fairray.data.synthetic import ambiguous_cues, render_chunked, sample_nuisance
from fairray.data.table import (
    DATA_DIR,
    MANIFEST,
    ShardWriter,
    encode_images,
    encode_png,
    read_manifest,
    write_manifest,
)

SOURCE = "synthfaces"
LABELER = "synthfaces-exact"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Part:
    subset: str  # "biased" or "reference"
    split: str
    n: int
    spec: BiasSpec


def plan(cfg: SynthConfig) -> list[Part]:
    """Row counts per (subset, split); the reference set is perc x the biased set, split the same way."""
    sizes = {"train": cfg.n, "val": round(cfg.n * cfg.val_frac), "test": round(cfg.n * cfg.test_frac)}
    ref = reference_spec(cfg.bias)
    parts = [Part("biased", s, sizes[s], cfg.bias) for s in SPLITS]
    parts += [Part("reference", s, round(sizes[s] * cfg.perc), ref) for s in SPLITS]
    return [p for p in parts if p.n > 0]


def part_rows(cfg: SynthConfig, part: Part, index: int) -> pd.DataFrame:
    """Attributes + nuisance for one part; each part has its own seed stream, so parts are independent."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
    attrs = sample_attributes(part.n, part.spec, rng)
    rows = pd.concat([attrs, sample_nuisance(part.n, rng)], axis=1)
    if cfg.ambiguity:  # its own stream: sets without ambiguity keep their bytes
        cue_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index, 7]))
        rows = pd.concat([rows, ambiguous_cues(rows, cfg.ambiguity, cue_rng)], axis=1)
    tag = part.subset[0]
    rows.insert(0, "image_id", [f"sf{cfg.seed}-{tag}-{part.split}-{i:06d}" for i in range(part.n)])
    rows.insert(1, "source", SOURCE)
    rows.insert(2, "subset", part.subset)
    rows.insert(3, "split", part.split)
    return rows


def build(cfg: SynthConfig, out: Path, progress: bool = True) -> dict:
    """Render every part to <out>/data/*.parquet (+ optional image folder), replacing what <out> held; returns the
    manifest."""
    out = Path(out)
    # a smaller set over an older one would leave the old set's last shards (and files) to be read with it
    for old in (out / DATA_DIR, out / "images"):
        shutil.rmtree(old, ignore_errors=True)
    (out / MANIFEST).unlink(missing_ok=True)
    writer = ShardWriter(out)
    parts = plan(cfg)
    total = sum(p.n for p in parts)
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    folder_rows = []
    with tqdm(total=total, desc="render SynthFaces", unit="img", disable=not progress) as bar:
        for idx, part in enumerate(parts):
            rows = part_rows(cfg, part, idx)
            counts[f"{part.subset}/{part.split}"] = part.n
            for start in range(0, part.n, cfg.shard_rows):
                shard = rows.iloc[start:start + cfg.shard_rows].reset_index(drop=True)
                images = render_chunked(shard, cfg.resolution).numpy()
                shard["image"] = encode_images(images, cfg.image_format)
                shard["path"] = None
                shard["height"] = shard["width"] = cfg.resolution
                shard["labeler"] = LABELER
                shard["weight"] = 1.0
                shard["error"] = None
                shard["seed"] = cfg.seed
                digest.update(images.tobytes())
                if cfg.image_folder:  # files for image viewers: PNG whatever the table holds
                    png = shard if cfg.image_format == "png" else shard.assign(image=encode_png(images))
                    folder_rows.append(_write_images(out, png))
                writer.write(shard)
                bar.update(len(shard))
    manifest = {
        "source": SOURCE, "config": cfg.model_dump(mode="json"), "bias": cfg.bias.describe(),
        "bias_attributes": cfg.bias.resolved_attributes(), "counts": counts, "rows": total,
        "shards": writer.n_shards, "fingerprint": digest.hexdigest()[:16],
    }
    if folder_rows:
        pd.concat(folder_rows).to_csv(out / "images" / "labels.csv", index=False)
    write_manifest(out, manifest)
    return manifest


def current(cfg: SynthConfig, out: Path) -> bool:
    """<out> holds a finished set whose manifest records exactly these settings."""
    out = Path(out)
    return (out / MANIFEST).is_file() and read_manifest(out).get("config") == cfg.model_dump(mode="json")


def ensure(cfg: SynthConfig, out: Path, progress: bool = True) -> Path:
    """<out> as rendered from cfg: kept when `current`, rendered anew otherwise, so a re-run in the same output dir
    with other SynthFaces settings never trains on the old faces."""
    out = Path(out)
    if current(cfg, out):
        return out
    if (out / MANIFEST).is_file():
        print(f"{out}: rendered with other SynthFaces settings; rendering anew", flush=True)
    build(cfg, out, progress)
    return out


def _write_images(out: Path, shard: pd.DataFrame) -> pd.DataFrame:
    meta = shard.drop(columns=["image", "path"]).copy()
    paths = []
    for image_id, split, subset, blob in zip(shard.image_id, shard.split, shard.subset, shard.image, strict=True):
        rel = Path(subset) / split / f"{image_id}.png"
        (out / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / "images" / rel).write_bytes(blob)
        paths.append(str(rel))
    meta.insert(1, "path", paths)
    return meta
