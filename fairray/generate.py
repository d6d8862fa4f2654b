"""Generation through Ray Data: latents -> generator actors -> the canonical table (one row per sample).

Rows carry `generator`, `checkpoint`, `seed` and the latent vector (`latent`), so any sample can be re-made and
labeled later with `fairray label`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from fairray.data.table import DATA_DIR, IMAGE_FORMATS, MANIFEST, encode_images, read_manifest, write_manifest
from fairray.errors import FairrayError
from fairray.machine import compute_setup
from fairray.ray_env import actor_pool, init_ray, model_actors, resolve_device, runs_in_process

DEFAULT_FORMAT = {"image_format": "png"}  # outputs written before the option existed


class GeneratorActor:
    """Loads the EMA generator once; latents are a function of (seed, row index), so output is deterministic."""

    def __init__(self, checkpoint: str, seed: int, device: str, threads: int | None = None,
                 timings: str | None = None, image_format: str = "png"):
        import torch

        from fairray.data.pipeline import BatchClock
        from fairray.models.generator_io import load_generator

        compute_setup(threads)
        self.clock = BatchClock(timings)
        self.G, self.cfg = load_generator(Path(checkpoint))
        self.G.to(device)
        self.checkpoint, self.seed, self.device, self.torch = checkpoint, seed, device, torch
        self.image_format = image_format

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from fairray.models.generator_io import to_images

        torch = self.torch
        ids = batch["id"]
        z = np.stack([np.random.default_rng([self.seed, int(i)]).standard_normal(self.cfg.z_dim) for i in ids])
        self.G.train()  # BatchNorm on batch statistics, as in training
        with torch.no_grad():
            images = to_images(self.G(torch.from_numpy(z).float().to(self.device)))
        n, r = len(ids), self.cfg.resolution
        table = pa.table({
            "image_id": [f"gen-{self.cfg.name}-{self.seed}-{int(i):07d}" for i in ids],
            "source": ["generated"] * n, "subset": ["generated"] * n, "split": ["gen"] * n,
            "image": encode_images(images, self.image_format), "path": pa.nulls(n, pa.string()), "height": [r] * n, "width": [r] * n,
            "weight": [1.0] * n, "error": pa.nulls(n, pa.string()), "generator": [f"{self.cfg.model}:{self.cfg.name}"] * n,
            "checkpoint": [self.checkpoint] * n, "seed": [self.seed] * n,
            "latent": pa.array(list(z.astype(np.float32)), type=pa.list_(pa.float32())),
        })
        self.clock.tick(n)
        return table


def generate(checkpoint: Path, n: int, out: Path, seed: int = 0, batch_size: int = 500, actors: int | None = None,
             device: str = "auto", address: str | None = None, timings: Path | None = None,
             image_format: str = "png", engine: str = "auto", dashboard: bool = True) -> dict:
    """n samples of a checkpoint's EMA generator -> <out> (canonical table + manifest); reused when already there.
    `actors` default: from the cluster's resources; `timings`: see pipeline.BatchClock; `image_format`: png or npy
    (raw pixels, see data.table.encode_images); `engine`: as LabelConfig.engine (auto: in this process when no Ray
    runs or is given and the pool would be one actor; the rows are the same either way); `dashboard`: as
    pipeline.label's."""
    import ray

    from fairray.train.checkpoint import is_complete

    if not is_complete(Path(checkpoint)):
        raise FairrayError(f"{checkpoint} is not a complete fairray GAN checkpoint")
    out = Path(out).absolute()  # Ray write tasks run in directories of their own
    if image_format not in IMAGE_FORMATS:
        raise FairrayError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    manifest = {"source": "generated", "checkpoint": str(Path(checkpoint).resolve()), "rows": n, "seed": seed,
                "image_format": image_format}
    if (out / DATA_DIR).exists():
        done = read_manifest(out) if (out / MANIFEST).is_file() else None
        if done is not None and {k: done.get(k, DEFAULT_FORMAT.get(k)) for k in manifest} == manifest:
            return done  # a re-submitted job reuses its finished output
        if done is not None:
            raise FairrayError(f"{out} holds other samples ({done.get('rows')} rows, seed {done.get('seed')} from "
                               f"{done.get('checkpoint')}); choose a new --out")
        shutil.rmtree(out / DATA_DIR)  # no manifest: an interrupted write, never read
    dev = resolve_device(device)  # before Ray starts: this machine's
    kwargs = {"checkpoint": str(Path(checkpoint).resolve()), "seed": seed,
              "timings": str(timings) if timings else None, "image_format": image_format}
    if runs_in_process(engine, address, dev, actors, n):
        from fairray.data.pipeline import run_in_process

        ids = ({"id": np.arange(i, min(i + batch_size, n))} for i in range(0, n, batch_size))
        run_in_process(GeneratorActor(device=dev, **kwargs), ids, out / DATA_DIR, n, "generate (in process)")
    else:
        init_ray(address, dashboard=dashboard)
        dev = resolve_device(device)  # the cluster's, which may differ from this machine's
        n_actors, cpus, threads = actor_pool(dev, actors, rows=n)
        ds = ray.data.range(n).map_batches(
            GeneratorActor, fn_constructor_kwargs=kwargs | {"device": dev, "threads": threads},
            batch_size=batch_size, batch_format="numpy", num_cpus=cpus, num_gpus=1 if dev == "cuda" else 0,
            compute=model_actors(n_actors))
        ds.write_parquet(str(out / DATA_DIR))
    write_manifest(out, manifest)
    return manifest
