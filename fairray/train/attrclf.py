"""Train the `attrclf` labeler with Ray Train (DDP), then calibrate (per-head temperature) and report.

Outputs under <out>/attrclf/: model.pt (weights, heads, class codes, temperatures), metrics.json,
calibration.png (reliability diagrams after calibration), accuracy_by_group.csv.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fairray.config import AttrClfConfig
from fairray.data.attributes import ALL_ATTRIBUTES, attribute_values
from fairray.data.loading import load_split
from fairray.data.table import attribute_columns, read_table
from fairray.errors import FairrayError
from fairray.models.classifiers import AttributeClassifier, ClassifierConfig
from fairray.ray_env import fit_torch
from fairray.stage import RunContext
from fairray.train.checkpoint import load_state
from fairray.train.loop import Means, Phase, Session, TickClock, prepare, to_unit, unwrap

IGNORE = -100
GROUP_COLUMNS = ("gender", "tone4")


MAX_CLASSES = 16  # an attribute column with more distinct values is not a default head
NOT_HEADS = {"age"}  # years: a quantity, binned into age9 by the readers


def for_dataset(cfg: AttrClfConfig, dataset: Path) -> AttrClfConfig:
    """The config a dataset can train, settled on the driver before Ray starts.

    Heads: as given (each must be a column: a one-line error names the columns it has), or by default the default
    heads the dataset has, then its own categorical columns (race7, race5_utk, age5, ...). Epochs: as given, or by
    default enough for `min_kimg` thousand images, so a small real set (1,600 faces) trains as many steps as the
    SynthFaces default does rather than a few dozen."""
    update: dict = {}
    if "heads" in cfg.model_fields_set:
        read_table(dataset, columns=cfg.heads)  # a head the dataset lacks: the error names the columns it has
    else:
        attrs = attribute_columns(dataset)
        heads = [h for h in cfg.heads if h in attrs]
        skip = set(heads) | set(ALL_ATTRIBUTES) | NOT_HEADS
        own = read_table(dataset, columns=[a for a in attrs if a not in skip])
        heads += [c for c in own.columns if 2 <= own[c].nunique() <= MAX_CLASSES]
        if not heads:
            raise FairrayError(f"{dataset}: no attribute column to train a head on (its columns: {attrs})")
        update["heads"] = heads
    rows = read_table(dataset, columns=["split", "error"])
    n_train = int(((rows.split == "train") & rows.error.isna()).sum())
    if n_train < cfg.batch_size:
        raise FairrayError(f"{dataset}: {n_train} usable train rows, fewer than one batch ({cfg.batch_size}); "
                           "set a smaller batch_size or use more data")
    if "epochs" not in cfg.model_fields_set:
        update["epochs"] = max(cfg.epochs, math.ceil(cfg.min_kimg * 1000 / n_train))
    return cfg.model_copy(update=update)


def training_sources(dataset: Path) -> list[str]:
    """The `source` values of the train split: the domain a labeler trained on it knows."""
    df = read_table(dataset, columns=["source", "split"])
    return sorted(str(s) for s in df.source[df.split == "train"].unique())


def head_codes(dataset: Path, heads: list[str]) -> dict[str, list[int]]:
    """Class codes per head: fairray's vocabulary for known attributes, else the values seen in the data."""
    df = read_table(dataset, columns=heads)  # also: a head the dataset lacks is a clear error here
    return {h: list(attribute_values(h)) if h in ALL_ATTRIBUTES else sorted(int(v) for v in df[h].dropna().unique())
            for h in heads}


