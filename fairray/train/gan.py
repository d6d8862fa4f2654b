"""Ray Train DDP GAN training with fairgen importance reweighting.

Every rank holds its shard of the training rows (biased + reference) in memory. D's loss on real images is
multiplied by w^alpha (per-batch self-normalised) or real batches are drawn with probability ~ w^alpha; G's loss
is unchanged. Rank 0 prints a StyleGAN-style tick line and writes atomic checkpoints (G, D, EMA, both
optimizers, step, RNG, config); re-running with the same (out, name) continues from the newest complete one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fairray.config import GanConfig
from fairray.data.loading import load_split
from fairray.errors import FairrayError
from fairray.ray_env import (
    autocast_kwargs,
    fit_torch,
    train_worker,
)
from fairray.train.checkpoint import load_state, newest_complete, rng_state, save_state, set_rng_state

GRID_SEED = 1234
GRID_N = 64


def build_models(cfg: GanConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    from fairray.models.gan_factory import build_gan, gan_config

    width = {"dcgan": "width", "biggan": "ch"}[cfg.model]  # each model names its base width its own way
    return build_gan(gan_config(cfg.model, resolution=cfg.resolution, z_dim=cfg.z_dim, **{width: cfg.width}))


def importance(weights: np.ndarray, alpha: float) -> np.ndarray:
    """w^alpha (alpha=0: uniform, the unweighted GAN)."""
    return np.power(np.clip(weights, 0, None), alpha)


def losses(cfg: GanConfig):
    from fairray.train import losses as L

    return (L.d_hinge_loss, L.g_hinge_loss) if cfg.loss == "hinge" else (L.d_bce_loss, L.g_bce_loss)


def to_images(x: torch.Tensor) -> np.ndarray:
    """G output in [-1, 1], NCHW -> uint8 NHWC."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _all_finite(t: torch.Tensor) -> bool:
    """Every rank agrees to skip a step, or none does (a rank skipping alone would hang DDP's allreduce)."""
    ok = torch.tensor([float(torch.isfinite(t).all())], device=t.device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item() > 0)


def _peak_mem_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def train_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from fairray.models.ema import ema_model

    cfg = GanConfig.model_validate(config["cfg"])
    rank, world, device = train_worker(config)
    torch.manual_seed(cfg.seed * 100 + rank)
    images, df = load_split(Path(config["dataset"]), "train", ["weight"], rank, world, cfg.resolution)
    w = importance(df.weight.to_numpy(np.float64), cfg.alpha if cfg.reweight != "none" else 0.0)
    w_t = torch.from_numpy(w / w.mean()).float()
    G, D = build_models(cfg)
    # channels_last: 15-25% more img/s for these convs on the 2-core CPU box (DCGAN 32 px, one thread, measured by
    # hand), and the layout bf16 convs want on GPU; real batches are NHWC already, so their permute costs no copy
    G.to(device, memory_format=torch.channels_last)
    D.to(device, memory_format=torch.channels_last)
    G_ema = ema_model(G, cfg.ema_decay)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    step, nimg, nan_skips, history, resumes = restore(_resume_state(config), G, D, G_ema, opt_g, opt_d, rank)
    # D is run twice per step (real, fake): its BatchNorm buffers must not be re-broadcast between calls.
    G = ray.train.torch.prepare_model(G, move_to_device=False)
    D = ray.train.torch.prepare_model(D, move_to_device=False, parallel_strategy_kwargs={"broadcast_buffers": False})
    d_loss_fn, g_loss_fn = losses(cfg)
    mlflow_run = _rank0_run(config) if rank == 0 else None
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank * 31 + step)
    grid_z = torch.randn(GRID_N, cfg.z_dim, generator=torch.Generator().manual_seed(GRID_SEED)).to(device)
    total = int(cfg.kimg * 1000)
    tick_img = int(cfg.tick_kimg * 1000)
    next_tick = (nimg // tick_img + 1) * tick_img
    tick = nimg // tick_img
    t_tick, tick_start_img = time.perf_counter(), nimg
    amp = autocast_kwargs(device, cfg.ray.precision)
    while nimg < total:
        if cfg.reweight == "sample":
            idx = torch.multinomial(w_t, cfg.batch_size, replacement=True, generator=gen)
        else:
            idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        real = torch.from_numpy(images[idx.numpy()]).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
        real_w = (w_t[idx] / w_t[idx].mean()).to(device) if cfg.reweight == "weight" else None
        z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen).to(device)
        with torch.autocast(**amp):
            fake = G(z)
            d_loss = d_loss_fn(D(real).float(), D(fake.detach()).float(), real_w)
        if not _all_finite(d_loss):
            nan_skips += 1
            nimg += cfg.batch_size * world
            continue
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if step % cfg.d_steps == 0:
            with torch.autocast(**amp):
                g_loss = g_loss_fn(D(fake).float())
            if _all_finite(g_loss):
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                G_ema.update_parameters(G.module if hasattr(G, "module") else G)
            else:
                nan_skips += 1
        step += 1
        nimg += cfg.batch_size * world
        _maybe_fault(cfg, config, rank, world, nimg)
        if nimg >= next_tick or nimg >= total:
            tick += 1
            next_tick += tick_img
            dt = time.perf_counter() - t_tick
            kimg_done = (nimg - tick_start_img) / 1000
            metrics = {"kimg": nimg / 1000, "step": step, "loss_d": d_loss.item(), "loss_g": g_loss.item(),
                       "sec_per_kimg": dt / max(kimg_done, 1e-9), "img_per_s": kimg_done * 1000 / max(dt, 1e-9),
                       "peak_mem_gb": _peak_mem_gb(device), "nan_skips": nan_skips}
            history.append(metrics)
            if mlflow_run is not None:
                mlflow_run.log_metrics(metrics, step=nimg)
                mlflow_run.flush()
            if rank == 0:
                print(f"tick {tick:<4d} kimg {nimg / 1000:<8.1f} sec/kimg {metrics['sec_per_kimg']:<6.2f} "
                      f"img/s {metrics['img_per_s']:<7.0f} loss D {metrics['loss_d']:<6.3f} G "
                      f"{metrics['loss_g']:<6.3f} mem {metrics['peak_mem_gb']:.2f} GB  nan-skips {nan_skips}",
                      flush=True)
            snapshot = tick % cfg.snapshot_ticks == 0 or nimg >= total
            _report(metrics, snapshot, rank, world, {
                "G": _unwrap(G).state_dict(), "D": _unwrap(D).state_dict(), "G_ema": G_ema.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step, "nimg": nimg,
                "nan_skips": nan_skips, "rng": _gather_rng(world), "config": cfg.model_dump(mode="json"),
                "history": history, "resumes": resumes}, G_ema, grid_z)
            t_tick, tick_start_img = time.perf_counter(), nimg


