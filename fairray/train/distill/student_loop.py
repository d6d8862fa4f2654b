"""Ray Train DDP loop of the fair student (fair-distill / TinyGAN, on `fairray.train.loop`).

L_G = lambda_pix (1 - k) L1(S(z), T(z)) + lambda_adv hinge(D(S(z'))) + lambda_feat sum_j L1(D_j(S(z)), D_j(T(z)))
      + lambda_fair L_fair(S(z')),
with z the latents of the selected (balanced) pairs and z' ~ N(0, I) fresh ones: the student is sampled with fresh
latents, so the terms that shape its distribution (adversarial against the balanced teacher images, fairness) see
fresh latents, and the paired terms distil the teacher's mapping. D is trained (hinge) with the selected teacher
images as real and S(z') as fake; k rises from 0 to k_max on a schedule, so the pixel term fades.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fairray.config import DistillConfig, GanConfig
from fairray.errors import FairrayError
from fairray.labelers.registry import absolute_spec
from fairray.models.ema import Ema
from fairray.models.generator_io import build_models, ema_weights
from fairray.ray_env import fit_torch
from fairray.train.checkpoint import load_state
from fairray.train.distill.fairness_loss import FairnessLoss, fairness_loss, k_at, ramp_at
from fairray.train.distill.pairs import load_pairs
from fairray.train.loop import Means, Phase, Session, TickClock, grid_writer, prepare, to_unit, unwrap

FORMAT = "fairray.student/1"
GRID_SEED, GRID_N = 1234, 64


class DistillLoss:
    """Dmain: teacher images (real) vs S(z') (fake), hinge. Gmain: the weighted sum above on this step's samples."""

    def __init__(self, S: nn.Module, FD: nn.Module, cfg: DistillConfig, fair: FairnessLoss | None):
        self.S, self.FD, self.cfg, self.fair = S, FD, cfg, fair
        self.fake = self.free = None

    def accumulate_gradients(self, phase: str, batch: dict) -> tuple[torch.Tensor, dict]:
        from fairray.models.student import feature_l1
        from fairray.train.losses import d_hinge_loss, g_hinge_loss

        real, B, cfg = batch["real"], batch["real"].shape[0], self.cfg
        if phase == "Dmain":
            self.fake, self.free = self.S(batch["z"]), self.S(batch["z_free"])
            logits, _ = self.FD(torch.cat([real, self.free.detach()]))
            loss = d_hinge_loss(logits[:B].float(), logits[B:].float())
            return loss, {"loss_d": loss}
        if phase != "Gmain":
            raise ValueError(f"DistillLoss has no phase {phase!r}")
        with torch.no_grad():
            _, real_feats = self.FD(real)
        _, fake_feats = self.FD(self.fake)
        free_logits, _ = self.FD(self.free)
        parts = {"pix": F.l1_loss(self.fake.float(), real), "adv": g_hinge_loss(free_logits.float()),
                 "feat": feature_l1([f.float() for f in fake_feats], [f.float() for f in real_feats])}
        with torch.autocast(real.device.type, enabled=False):  # the frozen classifier's softmax stays in fp32
            parts["fair"] = self.fair(self.free.float()) if self.fair is not None else torch.zeros((), device=real.device)
        ramp = batch["ramp"]  # the distribution-shaping terms start once the student draws the teacher's faces
        loss = (cfg.lambda_pix * (1 - batch["k"]) * parts["pix"] + ramp * cfg.lambda_adv * parts["adv"]
                + cfg.lambda_feat * parts["feat"] + ramp * cfg.lambda_fair * parts["fair"])
        return loss, {"loss_g": loss, **{f"loss_{n}": v for n, v in parts.items()}}


def build(config: dict, cfg: DistillConfig) -> tuple[nn.Module, nn.Module, GanConfig]:
    """The student, D with per-block features (from the teacher's D when d_init=teacher), the teacher's config."""
    from fairray.models.student import FeatureDiscriminator, build_student, thin_from

    teacher = load_state(Path(config["teacher"]))
    tcfg = GanConfig.model_validate(teacher["config"])
    T, D = build_models(tcfg)
    if cfg.d_init == "teacher":  # D starts knowing faces: its features are meaningful targets from step 0
        D.load_state_dict(teacher["D"])
    S = build_student(cfg.student_arch, tcfg, config["width"])
    if cfg.student_arch == "thinned":
        T.load_state_dict(ema_weights(teacher))
        thin_from(S, T)
    return S, FeatureDiscriminator(D), tcfg


def train_loop(config: dict) -> None:
    from fairray.labelers.registry import load_labeler

    # Initialize: this rank's selected pairs, the networks, the frozen fairness classifier
    cfg = DistillConfig.model_validate(config["cfg"])
    s = Session.ray(config, cfg.ray.precision, "distill")
    torch.manual_seed(cfg.seed * 100 + s.rank)
    S, FD, tcfg = build(config, cfg)
    z_all, images, w = load_pairs(Path(config["pairs"]), Path(config["selection"]), s.rank, s.world, tcfg.resolution)
    z_all, w_t = torch.from_numpy(z_all), torch.from_numpy(w / w.mean()).float()
    S.to(s.device, memory_format=torch.channels_last)  # as in GAN training
    FD.to(s.device, memory_format=torch.channels_last)
    S_ema = Ema(S, cfg.ema_kimg, cfg.ema_rampup)
    opt_s = torch.optim.Adam(S.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(FD.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    fair = None
    if cfg.lambda_fair > 0:
        fair = fairness_loss(load_labeler(config["labeler"], s.device.type), cfg.fair_by or cfg.balance_by,
                             cfg.fair_target, cfg.fair_loss, s.device)
    stateful = {"G": S, "D": FD, "G_ema": S_ema, "opt_g": opt_s, "opt_d": opt_d}
    resumed = s.resume(stateful)
    S, FD = prepare(S), prepare(FD, twice_per_step=True)

    # Phases
    B, step_img = cfg.batch_size, cfg.batch_size * s.world
    clock = TickClock(cfg.kimg * 1000, cfg.tick_kimg * 1000, resumed["nimg"] if resumed else 0)
    phases = [Phase("Dmain", opt_d), Phase("Gmain", opt_s, after=lambda: S_ema.update(unwrap(S), clock.nimg, step_img))]
    loss = DistillLoss(S, FD, cfg, fair)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + s.rank * 31 + s.step)
    grid_z = torch.randn(GRID_N, tcfg.z_dim, generator=torch.Generator().manual_seed(GRID_SEED)).to(s.device)
    extra = {"config": cfg.model_dump(mode="json"), "teacher": config["teacher"], "width": config["width"],
             "teacher_config": tcfg.model_dump(mode="json"), "format": FORMAT}
    means = Means()

    # Train: paired latents carry the distillation terms (S(z) ~ T(z)); fresh latents carry the adversarial and
    # fairness terms, because the student is judged on S(z) for z ~ N(0, I), not on the balanced pairs it was shown
    while not clock.done:
        idx = torch.multinomial(w_t, B, replacement=True, generator=gen)
        k = k_at(clock.progress, cfg.k_schedule, cfg.k_max)
        batch = {"z": z_all[idx].to(s.device), "real": to_unit(torch.from_numpy(images[idx.numpy()]), s.device, True),
                 "z_free": torch.randn(B, z_all.shape[1], generator=gen).to(s.device), "k": k,
                 "ramp": ramp_at(clock.progress, cfg.warmup)}
        s.run_phases(loss, phases, batch, means)
        if clock.advance(step_img):
            m = {"k": k, **means.pop()}
            line = (f"k {k:.2f} loss D {m['loss_d']:<6.3f} pix {m['loss_pix']:.3f} feat {m['loss_feat']:.3f} "
                    f"adv {m['loss_adv']:<6.3f} fair {m['loss_fair']:.4f}")
            s.end_tick(clock, m, line, lambda: s.state(stateful, clock.nimg, **extra),
                       snapshot=clock.tick % cfg.snapshot_ticks == 0 or clock.done,
                       files=grid_writer(S_ema, grid_z, f"EMA student at {clock.nimg / 1000:.0f} kimg"))


def fit(cfg: DistillConfig, pairs: Path, selection: Path, out: Path, width: int,
        tracking: dict | None = None) -> Path:
    """Run (or continue) the Ray Train job cfg.name under <out>/ray_results; returns the last checkpoint dir."""
    storage = (Path(out) / "ray_results").resolve()
    return fit_torch(train_loop, {"cfg": cfg.model_dump(mode="json"), "teacher": str(Path(cfg.teacher).resolve()),
                                  "labeler": absolute_spec(cfg.labeler), "pairs": str(Path(pairs).resolve()),
                                  "selection": str(Path(selection).resolve()), "width": width,
                                  "run_dir": str(storage / cfg.name), "tracking": tracking},
                     cfg.ray, cfg.name, storage, keep=cfg.keep, what="distillation")


def load_student(checkpoint: Path, ema: bool = True) -> tuple[nn.Module, dict]:
    """The student (EMA weights by default) and its checkpoint's metadata from a complete checkpoint directory."""
    from fairray.models.student import build_student

    state = load_state(Path(checkpoint))
    if state is None or state.get("format") != FORMAT:
        raise FairrayError(f"{checkpoint} is not a complete fairray student checkpoint")
    tcfg = GanConfig.model_validate(state["teacher_config"])
    S = build_student(state["config"].get("student_arch", "separable"), tcfg, state["width"])
    S.load_state_dict(ema_weights(state) if ema else state["G"])
    return S.eval(), {k: state[k] for k in ("config", "teacher", "teacher_config", "width", "history", "nimg")}