def targets(df: pd.DataFrame, codes: dict[str, list[int]]) -> torch.Tensor:
    """(N, heads) class indices; missing or unknown labels become IGNORE."""
    cols = []
    for h, c in codes.items():
        lut = {code: i for i, code in enumerate(c)}
        cols.append([lut.get(int(v), IGNORE) if pd.notna(v) else IGNORE for v in df[h]])
    return torch.tensor(np.array(cols, dtype=np.int64).T)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random blur (sigma <= 1.2) and noise on half the batch: GAN samples are blurry and speckled."""
    n = x.shape[0]
    pick = torch.rand(n, generator=g) < 0.5
    if pick.any():
        sigma = float(torch.empty(1).uniform_(0.3, 1.2, generator=g))
        k = torch.arange(-2, 3, dtype=x.dtype)
        w = torch.exp(-(k**2) / (2 * sigma**2))
        w = (w / w.sum()).to(x.device)
        xb = x[pick]
        xb = F.conv2d(F.pad(xb, (2, 2, 0, 0), mode="replicate"), w.view(1, 1, 1, 5).expand(3, 1, 1, 5), groups=3)
        xb = F.conv2d(F.pad(xb, (0, 0, 2, 2), mode="replicate"), w.view(1, 1, 5, 1).expand(3, 1, 5, 1), groups=3)
        noise = torch.randn(xb.shape, generator=g).to(x.device) * float(torch.rand(1, generator=g)) * 0.08
        x = x.clone()
        x[pick] = (xb + noise).clamp(0, 1)
    if torch.rand(1, generator=g) < 0.5:
        x = x.flip(3)
    return x


def multi_head_loss(out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(logits.float(), y[:, j], ignore_index=IGNORE) for j, logits in enumerate(out.values()))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, device: str, batch: int = 512
                   ) -> dict[str, np.ndarray]:
    model.eval()
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(device).permute(0, 3, 1, 2).float().div_(255)
        for k, v in model(x).items():
            outs.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def accuracies(logits: dict[str, np.ndarray], y: torch.Tensor) -> dict[str, float]:
    acc = {}
    for j, (h, lg) in enumerate(logits.items()):
        t = y[:, j].numpy()
        ok = t != IGNORE
        acc[h] = float((lg.argmax(1)[ok] == t[ok]).mean()) if ok.any() else float("nan")
    return acc


class MultiHeadLoss:
    """Cross-entropy summed over heads; unlabelled entries (IGNORE) do not count. One phase, "main"."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def accumulate_gradients(self, phase: str, batch: dict) -> tuple[torch.Tensor, dict]:
        loss = multi_head_loss(self.model(batch["x"]), batch["y"])
        return loss, {"train_loss": loss}