def restore(resume: dict | None, G, D, G_ema, opt_g, opt_d, rank: int) -> tuple[int, int, int, list, list]:
    """Load a resumed state into the models and optimizers; (step, nimg, nan_skips, history, resumes)."""
    if resume is None:
        return 0, 0, 0, [], []
    for module, key in ((G, "G"), (D, "D"), (G_ema, "G_ema"), (opt_g, "opt_g"), (opt_d, "opt_d")):
        module.load_state_dict(resume[key])
    set_rng_state(resume["rng"][rank] if rank < len(resume["rng"]) else resume["rng"][0])
    nimg = resume["nimg"]
    if rank == 0:
        print(f"resumed from step {resume['step']} ({nimg / 1000:.1f} kimg)", flush=True)
    return resume["step"], nimg, resume["nan_skips"], resume.get("history", []), resume.get("resumes", []) + [nimg]


def _maybe_fault(cfg: GanConfig, config: dict, rank: int, world: int, nimg: int) -> None:
    """Chaos hook: the last rank dies (a hard process exit, no cleanup) once, at fault_at_kimg."""
    if cfg.fault_at_kimg is None or rank != world - 1 or nimg < cfg.fault_at_kimg * 1000:
        return
    marker = Path(config["run_dir"]) / "fault_injected"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(nimg))
        import os

        os._exit(1)


def _rank0_run(config: dict):
    """Rank 0 writes tick metrics into the MLflow run the driver opened (never fatal)."""
    t = config.get("tracking")
    if not t or not t.get("run_id"):
        return None
    from fairray.tracking import Tracker

    return Tracker(Path(t["out"]), t["experiment"], t["uri"]).attach(t["run_id"])


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if hasattr(m, "module") else m


def _gather_rng(world: int) -> list:
    """RNG state of every rank (rank 0 saves them all so each rank resumes its own stream)."""
    state = rng_state()
    if world > 1 and torch.distributed.is_initialized():
        out: list = [None] * world
        torch.distributed.all_gather_object(out, state)
        return out
    return [state]


def _resume_state(config: dict) -> dict | None:
    """The newest complete checkpoint of this run. Ray's own latest can lag one snapshot behind when a worker
    dies while the controller is still registering it, so the run directory is scanned first."""
    import ray.train

    newest = newest_complete(Path(config["run_dir"]))
    if newest is not None:
        return load_state(newest)
    ckpt = ray.train.get_checkpoint()  # remote storage (S3/NFS paths Ray knows, not this filesystem)
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return load_state(Path(d))


