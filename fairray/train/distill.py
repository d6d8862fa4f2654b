"""Fair distillation of a GAN into a small student (fair-distill / TinyGAN, done with Ray and a working fairness term).

Pipeline (`run`):
1. pairs: the teacher's EMA generator draws M (z, image) pairs through Ray Data actors (`fairray.generate`), and a
   labeler actor pool labels them (`fairray.data.pipeline.label`);
2. balanced sampler: over one attribute or an intersection of the predicted labels, every pair gets a sampling
   weight 1/(K share(cell)) (or cells are undersampled to the smallest), so the student sees balanced teacher images;
3. student: Ray Train DDP on the selected pairs with
   L = lambda_pix (1 - k) L1(S(z), T(z)) + lambda_adv hinge(D(S(z'))) + lambda_feat sum_j w_j L1(D_j(S(z)), D_j(T(z)))
       + lambda_fair L_fair(S(z')),
   with z the latents of the selected (balanced) pairs and z' ~ N(0, I) fresh ones: the student is sampled with fresh
   latents, so the terms that shape its distribution (adversarial against the balanced teacher images, fairness) see
   fresh latents, and the paired terms distil the teacher's mapping. D is trained (hinge) with the selected teacher
   images as real and S(z') as fake; k rises from 0 to k_max on a schedule, so the pixel term fades. L_fair is differentiable: the frozen attrclf (eval mode, no parameter gradients) scores the
   student's images in [0, 1], its temperature-scaled softmax is averaged over the batch (per-sample outer products
   for an intersection), and the KL(target || batch mean) (or squared L2) is back-propagated through the classifier
   into the student. fair-distill's Shannon-diversity term went through argmax and a PIL round-trip, so it passed no
   gradient at all;
4. evaluation on shared latents: per-attribute and intersectional shares of teacher and student, fairness
   discrepancy, fd_attrclf (against the balanced reference rows, and student vs teacher), parameter counts, img/s,
   side-by-side sample grids; PNGs in <out> and MLflow artifacts.

Rank 0 prints the tick line and writes atomic checkpoints (student, D, EMA, both optimizers, step, RNG); re-running
with the same (out, name) resumes from the newest complete one, exactly like `fairray.train.gan`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fairray.config import DistillConfig, GanConfig, LabelConfig
from fairray.data.table import decode_images, read_table
from fairray.errors import FairrayError
from fairray.labelers.registry import absolute_spec
from fairray.ray_env import (
    autocast_kwargs,
    fit_torch,
    init_ray,
    train_worker,
)
from fairray.train.checkpoint import load_state

SELECTION = "selection.parquet"


# ---------------------------------------------------------------------------------------------------------------
# The differentiable fairness term


class FairnessLoss(nn.Module):
    """KL(target || p_bar) or ||p_bar - target||^2, p_bar = the batch mean of a frozen classifier's soft prediction.

    For several heads the per-sample prediction over the intersection is the outer product of the heads' softmaxes
    (row-major cells, last head fastest). The classifier stays in eval mode (running BatchNorm statistics, so a
    sample's prediction does not depend on its batch) and has no parameter gradients; gradients reach the input."""

    def __init__(self, classifier: nn.Module, heads: list[str], target: torch.Tensor, resolution: int,
                 temperature: dict[str, float] | None = None, kind: str = "kl"):
        super().__init__()
        if kind not in ("kl", "l2"):
            raise ValueError(f"fairness loss kind must be kl or l2, got {kind!r}")
        self.classifier = classifier.eval().requires_grad_(False)
        self.heads, self.kind, self.resolution = list(heads), kind, resolution
        self.temperature = {h: float((temperature or {}).get(h, 1.0)) for h in heads}
        self.register_buffer("target", target.float() / target.float().sum())

    def train(self, mode: bool = True) -> FairnessLoss:  # the classifier is frozen: never leave eval mode
        super().train(mode)
        self.classifier.eval()
        return self

    def batch_mean(self, x: torch.Tensor) -> torch.Tensor:
        """x: generator output in [-1, 1], NCHW -> (cells,) mean predicted distribution over the batch."""
        x01 = (x.float() + 1) / 2  # the classifier was trained on [0, 1] images
        if x01.shape[-1] != self.resolution:
            x01 = F.interpolate(x01, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                                align_corners=False)
        logits = self.classifier(x01)
        joint = None
        for h in self.heads:
            p = torch.softmax(logits[h].float() / self.temperature[h], 1)
            joint = p if joint is None else (joint[:, :, None] * p[:, None, :]).flatten(1)
        return joint.mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fairness_divergence(self.batch_mean(x), self.target, self.kind)


def fairness_divergence(p: torch.Tensor, target: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    if kind == "l2":
        return ((p - target) ** 2).sum()
    t = target[target > 0]
    return (t * (t.log() - p[target > 0].clamp_min(1e-8).log())).sum()


def cell_count(labeler, heads: list[str]) -> int:
    by_name = {h.name: h for h in labeler.heads}
    return int(np.prod([len(by_name[h].classes) for h in heads]))


def fairness_loss(labeler, heads: list[str], target: list[float] | None = None, kind: str = "kl",
                  device: str | torch.device = "cpu") -> FairnessLoss:
    """L_fair on an `attrclf` labeler's torch model (other labelers expose no differentiable model)."""
    if not hasattr(labeler, "model") or not hasattr(labeler, "temperature"):
        raise FairrayError(f"L_fair needs an attrclf labeler (a differentiable torch model), got {labeler.name!r}")
    k = cell_count(labeler, heads)
    t = torch.full((k,), 1.0 / k) if target is None else torch.tensor(target, dtype=torch.float32)
    if len(t) != k or (t < 0).any() or t.sum() <= 0:
        raise FairrayError(f"fair_target needs {k} non-negative values (cells of {' x '.join(heads)}), got {target}")
    return FairnessLoss(labeler.model, heads, t, labeler.resolution, labeler.temperature, kind).to(device)


def k_at(progress: float, schedule: str, k_max: float) -> float:
    """k in [0, k_max]: 0 at the start of training, k_max at the end (the pixel term's weight is 1 - k)."""
    p = min(max(progress, 0.0), 1.0)
    s = {"linear": p, "cosine": (1 - math.cos(math.pi * p)) / 2, "step": float(p >= 0.5), "constant": 1.0}[schedule]
    return k_max * s


# ---------------------------------------------------------------------------------------------------------------
# Pairs and the balanced sampler


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
    from fairray.data.pipeline import balance_weights, select_balanced

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
    z = np.stack([np.asarray(v, dtype=np.float32) for v in df.latent])
    return z, decode_images(df.image, size), df.weight.to_numpy(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Ray Train loop


def _models(config: dict, cfg: DistillConfig):
    from fairray.models.student import FeatureDiscriminator, build_student
    from fairray.train.gan import build_models

    teacher = load_state(Path(config["teacher"]))
    tcfg = GanConfig.model_validate(teacher["config"])
    S = build_student(tcfg.resolution, tcfg.z_dim, config["width"])
    _, D = build_models(tcfg)
    if cfg.d_init == "teacher":  # D starts knowing faces: its features are meaningful targets from step 0
        D.load_state_dict(teacher["D"])
    return S, FeatureDiscriminator(D), tcfg


def train_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from fairray.labelers.registry import load_labeler
    from fairray.models.ema import ema_model
    from fairray.models.student import feature_l1
    from fairray.train.gan import _gather_rng, _rank0_run, _report, _resume_state, _unwrap, restore
    from fairray.train.losses import d_hinge_loss, g_hinge_loss

    cfg = DistillConfig.model_validate(config["cfg"])
    rank, world, device = train_worker(config)
    torch.manual_seed(cfg.seed * 100 + rank)
    S, FD, tcfg = _models(config, cfg)
    z_all, images, w = load_pairs(Path(config["pairs"]), Path(config["selection"]), rank, world, tcfg.resolution)
    z_all, w_t = torch.from_numpy(z_all), torch.from_numpy(w / w.mean()).float()
    S.to(device, memory_format=torch.channels_last)  # as in GAN training (fairray.train.gan)
    FD.to(device, memory_format=torch.channels_last)
    S_ema = ema_model(S, cfg.ema_decay)
    opt_s = torch.optim.Adam(S.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(FD.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    fair = None
    if cfg.lambda_fair > 0:
        fair = fairness_loss(load_labeler(config["labeler"], device.type), cfg.fair_by or cfg.balance_by,
                             cfg.fair_target, cfg.fair_loss, device)
    step, nimg, nan_skips, history, resumes = restore(_resume_state(config), S, FD, S_ema, opt_s, opt_d, rank)
    S = ray.train.torch.prepare_model(S, move_to_device=False)
    FD = ray.train.torch.prepare_model(FD, move_to_device=False,
                                       parallel_strategy_kwargs={"broadcast_buffers": False})
    mlflow_run = _rank0_run(config) if rank == 0 else None
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank * 31 + step)
    grid_z = torch.randn(64, tcfg.z_dim, generator=torch.Generator().manual_seed(1234)).to(device)
    total, tick_img = int(cfg.kimg * 1000), int(cfg.tick_kimg * 1000)
    next_tick, tick = (nimg // tick_img + 1) * tick_img, nimg // tick_img
    t_tick, tick_start_img = time.perf_counter(), nimg
    sums: dict[str, float] = {}
    amp = autocast_kwargs(device, cfg.ray.precision)
    B = cfg.batch_size
    while nimg < total:
        idx = torch.multinomial(w_t, B, replacement=True, generator=gen)
        z = z_all[idx].to(device)
        real = torch.from_numpy(images[idx.numpy()]).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
        k = k_at(nimg / total, cfg.k_schedule, cfg.k_max)
        # Paired latents carry the distillation terms (S(z) ~ T(z)); fresh latents carry the adversarial and fairness
        # terms, because the student is judged on S(z) for z ~ N(0, I), not on the balanced pairs it was shown.
        z_free = torch.randn(B, z.shape[1], generator=gen).to(device)
        with torch.autocast(**amp):
            fake, free = S(z), S(z_free)
            logits, _ = FD(torch.cat([real, free.detach()]))
            d_loss = d_hinge_loss(logits[:B].float(), logits[B:].float())
        if _finite(d_loss):
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        else:
            nan_skips += 1
        with torch.autocast(**amp):
            with torch.no_grad():
                _, real_feats = FD(real)
            _, fake_feats = FD(fake)
            free_logits, _ = FD(free)
            parts = {"pix": F.l1_loss(fake.float(), real), "adv": g_hinge_loss(free_logits.float()),
                     "feat": feature_l1([f.float() for f in fake_feats], [f.float() for f in real_feats])}
        parts["fair"] = fair(free) if fair is not None else torch.zeros((), device=device)
        g_loss = (cfg.lambda_pix * (1 - k) * parts["pix"] + cfg.lambda_adv * parts["adv"]
                  + cfg.lambda_feat * parts["feat"] + cfg.lambda_fair * parts["fair"])
        if _finite(g_loss):
            opt_s.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_s.step()
            S_ema.update_parameters(_unwrap(S))
        else:
            nan_skips += 1
        for name, v in {"loss_d": d_loss, "loss_g": g_loss, **{f"loss_{n}": v for n, v in parts.items()}}.items():
            sums[name] = sums.get(name, 0.0) + float(v.detach())
        sums["n"] = sums.get("n", 0.0) + 1
        step += 1
        nimg += B * world
        if nimg >= next_tick or nimg >= total:
            tick += 1
            next_tick += tick_img
            dt = time.perf_counter() - t_tick
            kimg_done = (nimg - tick_start_img) / 1000
            n = sums.pop("n")
            metrics = {"kimg": nimg / 1000, "step": step, "k": k, **{name: v / n for name, v in sums.items()},
                       "sec_per_kimg": dt / max(kimg_done, 1e-9), "img_per_s": kimg_done * 1000 / max(dt, 1e-9),
                       "nan_skips": nan_skips}
            sums = {}
            history.append(metrics)
            if mlflow_run is not None:
                mlflow_run.log_metrics(metrics, step=nimg)
                mlflow_run.flush()
            if rank == 0:
                print(f"tick {tick:<4d} kimg {nimg / 1000:<7.1f} sec/kimg {metrics['sec_per_kimg']:<6.2f} "
                      f"img/s {metrics['img_per_s']:<6.0f} k {k:.2f} loss D {metrics['loss_d']:<6.3f} "
                      f"pix {metrics['loss_pix']:.3f} feat {metrics['loss_feat']:.3f} adv {metrics['loss_adv']:<6.3f} "
                      f"fair {metrics['loss_fair']:.4f}  nan-skips {nan_skips}", flush=True)
            snapshot = tick % cfg.snapshot_ticks == 0 or nimg >= total
            _report(metrics, snapshot, rank, world, {
                "G": _unwrap(S).state_dict(), "D": _unwrap(FD).state_dict(), "G_ema": S_ema.state_dict(),
                "opt_g": opt_s.state_dict(), "opt_d": opt_d.state_dict(), "step": step, "nimg": nimg,
                "nan_skips": nan_skips, "rng": _gather_rng(world), "config": cfg.model_dump(mode="json"),
                "teacher": config["teacher"], "teacher_config": tcfg.model_dump(mode="json"),
                "width": config["width"], "history": history, "resumes": resumes,
                "format": "fairray.student/1"}, S_ema, grid_z)
            t_tick, tick_start_img = time.perf_counter(), nimg


def _finite(t: torch.Tensor) -> bool:
    from fairray.train.gan import _all_finite

    return _all_finite(t.detach())


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
    if state is None or state.get("format") != "fairray.student/1":
        raise FairrayError(f"{checkpoint} is not a complete fairray student checkpoint")
    tcfg = GanConfig.model_validate(state["teacher_config"])
    S = build_student(tcfg.resolution, tcfg.z_dim, state["width"])
    if ema:
        S.load_state_dict({k.removeprefix("module."): v for k, v in state["G_ema"].items()
                           if k.startswith("module.")})
    else:
        S.load_state_dict(state["G"])
    return S.eval(), {k: state[k] for k in ("config", "teacher", "teacher_config", "width", "history", "nimg")}


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: teacher vs student on the same latents


def timed_sample(G: nn.Module, n: int, z_dim: int, seed: int) -> tuple[np.ndarray, float]:
    """Samples and the generator's throughput in img/s (after one warm-up batch)."""
    from fairray.metrics.generated import sample

    sample(G, min(n, 64), z_dim, seed + 1)
    t0 = time.perf_counter()
    images, _ = sample(G, n, z_dim, seed)
    return images, n / (time.perf_counter() - t0)


def hard_label_frame(images: np.ndarray, labeler, heads: list[str], batch: int = 500) -> pd.DataFrame:
    from fairray.labelers.base import hard_labels

    probs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch):
        for h, p in labeler.predict_proba(images[i:i + batch]).items():
            if h in heads:
                probs.setdefault(h, []).append(p)
    return pd.DataFrame(hard_labels({h: np.concatenate(p) for h, p in probs.items()}, labeler.heads))


def share_tables(frames: dict[str, pd.DataFrame], attrs: list[str], intersections: list[list[str]]
                 ) -> dict[str, pd.DataFrame]:
    """{'gender': DataFrame(index=cells, columns=frames)} per attribute and 'a x b' per intersection."""
    from fairray.data.summary import value_counts

    tables = {}
    for keys in [[a] for a in attrs] + intersections:
        cols = {name: (c := value_counts(df, keys)) / max(c.sum(), 1) for name, df in frames.items()}
        tables[" x ".join(keys)] = pd.DataFrame(cols)
    return tables


def side_by_side(teacher: np.ndarray, student: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    from fairray.report import image_grid

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.4))
    for ax, images, name in zip(axes, (teacher, student), ("teacher", "student"), strict=True):
        ax.imshow(image_grid(images, 8), interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def evaluate(T: nn.Module, S: nn.Module, z_dim: int, labeler, cfg: DistillConfig, reference: np.ndarray | None
             ) -> tuple[dict[str, float], dict[str, pd.DataFrame], np.ndarray, np.ndarray]:
    """Teacher and student on the same eval latents: fairness, fd_attrclf, shares, throughput, parameters."""
    from fairray.metrics.generated import count_tag, evaluate_samples
    from fairray.metrics.quality import feature_stats, frechet_distance
    from fairray.models.student import count_params

    n, tag = cfg.eval_n, count_tag(cfg.eval_n)
    t_img, t_rate = timed_sample(T, n, z_dim, cfg.eval_seed)
    s_img, s_rate = timed_sample(S, n, z_dim, cfg.eval_seed)
    mt = evaluate_samples(t_img, labeler, cfg.eval_attributes, reference=reference)
    ms = evaluate_samples(s_img, labeler, cfg.eval_attributes, reference=reference)
    metrics = {k: v for k, v in ms.items()} | {f"teacher_{k}": v for k, v in mt.items()}
    if hasattr(labeler, "features"):
        ft = np.concatenate([labeler.features(t_img[i:i + 500]) for i in range(0, n, 500)])
        fs = np.concatenate([labeler.features(s_img[i:i + 500]) for i in range(0, n, 500)])
        metrics[f"fd_attrclf_to_teacher_{tag}"] = frechet_distance(*feature_stats(fs), *feature_stats(ft))
    metrics |= {"teacher_params": float(count_params(T)), "student_params": float(count_params(S)),
                "param_ratio": count_params(S) / count_params(T), "teacher_img_per_s": t_rate,
                "student_img_per_s": s_rate}
    heads = {h.name for h in labeler.heads}
    attrs = [a for a in dict.fromkeys(cfg.eval_attributes + cfg.report_attributes) if a in heads]
    inter = [i for i in cfg.intersections if all(a in heads for a in i)]
    used = list(dict.fromkeys(attrs + [a for i in inter for a in i]))
    frames = {"teacher": hard_label_frame(t_img, labeler, used), "student": hard_label_frame(s_img, labeler, used)}
    tables = share_tables(frames, attrs, inter)
    for name, table in tables.items():
        key = name.replace(" x ", "_x_")
        for cell, row in table.iterrows():
            code = "_".join(str(v) for v in _cell_codes(cell))
            metrics.setdefault(f"share_{key}_{code}_{tag}", float(row.student))
            metrics.setdefault(f"teacher_share_{key}_{code}_{tag}", float(row.teacher))
    return metrics, tables, t_img, s_img


def _cell_codes(cell: str) -> list[int]:
    """'gender=male & tone4=dark' -> [0, 3] (codes in fairray's vocabulary)."""
    from fairray.data.attributes import attribute_labels, attribute_values

    out = []
    for part in cell.split(" & "):
        a, _, label = part.partition("=")
        out.append(int(attribute_values(a)[list(attribute_labels(a)).index(label)]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Driver


def check(cfg: DistillConfig, labeler) -> None:
    if cfg.teacher is None:
        raise FairrayError("set teacher=CHECKPOINT_DIR (a fairray GAN checkpoint, e.g. ray_results/gan/checkpoint_*)")
    if cfg.labeler is None:
        raise FairrayError("set labeler=attrclf:DIR (labels the pairs and is L_fair's frozen classifier)")
    heads = {h.name for h in labeler.heads}
    for what, attrs in (("balance_by", cfg.balance_by), ("fair_by", cfg.fair_by or []),
                        ("eval_attributes", cfg.eval_attributes)):
        missing = [a for a in attrs if a not in heads]
        if missing:
            raise FairrayError(f"{what}: the labeler has no head(s) {missing}; heads: {sorted(heads)}")


def student_width(cfg: DistillConfig, teacher: nn.Module, tcfg: GanConfig) -> int:
    from fairray.models.student import auto_width, count_params

    if cfg.student_width is not None:
        return cfg.student_width
    return auto_width(tcfg.resolution, tcfg.z_dim, int(count_params(teacher) * cfg.max_param_ratio))


def run(cfg: DistillConfig, out: Path, progress: bool = True) -> dict:
    """Pairs (Ray Data) -> balanced selection -> student (Ray Train DDP) -> teacher vs student report.

    Returns the metrics (student's `fairness_discrepancy_<attr>_<n>`, `fd_attrclf_<n>`, `share_*`; the teacher's
    under `teacher_*`; params, img/s) plus `checkpoint`. Usable as a Tune point trainable: run(cfg, trial_dir)."""
    from fairray.labelers.registry import load_labeler
    from fairray.report import fig_png, shares_figure
    from fairray.tracking import Tracker
    from fairray.train.gan import load_generator, reference_images

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labeler = load_labeler(cfg.labeler, "cpu") if cfg.labeler else None
    check(cfg, labeler)
    if cfg.lambda_fair > 0:
        fairness_loss(labeler, cfg.fair_by or cfg.balance_by, cfg.fair_target, cfg.fair_loss)  # fail fast
    cfg = cfg.model_copy(update={"labeler": absolute_spec(cfg.labeler)})
    T, tcfg = load_generator(Path(cfg.teacher))
    width = student_width(cfg, T, tcfg)
    tracker = Tracker(out, cfg.tracking.experiment, cfg.tracking.uri, cfg.tracking.enabled)
    existing = tracker.find_run("fairray.run_name", cfg.name)
    with tracker.run(cfg.name, tags={"fairray.command": "distill", "fairray.run_name": cfg.name},
                     run_id=existing) as mlrun:
        if existing is None:
            mlrun.log_params(cfg.model_dump(mode="json") | {"student_width": width})
        t0 = time.perf_counter()
        init_ray(cfg.ray.address)
        pairs = Path(cfg.pairs) if cfg.pairs else make_pairs(cfg, out)
        t_pairs = time.perf_counter() - t0
        labels = read_table(pairs, columns=["image_id", *cfg.balance_by])
        selection = select_pairs(labels, cfg.balance_by, cfg.sampler, cfg.seed)
        selection.to_parquet(out / SELECTION, index=False)
        summary = selection_summary(selection, labels, cfg.balance_by)
        tracking = {"out": str(out.resolve()), "experiment": cfg.tracking.experiment, "uri": tracker.uri,
                    "run_id": mlrun.run_id}
        t1 = time.perf_counter()
        ckpt = fit(cfg, pairs, out / SELECTION, out, width, tracking if mlrun.live else None)
        t_fit = time.perf_counter() - t1
        S, info = load_student(ckpt)
        dataset = cfg.reference or tcfg.dataset
        ref = reference_images(Path(dataset), tcfg.resolution, cfg.eval_n) if dataset and Path(dataset).exists() else None
        metrics, tables, t_img, s_img = evaluate(T, S, tcfg.z_dim, labeler, cfg, ref)
        metrics |= {"student_width": float(width), "pairs_seconds": t_pairs, "distill_seconds": t_fit,
                    "pairs_selected": float(summary["selected"]), "kimg": info["nimg"] / 1000}
        target = {name: 1.0 / len(t) for name, t in tables.items()}
        fig_png(shares_figure(tables, f"{cfg.name}: teacher vs student ({cfg.eval_n:,} samples, same latents)",
                              target), out / f"{cfg.name}_shares.png")
        fig_png(side_by_side(t_img[:64], s_img[:64], f"same latents: teacher ({int(metrics['teacher_params']):,} "
                             f"params) vs student ({int(metrics['student_params']):,})"), out / f"{cfg.name}_grids.png")
        report = {"metrics": metrics, "selection": summary, "checkpoint": str(ckpt),
                  "shares": {k: v.to_dict() for k, v in tables.items()}}
        (out / f"{cfg.name}_metrics.json").write_text(json.dumps(report, indent=2, default=float))
        mlrun.log_metrics(metrics)
        for f in (f"{cfg.name}_shares.png", f"{cfg.name}_grids.png", f"{cfg.name}_metrics.json"):
            mlrun.log_artifact(out / f, "distill")
    return metrics | {"checkpoint": str(ckpt)}
