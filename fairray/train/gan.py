"""Ray Train DDP GAN training with fairgen importance reweighting.

Every rank holds its shard of the training rows (biased + reference) in memory. D's loss on real images is
multiplied by w^alpha (per-batch self-normalised) or real batches are drawn with probability ~ w^alpha; G's loss
is unchanged. The loop runs on `fairray.train.loop`: tick line, EMA (half-life in kimg with ramp-up), atomic
checkpoints (G, D, EMA, both optimizers, step, RNG, config); re-running with the same (out, name) continues from
the newest complete one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fairray.config import GanConfig
from fairray.data.loading import check_split, load_split
from fairray.errors import FairrayError
from fairray.models.ema import Ema
from fairray.models.generator_io import build_models
from fairray.ray_env import fit_torch
from fairray.stage import RunContext
from fairray.train.checkpoint import start_over_if_inputs_changed
from fairray.train.loop import Means, Phase, Session, TickClock, grid_writer, prepare, to_unit, unwrap

GRID_SEED = 1234
GRID_N = 64
FORMAT = "fairray.gan/1"


def importance(weights: np.ndarray, alpha: float) -> np.ndarray:
    """w^alpha (alpha=0: uniform, the unweighted GAN)."""
    return np.power(np.clip(weights, 0, None), alpha)


def target_alpha(cfg: GanConfig) -> float:
    """The power on w of the distribution this GAN is trained towards (p_data x w^alpha; 0: its data)."""
    return cfg.alpha if cfg.reweight != "none" else 0.0


class GanLoss:
    """DCGAN's non-saturating logistic (bce) or the hinge loss, optionally with lazy R1 and DiffAugment. Phases:
    Dmain (real vs fake, real terms weighted by the importance weights), Dreg (R1 = gamma/2 |grad D(real)|^2,
    every r1_interval steps and scaled by it, as in stylegan2-ada), Gmain (on the fakes Dmain drew this step: G
    has not changed since). With `augment`, D only ever sees augmented images, real and fake alike."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, kind: str, r1_gamma: float = 0.0,
                 r1_interval: int = 1, augment: list[str] | None = None):
        from fairray.train import losses

        self.G, self.D = G, D
        self.d_loss, self.g_loss = ((losses.d_hinge_loss, losses.g_hinge_loss) if kind == "hinge"
                                    else (losses.d_bce_loss, losses.g_bce_loss))
        self.r1_gamma, self.r1_interval, self.augment = r1_gamma, r1_interval, list(augment or [])
        self.fake: torch.Tensor | None = None

    def D_of(self, x: torch.Tensor) -> torch.Tensor:
        from fairray.train.augment import diff_augment

        return self.D(diff_augment(x, self.augment)).float()

    def accumulate_gradients(self, phase: str, batch: dict) -> tuple[torch.Tensor, dict]:
        if phase == "Dmain":
            self.fake = self.G(batch["z"])
            loss = self.d_loss(self.D_of(batch["real"]), self.D_of(self.fake.detach()), batch["real_w"])
            return loss, {"loss_d": loss}
        if phase == "Dreg":
            real = batch["real"].detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.D_of(real).sum(), real, create_graph=True)
            penalty = grad.float().square().sum((1, 2, 3)).mean()
            return penalty * (self.r1_gamma / 2 * self.r1_interval), {"r1_penalty": penalty}
        if phase == "Gmain":
            loss = self.g_loss(self.D_of(self.fake))
            return loss, {"loss_g": loss}
        raise ValueError(f"GanLoss has no phase {phase!r}")


def real_batch(cfg: GanConfig, images: np.ndarray, w_t: torch.Tensor, gen: torch.Generator,
               device: torch.device) -> dict:
    """Real images (drawn uniformly, or ~ w^alpha with reweight=sample), their loss weights and fresh latents."""
    if cfg.reweight == "sample":
        idx = torch.multinomial(w_t, cfg.batch_size, replacement=True, generator=gen)
    else:
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
    real_w = (w_t[idx] / w_t[idx].mean()).to(device) if cfg.reweight == "weight" else None
    z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen).to(device)
    return {"real": to_unit(torch.from_numpy(images[idx.numpy()]), device, signed=True), "real_w": real_w, "z": z}


def d_adam(cfg: GanConfig, params) -> torch.optim.Adam:
    """D's Adam; with lazy R1 its lr and betas are rescaled so D's effective step matches a regularised-every-step
    D (stylegan2-ada: mb_ratio = interval / (interval + 1))."""
    ratio = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1() > 0 else 1.0
    return torch.optim.Adam(params, lr=cfg.lr_d * ratio, betas=(cfg.betas[0] ** ratio, cfg.betas[1] ** ratio))