def train_loop(config: dict) -> None:
    """Runs on every Ray Train worker: shard rows by rank, DDP, rank 0 validates; a checkpoint every epoch."""
    # Initialize: this rank's rows (rank 0 also holds the val split)
    cfg = AttrClfConfig.model_validate(config["cfg"])
    codes: dict[str, list[int]] = config["codes"]
    s = Session.ray(config, cfg.ray.precision, "attrclf")
    torch.manual_seed(cfg.seed)
    x_tr, df_tr = load_split(Path(config["dataset"]), "train", list(codes), s.rank, s.world, cfg.resolution)
    s.count_dropped(df_tr.attrs.get("bad_rows", 0))
    y_tr = targets(df_tr, codes)
    if s.rank == 0:
        x_va, df_va = load_split(Path(config["dataset"]), "val", list(codes), size=cfg.resolution)
        y_va = targets(df_va, codes)

    # Network, optimizer, one-cycle schedule; a restarted worker group or a same-name re-run continues here
    model = AttributeClassifier(ClassifierConfig({h: len(c) for h, c in codes.items()}, cfg.resolution,
                                                 cfg.width, tuple(cfg.blocks))).to(s.device)
    steps_per_epoch = max(1, len(x_tr) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    stateful = {"model": model, "opt": opt, "sched": sched}
    s.resume(stateful)
    model = prepare(model)
    step_img = cfg.batch_size * s.world
    clock = TickClock(cfg.epochs * steps_per_epoch * step_img, steps_per_epoch * step_img, s.step * step_img)
    phases, loss, means = [Phase("main", opt, sched=sched)], MultiHeadLoss(model), Means()

    # Train: one tick per epoch, each epoch a fresh permutation seeded by (seed, epoch, rank)
    for epoch in range(s.step // steps_per_epoch, cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch * 10 + s.rank)
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = to_unit(torch.from_numpy(x_tr[idx.numpy()]), s.device, signed=False)
            batch = {"x": augment(x, g) if cfg.augment else x, "y": y_tr[idx].to(s.device)}
            s.run_phases(loss, phases, batch, means)
            clock.advance(step_img)
        m = {"epoch": epoch, **means.pop()}
        if s.rank == 0:
            m |= {f"acc_{h}_val": a for h, a in accuracies(predict_logits(unwrap(model), x_va, s.device.type), y_va).items()}
        line = (f"epoch {epoch + 1}/{cfg.epochs} loss {m['train_loss']:.3f} val acc "
                + " ".join(f"{k[4:-4]} {v:.3f}" for k, v in m.items() if k.startswith("acc_")))
        s.end_tick(clock, m, line, lambda: s.state(stateful, clock.nimg), snapshot=True)


def fit(cfg: AttrClfConfig, dataset: Path, out: Path, name: str = "attrclf") -> Path:
    """Run the Ray Train job; returns the directory of the last checkpoint."""
    codes = head_codes(dataset, cfg.heads)
    storage = (Path(out) / "ray_results").resolve()
    return fit_torch(train_loop, {"cfg": cfg.model_dump(mode="json"), "codes": codes,
                                  "dataset": str(Path(dataset).resolve()), "run_dir": str(storage / name)},
                     cfg.ray, name, storage, what="attribute classifier training")


def finalize(cfg: AttrClfConfig, dataset: Path, ckpt_dir: Path, out: Path) -> dict:
    """Calibrate on val (temperature per head), evaluate on test, write model.pt + report files."""
    from fairray.metrics.calibration import calibrated_probs, ece, fit_temperature, reliability_figure
    from fairray.report import fig_png

    state = load_state(Path(ckpt_dir))
    codes = head_codes(dataset, cfg.heads)
    mcfg = ClassifierConfig({h: len(c) for h, c in codes.items()}, cfg.resolution, cfg.width, tuple(cfg.blocks))
    model = AttributeClassifier(mcfg)
    model.load_state_dict(state["model"])
    x_va, df_va = load_split(dataset, "val", list(codes), size=cfg.resolution)
    groups = [c for c in GROUP_COLUMNS if c in attribute_columns(dataset)]
    x_te, df_te = load_split(dataset, "test", list(dict.fromkeys([*codes, *groups])), size=cfg.resolution)
    y_va, y_te = targets(df_va, codes), targets(df_te, codes)
    lg_va, lg_te = predict_logits(model, x_va, "cpu"), predict_logits(model, x_te, "cpu")
    temps, metrics, curves, by_group = {}, {}, {}, []
    for j, h in enumerate(codes):
        ok_va, ok_te = (y_va[:, j] != IGNORE).numpy(), (y_te[:, j] != IGNORE).numpy()
        temps[h] = fit_temperature(lg_va[h][ok_va], y_va[ok_va, j].numpy()) if ok_va.any() else 1.0
        probs = calibrated_probs(lg_te[h][ok_te], temps[h])
        labels = y_te[ok_te, j].numpy()
        metrics[f"acc_{h}_test"] = float((probs.argmax(1) == labels).mean())
        metrics[f"ece_{h}_test"] = ece(probs, labels)
        metrics[f"ece_{h}_test_uncalibrated"] = ece(calibrated_probs(lg_te[h][ok_te]), labels)
        curves[h] = (probs, labels)
        correct = pd.Series(probs.argmax(1) == labels, index=df_te.index[ok_te])
        for g in groups:
            for v, acc in correct.groupby(df_te.loc[ok_te, g]).mean().items():
                by_group.append({"head": h, "group": g, "value": int(v), "accuracy": float(acc),
                                 "n": int((df_te.loc[ok_te, g] == v).sum())})
    dest = Path(out) / "attrclf"
    dest.mkdir(parents=True, exist_ok=True)
    sources = training_sources(dataset)
    torch.save({"config": asdict(mcfg), "state_dict": model.state_dict(), "codes": codes, "temperature": temps,
                "sources": sources, "format": "fairray.attrclf/1"}, dest / "model.pt")
    (dest / "metrics.json").write_text(json.dumps(metrics | {"temperature": temps, "sources": sources}, indent=2))
    pd.DataFrame(by_group).to_csv(dest / "accuracy_by_group.csv", index=False)
    fig_png(reliability_figure(curves, title="attrclf reliability on test (after temperature scaling)"),
            dest / "calibration.png")
    return metrics


def run(cfg: AttrClfConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Data (given or rendered) -> Ray Train fit -> calibration/evaluation -> MLflow run. Returns metrics."""
    from fairray.data import synth_dataset

    ctx, out = ctx or RunContext(), Path(out)
    dataset = Path(cfg.dataset) if cfg.dataset else out / "data" / "synthfaces"
    if cfg.dataset is None:
        synth_dataset.ensure(cfg.synth, dataset, progress=ctx.progress)
    cfg = for_dataset(cfg, dataset)
    tracker = ctx.tracker_for(out, cfg)
    with tracker.run(ctx.name or "train-attrclf", parent=ctx.parent,
                     tags={"fairray.command": "train-attrclf", **ctx.tags}) as run_:
        run_.log_params(cfg.model_dump(mode="json") | {"dataset": str(dataset)})
        t0 = time.perf_counter()
        ckpt = fit(cfg, dataset, out)
        metrics = finalize(cfg, dataset, ckpt, out)
        metrics["train_seconds"] = time.perf_counter() - t0
        run_.log_metrics(metrics)
        for f in ("model.pt", "metrics.json", "calibration.png", "accuracy_by_group.csv"):
            run_.log_artifact(out / "attrclf" / f, "attrclf")
    return metrics