def _report(metrics: dict, snapshot: bool, rank: int, world: int, state: dict, G_ema, grid_z) -> None:
    import ray.train

    if not snapshot:
        ray.train.report(metrics)
        return
    if rank == 0:
        from fairray.report import fig_png, grid_figure

        with tempfile.TemporaryDirectory() as d:
            save_state(state, Path(d))
            with torch.no_grad():
                G_ema.train()  # batch statistics, like sample()
                grid = to_images(G_ema.module(grid_z))
            fig_png(grid_figure(grid, 8, f"EMA G at {metrics['kimg']:.0f} kimg"), Path(d) / "grid.png")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def fit(cfg: GanConfig, dataset: Path, out: Path, tracking: dict | None = None) -> Path:
    """Run (or continue) the Ray Train job named cfg.name under <out>/ray_results; returns the last checkpoint."""
    storage = (Path(out) / "ray_results").resolve()
    return fit_torch(train_loop, {"cfg": cfg.model_dump(mode="json"), "dataset": str(Path(dataset).resolve()),
                                  "run_dir": str(storage / cfg.name), "tracking": tracking},
                     cfg.ray, cfg.name, storage, keep=cfg.keep, what="GAN training")


def load_generator(checkpoint: Path, ema: bool = True) -> tuple[torch.nn.Module, GanConfig]:
    """G (EMA weights by default) and its config from a complete checkpoint directory."""
    state = load_state(Path(checkpoint))
    if state is None:
        raise FairrayError(f"{checkpoint} is not a complete fairray GAN checkpoint")
    cfg = GanConfig.model_validate(state["config"])
    G, _ = build_models(cfg)
    if ema:
        G.load_state_dict({k.removeprefix("module."): v for k, v in state["G_ema"].items()
                           if k.startswith("module.")})
    else:
        G.load_state_dict(state["G"])
    return G.eval(), cfg


def history(checkpoint: Path) -> list[dict]:
    state = load_state(Path(checkpoint))
    return state.get("history", []) if state else []


def run(cfg: GanConfig, out: Path, labeler: str | None = None, eval_n: int = 2000) -> dict:
    """Driver: MLflow run (reused on re-run) -> Ray Train fit (resumes) -> samples, grid and metrics."""
    from fairray.labelers.registry import load_labeler
    from fairray.metrics.generated import evaluate_samples, sample
    from fairray.report import fig_png, grid_figure
    from fairray.tracking import Tracker

    out = Path(out)
    if cfg.dataset is None:
        raise FairrayError("set dataset=DIR (e.g. the output of `fairray synth` or `fairray debias ratio`)")
    tracker = Tracker(out, cfg.tracking.experiment, cfg.tracking.uri, cfg.tracking.enabled)
    existing = tracker.find_run("fairray.run_name", cfg.name)
    with tracker.run(cfg.name, tags={"fairray.command": "train-gan", "fairray.run_name": cfg.name},
                     run_id=existing) as mlrun:
        if existing is None:
            mlrun.log_params(cfg.model_dump(mode="json"))
        tracking = {"out": str(out.resolve()), "experiment": cfg.tracking.experiment, "uri": tracker.uri,
                    "run_id": mlrun.run_id}
        ckpt = fit(cfg, Path(cfg.dataset), out, tracking)
        G, _ = load_generator(ckpt)
        images, _ = sample(G, eval_n, cfg.z_dim, seed=cfg.seed + 1)
        fig_png(grid_figure(images[:64], 8, f"{cfg.name}: EMA generator"), out / f"{cfg.name}_grid.png")
        mlrun.log_artifact(out / f"{cfg.name}_grid.png", "grids")
        metrics = {"kimg": history(ckpt)[-1]["kimg"] if history(ckpt) else 0.0}
        if labeler:
            ref = reference_images(Path(cfg.dataset), cfg.resolution, eval_n)
            metrics |= evaluate_samples(images, load_labeler(labeler), cfg.eval_attributes, reference=ref)
        mlrun.log_metrics(metrics)
    return metrics | {"checkpoint": str(ckpt)}


def reference_images(dataset: Path, size: int, n: int) -> np.ndarray | None:
    """Up to n balanced reference (or else any train) images: the target distribution for fd_attrclf."""
    try:
        images, _ = load_split(dataset, "train", [], size=size, subset="reference")
    except FairrayError:
        images, _ = load_split(dataset, "train", [], size=size)
    return images[:n]
