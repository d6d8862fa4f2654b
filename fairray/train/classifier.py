"""Downstream target classifier: Ray Train DDP on real + augmented rows with per-row loss weights, then fairness.

The model is fairray's ResNet-style `AttributeClassifier` with one two-class head for the target. Every method
(baseline, latent pairs, DiGA edits) trains for the same number of images (`kimg`), so differences come from the
data, not from the budget; `budget="real_passes"` instead lets an augmented run see each real row as often as the
baseline does (more steps). The loss is the weighted mean cross-entropy of the batch, sum(w * ce) / sum(w).

Evaluation (driver): the threshold comes from the val rows (calibrated: as many predicted positives as
positives), the metrics from the test rows of `eval_subset` (the balanced reference split by default), with
BA's bias direction taken from the real training rows. `backend="local"` runs the same loop in-process (no Ray
Train start-up, ~20 s saved per fit on small machines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fairray.config import FairClassifierConfig
from fairray.data.loading import check_split, load_split, subsets
from fairray.errors import FairrayError
from fairray.metrics.downstream import bias_direction, calibrated_threshold, evaluate
from fairray.models.classifiers import AttributeClassifier, ClassifierConfig
from fairray.ray_env import fit_torch, resolve_device
from fairray.stage import RunContext
from fairray.train.checkpoint import load_state, start_over_if_inputs_changed
from fairray.train.loop import Means, Phase, Session, TickClock, prepare, resume_state, to_unit, unwrap

TICKS = 4  # progress lines (and Ray Train checkpoints) per run


def build_model(cfg: FairClassifierConfig) -> AttributeClassifier:
    return AttributeClassifier(ClassifierConfig({cfg.target: 2}, cfg.resolution, cfg.width, tuple(cfg.blocks)))


def dataset_path(cfg: FairClassifierConfig, out: Path, progress: bool = False) -> Path:
    """cfg.dataset, or the `synth` set rendered once under <out>/data."""
    if cfg.dataset is not None:
        return Path(cfg.dataset)
    from fairray.data import synth_dataset

    return synth_dataset.ensure(cfg.synth, Path(out) / "data", progress)


def training_rows(cfg: FairClassifierConfig, dataset: Path, rank: int = 0, world: int = 1
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """This rank's real + augmented training rows: images, target, weights, and how many rows the decoder dropped."""
    xs, ys, ws, dropped = [], [], [], 0
    check_rows(cfg)
    if cfg.real_rows:
        x, df = load_split(dataset, "train", [cfg.target, "weight"], rank, world, cfg.resolution, cfg.train_subset)
        xs, ys, ws, dropped = [x], [df[cfg.target].to_numpy()], [df.weight.to_numpy()], df.attrs.get("bad_rows", 0)
    for aug in cfg.augment_data:
        xa, da = load_split(Path(aug), "train", [cfg.target, "weight"], rank, world, cfg.resolution)
        xs.append(xa)
        ys.append(da[cfg.target].to_numpy())
        ws.append(da.weight.to_numpy())
        dropped += da.attrs.get("bad_rows", 0)
    y = np.concatenate(ys).astype(np.int64)
    if not np.isin(y, (0, 1)).all():
        raise FairrayError(f"target {cfg.target!r} must be binary 0/1 in every training set")
    return np.concatenate(xs), y, np.concatenate(ws).astype(np.float32), dropped


def weighted_ce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (F.cross_entropy(logits.float(), y, reduction="none") * w).sum() / w.sum().clamp_min(1e-12)


class WeightedCE:
    """The weighted mean cross-entropy of the target head. One phase, "main"."""

    def __init__(self, model: torch.nn.Module, target: str):
        self.model, self.target = model, target

    def accumulate_gradients(self, phase: str, batch: dict) -> tuple[torch.Tensor, dict]:
        loss = weighted_ce(self.model(batch["x"])[self.target], batch["y"], batch["w"])
        return loss, {"train_loss": loss}