def train(cfg: GanConfig, images: np.ndarray, weights: np.ndarray, s: Session,
          on_tick: Callable[[TickClock, Ema], None] | None = None) -> Ema:
    """Train G and D on one rank's rows (uint8 NHWC) and density-ratio weights; returns the EMA generator.
    Inside Ray Train (Session.ray) every tick reports and snapshots; in-process (Session.local) it only prints,
    and `on_tick(clock, G_ema)` lets a caller keep what it wants (experiments/gan_recipes.py keeps 40/80/160
    kimg)."""
    w = importance(weights.astype(np.float64), cfg.alpha if cfg.reweight != "none" else 0.0)
    w_t = torch.from_numpy(w / w.mean()).float()

    # Networks: channels_last runs these convs 15-25% faster on the 2-core CPU box (DCGAN 32 px, one thread) and
    # is the layout bf16 convs want on GPU; real batches are NHWC already, so their permute costs no copy
    G, D = build_models(cfg)
    G.to(s.device, memory_format=torch.channels_last)
    D.to(s.device, memory_format=torch.channels_last)
    G_ema = Ema(G, cfg.ema_kimg, cfg.ema_rampup)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = d_adam(cfg, D.parameters())
    stateful = {"G": G, "D": D, "G_ema": G_ema, "opt_g": opt_g, "opt_d": opt_d}
    resumed = s.resume(stateful)
    if s.in_ray:
        G, D = prepare(G), prepare(D, twice_per_step=True)

    # Phases: D every step, R1 every r1_interval steps, G every d_steps; the EMA follows each G step
    clock = TickClock(cfg.kimg * 1000, cfg.tick_kimg * 1000, resumed["nimg"] if resumed else 0)
    step_img = cfg.batch_size * s.world
    phases = [Phase("Dmain", opt_d)]
    if cfg.r1() > 0:
        phases.append(Phase("Dreg", opt_d, cfg.r1_interval))
    phases.append(Phase("Gmain", opt_g, cfg.d_steps, after=lambda: G_ema.update(unwrap(G), clock.nimg, step_img)))
    loss = GanLoss(G, D, cfg.loss, cfg.r1(), cfg.r1_interval, cfg.augment)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + s.rank * 31 + s.step)
    grid_z = torch.randn(GRID_N, cfg.z_dim, generator=torch.Generator().manual_seed(GRID_SEED)).to(s.device)
    means = Means()

    # Train
    while not clock.done:
        s.run_phases(loss, phases, real_batch(cfg, images, w_t, gen, s.device), means)
        ticked = clock.advance(step_img)
        if s.in_ray:
            maybe_fault(cfg, s, clock.nimg)
        if ticked:
            m = means.pop()
            line = f"loss D {m.get('loss_d', float('nan')):<6.3f} G {m.get('loss_g', float('nan')):<6.3f}" + (
                f" R1 {m['r1_penalty']:<7.3f}" if "r1_penalty" in m else "")
            s.end_tick(clock, m, line, lambda: s.state(stateful, clock.nimg, config=cfg.model_dump(mode="json"),
                                                       format=FORMAT),
                       snapshot=clock.tick % cfg.snapshot_ticks == 0 or clock.done,
                       files=grid_writer(G_ema, grid_z, f"EMA G at {clock.nimg / 1000:.0f} kimg"))
            if on_tick is not None:
                on_tick(clock, G_ema)
    return G_ema


def train_loop(config: dict) -> None:
    """Ray Train worker: one rank of the job, its shard of the rows and their importance weights."""
    cfg = GanConfig.model_validate(config["cfg"])
    s = Session.ray(config, cfg.ray.precision, "gan")
    torch.manual_seed(cfg.seed * 100 + s.rank)
    images, df = load_split(Path(config["dataset"]), "train", ["weight"], s.rank, s.world, cfg.resolution)
    s.count_dropped(df.attrs.get("bad_rows", 0))
    train(cfg, images, df.weight.to_numpy(np.float64), s)


def train_local(cfg: GanConfig, images: np.ndarray, weights: np.ndarray | None = None, device: str = "cpu",
                on_tick: Callable[[TickClock, Ema], None] | None = None, quiet: bool = False) -> Ema:
    """The same training in this process, without Ray (world 1): for experiments and benchmarks. Seeded like
    rank 0 of a Ray Train job, so a one-worker job and this give the same generator."""
    torch.manual_seed(cfg.seed * 100)
    s = Session.local(torch.device(device), cfg.ray.precision, "gan", quiet=quiet)
    return train(cfg, images, np.ones(len(images)) if weights is None else weights, s, on_tick)