def fit_loop(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: FairClassifierConfig,
             device: torch.device, world: int = 1, rank: int = 0, state: dict | None = None,
             on_tick: Callable[[dict, dict], None] | None = None, session: Session | None = None
             ) -> torch.nn.Module:
    """Weighted-CE training for cfg.kimg thousand images (over all ranks); on_tick(metrics, state) TICKS times.
    Runs in a Ray Train worker (pass its session) or in-process (Tune trials, backend=local)."""
    s = session or Session(rank, world, device, cfg.ray.precision, name="classifier")
    inner = unwrap(model)
    step_img = cfg.batch_size * s.world
    steps = max(1, int(cfg.kimg * 1000) // step_img)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    stateful = {"model": inner, "opt": opt, "sched": sched}
    s.restore(state, stateful)
    g = torch.Generator().manual_seed(cfg.seed * 1009 + s.rank * 17 + s.step)
    y_t, w_t = torch.from_numpy(y), torch.from_numpy(w)
    clock = TickClock(steps * step_img, max(1, steps // TICKS) * step_img, s.step * step_img)
    phases, loss, means = [Phase("main", opt, sched=sched)], WeightedCE(model, cfg.target), Means()
    model.train()
    while not clock.done:
        idx = torch.randint(len(x), (cfg.batch_size,), generator=g)
        xb = to_unit(torch.from_numpy(x[idx.numpy()]), s.device, signed=False)
        if cfg.hflip:
            flip = (torch.rand(len(idx), generator=g) < 0.5).to(s.device)
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
        s.run_phases(loss, phases, {"x": xb, "y": y_t[idx].to(s.device), "w": w_t[idx].to(s.device)}, means)
        if clock.advance(step_img) and on_tick is not None:
            on_tick({**clock.lap(), **means.pop()}, s.state(stateful, clock.nimg))
    return inner


def train_loop(config: dict) -> None:
    """Ray Train worker: shard the rows by rank, DDP; every tick reports and checkpoints (rank 0 writes)."""
    cfg = FairClassifierConfig.model_validate(config["cfg"])
    s = Session.ray(config, cfg.ray.precision, f"classifier {cfg.target}")
    torch.manual_seed(cfg.seed)
    x, y, w, dropped = training_rows(cfg, Path(config["dataset"]), s.rank, s.world)
    s.count_dropped(dropped)
    model = build_model(cfg).to(s.device)
    state = resume_state(s.run_dir)  # a restarted worker group (or a re-run with the same name) continues here
    model = prepare(model)
    fit_loop(model, x, y, w, cfg, s.device, state=state, session=s,
             on_tick=lambda m, st: s.publish(len(s.history) + 1, m, f"loss {m['train_loss']:.3f}", lambda: st, True))


def fit(cfg: FairClassifierConfig, dataset: Path, out: Path, name: str = "classifier") -> dict:
    """Train (Ray Train or in-process); returns the final model state dict."""
    if cfg.backend == "local":
        torch.manual_seed(cfg.seed)
        x, y, w, dropped = training_rows(cfg, dataset)
        device = torch.device(resolve_device(cfg.ray.device))
        s = Session.local(device, cfg.ray.precision, f"classifier {cfg.target}")
        s.count_dropped(dropped)
        model = fit_loop(build_model(cfg).to(device), x, y, w, cfg, device, session=s,
                         on_tick=lambda m, st: print_tick(cfg, m))
        return {k: v.cpu() for k, v in model.state_dict().items()}
    storage = (Path(out) / "ray_results").resolve()
    # workers run in directories of their own: every path they read must be absolute
    cfg = cfg.model_copy(update={"augment_data": [str(Path(a).resolve()) for a in cfg.augment_data]})
    start_over_if_inputs_changed(storage / name, cfg.model_dump(mode="json", exclude=SCHEDULE_KEYS),
                                 [dataset, *cfg.augment_data])
    ckpt = fit_torch(train_loop, {"cfg": cfg.model_dump(mode="json"), "dataset": str(Path(dataset).resolve()),
                                  "run_dir": str(storage / name)},
                     cfg.ray, name, storage, what="classifier training")
    return load_state(ckpt)["model"]


# a re-run may extend these and continue; any other difference is another experiment
SCHEDULE_KEYS = {"kimg", "tick_kimg", "n_boot", "tracking", "ray", "backend"}


def print_tick(cfg: FairClassifierConfig, m: dict) -> None:
    print(f"classifier {cfg.target}: kimg {m['kimg']:<6.1f} loss {m['train_loss']:.3f}  {m['img_per_s']:.0f} img/s",
          flush=True)


@torch.no_grad()
def scores(model: torch.nn.Module, images: np.ndarray, target: str, batch: int = 1024) -> np.ndarray:
    """P(target = 1 | image)."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        xb = torch.from_numpy(images[i:i + batch]).to(dev).permute(0, 3, 1, 2).float().div_(255)
        out.append(torch.softmax(model(xb)[target].float(), 1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def eval_rows(cfg: FairClassifierConfig, dataset: Path, split: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows of `split` in eval_subset (falls back to every row of the split when the subset is absent)."""
    cols = [cfg.target, cfg.protected]
    try:
        return load_split(dataset, split, cols, size=cfg.resolution, subset=cfg.eval_subset)
    except FairrayError:
        return load_split(dataset, split, cols, size=cfg.resolution)


def evaluate_model(cfg: FairClassifierConfig, state: dict, dataset: Path) -> dict[str, float]:
    """Threshold on val, metrics (with bootstrap intervals) on test, both in eval_subset."""
    model = build_model(cfg)
    model.load_state_dict(state)
    _, tr = load_split(dataset, "train", [cfg.target, cfg.protected], size=8, subset=cfg.train_subset)
    direction = bias_direction(tr[cfg.target].to_numpy(), tr[cfg.protected].to_numpy())
    x_va, df_va = eval_rows(cfg, dataset, "val")
    s_va = scores(model, x_va, cfg.target)
    y_va = df_va[cfg.target].to_numpy()
    thr = calibrated_threshold(y_va, s_va) if cfg.threshold == "calibrated" else 0.5
    x_te, df_te = eval_rows(cfg, dataset, "test")
    s_te = scores(model, x_te, cfg.target)
    m = evaluate(df_te[cfg.target].to_numpy(), s_te, df_te[cfg.protected].to_numpy(), cfg.target, cfg.protected,
                 threshold=thr, direction=direction, n_boot=cfg.n_boot, seed=cfg.seed)
    val = evaluate(y_va, s_va, df_va[cfg.protected].to_numpy(), cfg.target, cfg.protected, threshold=thr,
                   direction=direction, n_boot=0)
    return m | {f"val_{k}": v for k, v in val.items() if k not in ("threshold", "n_eval")}


def for_dataset(cfg: FairClassifierConfig, dataset: Path) -> FairClassifierConfig:
    """Checked on the driver before Ray starts. A dataset without the default subsets (a reader's output holds
    only `real` rows) trains and is scored on every row of its splits; a subset the user set must exist."""
    have = subsets(dataset)
    update = {k: None for k in ("train_subset", "eval_subset")
              if getattr(cfg, k) is not None and getattr(cfg, k) not in have and k not in cfg.model_fields_set}
    cfg = cfg.model_copy(update=update)
    for split in ("train", "val", "test"):
        check_split(dataset, split, [cfg.target, cfg.protected], cfg.train_subset if split == "train" else None)
    return cfg


def check_rows(cfg: FairClassifierConfig) -> None:
    """real_rows=false needs augment_data to train on."""
    if not cfg.real_rows and not cfg.augment_data:
        raise FairrayError("real_rows=false trains on augment_data alone, and augment_data is empty")


def with_budget(cfg: FairClassifierConfig, dataset: Path) -> FairClassifierConfig:
    """cfg with kimg in images: budget real_passes scales it by (real + augmented rows) / real rows. Checks that
    real_rows=false has rows to train on."""
    check_rows(cfg)
    if cfg.budget == "images" or not cfg.augment_data:
        return cfg
    if not cfg.real_rows:
        raise FairrayError("budget=real_passes counts passes over the real rows; with real_rows=false use "
                           "budget=images")
    real = check_split(dataset, "train", [cfg.target], cfg.train_subset)
    extra = sum(check_split(Path(a), "train", [cfg.target]) for a in cfg.augment_data)
    return cfg.model_copy(update={"kimg": cfg.kimg * (real + extra) / real, "budget": "images"})


def run(cfg: FairClassifierConfig, out: Path, ctx: RunContext | None = None) -> dict[str, float]:
    """Data -> fit -> metrics on the balanced test split, in an MLflow run named ctx.name (default "classifier")
    with ctx.tags. Returns the metrics."""
    ctx, out = ctx or RunContext(progress=False), Path(out)
    name = ctx.name or "classifier"
    dataset = dataset_path(cfg, out, ctx.progress)
    cfg = with_budget(for_dataset(cfg, dataset), dataset)
    tracker = ctx.tracker_for(out, cfg)
    with tracker.run(name, parent=ctx.parent, tags={"fairray.command": "train-classifier", **ctx.tags}) as mlrun:
        mlrun.log_params(cfg.model_dump(mode="json") | {"dataset": str(dataset)})
        t0 = time.perf_counter()
        state = fit(cfg, dataset, out, name)
        metrics = evaluate_model(cfg, state, dataset)
        metrics["train_seconds"] = time.perf_counter() - t0
        metrics["kimg_trained"] = cfg.kimg  # after the budget rule: what a compute-matched baseline trains for
        mlrun.log_metrics(metrics)
        dest = out / name
        dest.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": state, "config": cfg.model_dump(mode="json")}, dest / "model.pt")
    return metrics