def maybe_fault(cfg: GanConfig, s: Session, nimg: int) -> None:
    """Chaos hook: the last rank dies (a hard process exit, no cleanup) once, at fault_at_kimg."""
    if cfg.fault_at_kimg is None or s.rank != s.world - 1 or nimg < cfg.fault_at_kimg * 1000:
        return
    marker = Path(s.run_dir or ".") / "fault_injected"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(nimg))
        os._exit(1)


# ---------------------------------------------------------------------------------------------------------------
# Driver


# a re-run may extend or re-score these and continue its run; any other difference is another experiment
SCHEDULE_KEYS = {"kimg", "tick_kimg", "snapshot_ticks", "keep", "eval_attributes", "eval_labeler", "eval_n",
                 "fault_at_kimg", "tracking", "ray", "dataset"}


def fit(cfg: GanConfig, dataset: Path, out: Path, tracking: dict | None = None) -> Path:
    """Run (or continue) the Ray Train job named cfg.name under <out>/ray_results; returns the last checkpoint."""
    check_split(Path(dataset), "train", [])  # an empty or missing split is one line here, not a worker traceback
    storage = (Path(out) / "ray_results").resolve()
    start_over_if_inputs_changed(storage / cfg.name, cfg.model_dump(mode="json", exclude=SCHEDULE_KEYS), [dataset])
    return fit_torch(train_loop, {"cfg": cfg.model_dump(mode="json"), "dataset": str(Path(dataset).resolve()),
                                  "run_dir": str(storage / cfg.name), "tracking": tracking},
                     cfg.ray, cfg.name, storage, keep=cfg.keep, what="GAN training")


def run(cfg: GanConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Driver: MLflow run (reused on re-run) -> Ray Train fit (resumes) -> samples, grid and, with
    cfg.eval_labeler, fairness and quality of cfg.eval_n samples."""
    from fairray.data.reference import heldout_rows, reference_images
    from fairray.labelers.registry import load_labeler
    from fairray.metrics.generated import evaluate_samples
    from fairray.models.generator_io import history, load_generator, sample
    from fairray.report import fig_png, grid_figure

    ctx, out = ctx or RunContext(), Path(out)
    if cfg.dataset is None:
        raise FairrayError("set dataset=DIR (e.g. the output of `fairray synth` or `fairray debias ratio`)")
    if not Path(cfg.dataset).exists():
        raise FairrayError(f"dataset={cfg.dataset}: no such directory")
    if cfg.eval_labeler:  # a bad labeler or attribute fails now, not after the training
        heads = {h.name for h in load_labeler(cfg.eval_labeler).heads}
        if missing := [a for a in cfg.eval_attributes if a not in heads]:
            raise FairrayError(f"eval_attributes {missing}: the labeler has no such head; heads: {sorted(heads)}")
    with ctx.resumable_run(out, cfg, "train-gan", ctx.name or cfg.name, cfg.model_dump(mode="json")) as mlrun:
        tracking = mlrun.worker_spec(out)
        ckpt = fit(cfg, Path(cfg.dataset), out, tracking)
        G, _ = load_generator(ckpt)
        images, _ = sample(G, cfg.eval_n, cfg.z_dim, seed=cfg.seed + 1)
        fig_png(grid_figure(images[:64], 8, f"{cfg.name}: EMA generator"), out / f"{cfg.name}_grid.png")
        mlrun.log_artifact(out / f"{cfg.name}_grid.png", "grids")
        past = history(ckpt)
        metrics = {"kimg": past[-1]["kimg"] if past else 0.0, "bad_rows": past[-1].get("bad_rows", 0) if past else 0}
        if cfg.eval_labeler:
            ref = reference_images(Path(cfg.dataset), cfg.resolution, cfg.eval_n)
            held, held_w = heldout_rows(Path(cfg.dataset), cfg.resolution, cfg.eval_n, target_alpha(cfg))
            metrics |= evaluate_samples(images, load_labeler(cfg.eval_labeler), cfg.eval_attributes, reference=ref,
                                        heldout=held, heldout_weights=held_w)
        mlrun.log_metrics(metrics)
        (out / f"{cfg.name}_metrics.json").write_text(json.dumps(metrics | {"checkpoint": str(ckpt)}, indent=2))
    return metrics | {"checkpoint": str(ckpt)}
