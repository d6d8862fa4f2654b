"""fairgen importance weights, done right: a calibrated, clipped density-ratio classifier + a Ray Data pass.

1. Train a small classifier to tell reference rows (y=1) from biased rows (y=0) on class-balanced batches
   (fairgen: 100 + 100), so its odds estimate p_ref(x) / p_bias(x) with gamma = 1. Either fairgen's CNN on the
   pixels, or (`encoder`) a class-balanced logistic regression on a labeler's pooled features: from the weak
   reference/biased labels a from-scratch CNN finds the protected attribute only partly in a demo's budget
   (weighted female share 0.33-0.42 of the 0.5 it should restore; README), a pretrained space holds it linearly.
2. Calibrate it on held-out rows (temperature scaling, or isotonic), because fairgen's uncalibrated ratios
   explode at perc 0.1 and the GAN collapses (fairgen issue #7); log the reliability diagram.
3. A Ray Data pass writes w(x) = clip(D / (1 - D)) into the `weight` column of every biased row; reference rows
   keep weight 1, as in fairgen. The flattening power alpha is applied at training time.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torch.nn.functional as F

from fairray.config import ReweightConfig
from fairray.data.loading import load_split
from fairray.data.table import DATA_DIR, count_rows, read_manifest, read_table, shard_paths, write_manifest
from fairray.errors import FairrayError
from fairray.labelers.registry import absolute_spec, input_size, load_labeler
from fairray.machine import compute_setup
from fairray.metrics.generated import labeler_features
from fairray.models.classifiers import AttributeClassifier, ClassifierConfig
from fairray.stage import RunContext

HEAD = "is_reference"
RATIO_BATCH = 512  # rows per batch of the weight pass
ENCODE_BATCH = 1000  # images per attrclf features call of the encoder ratio


def _xy(dataset: Path, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, df = load_split(dataset, split, ["subset"], size=size)
    if not {"biased", "reference"} <= set(df.subset):
        raise FairrayError(f"{dataset} split {split!r} needs both biased and reference rows (fairray synth "
                           "with perc > 0, or a dataset with a `subset` column)")
    return torch.from_numpy(images), torch.tensor((df.subset == "reference").to_numpy(), dtype=torch.long)


def _logits(model: AttributeClassifier, x: torch.Tensor, batch: int = 512) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(x[i:i + batch].permute(0, 3, 1, 2).float().div(255))[HEAD].numpy()
                               for i in range(0, len(x), batch)])


def _balanced_val(dataset: Path, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Equal numbers of reference and biased val rows: the prior the ratio formula assumes (gamma = 1)."""
    x, y = _xy(dataset, "val", size)
    g = np.random.default_rng(seed)
    ref, bias = np.flatnonzero(y.numpy() == 1), np.flatnonzero(y.numpy() == 0)
    n = min(len(ref), len(bias))
    keep = np.concatenate([g.choice(ref, n, replace=False), g.choice(bias, n, replace=False)])
    return x[keep], y[keep].numpy()


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flips and small shifts: with a reference set of a few thousand images a CNN otherwise memorises which
    images are `reference` and its ratios become meaningless."""
    if torch.rand(1, generator=g) < 0.5:
        x = x.flip(3)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


class RatioModel(Protocol):
    resolution: int

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) two-class logits (biased, reference) of uint8 NHWC pixels."""
        ...


class CnnRatio:
    """fairgen's ratio classifier: a small CNN trained on the pixels."""

    def __init__(self, state: dict):
        self.model = AttributeClassifier(ClassifierConfig(**state["config"])).eval()
        self.model.load_state_dict(state["state_dict"])
        self.resolution = int(state["resolution"])

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return _logits(self.model, torch.from_numpy(np.ascontiguousarray(pixels)))


class EncoderRatio:
    """A linear ratio classifier on a labeler's pooled features (the scaler is folded into coef/intercept)."""

    def __init__(self, state: dict):
        self.labeler = load_labeler(state["encoder"])
        self.coef, self.intercept = np.asarray(state["coef"], dtype=np.float64), float(state["intercept"])
        self.resolution = int(state["resolution"])

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        z = labeler_features(self.labeler, pixels, ENCODE_BATCH) @ self.coef + self.intercept
        return np.stack([np.zeros_like(z), z], 1)


def ratio_model(state: dict) -> RatioModel:
    return EncoderRatio(state) if state["kind"] == "encoder" else CnnRatio(state)


def train_classifier(cfg: ReweightConfig, dataset: Path) -> tuple[dict, dict, np.ndarray]:
    """The ratio classifier's state (see `ratio_model`), its training report, and its logits on the biased train
    rows (what the clip quantile is taken over: returned so they are not loaded and encoded a second time)."""
    return train_encoder(cfg, dataset) if cfg.encoder else train_cnn(cfg, dataset)


def train_encoder(cfg: ReweightConfig, dataset: Path) -> tuple[dict, dict, np.ndarray]:
    """Class-balanced logistic regression (gamma = 1, as fairgen's 100 + 100 batches) on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    labeler = load_labeler(cfg.encoder)
    if not callable(getattr(labeler, "features", None)):
        raise FairrayError(f"encoder {cfg.encoder!r} has no pooled features; use an attrclf:DIR labeler")
    t0 = time.perf_counter()
    size = input_size(labeler)
    x, y = _xy(dataset, "train", size)
    feats = labeler_features(labeler, x.numpy(), ENCODE_BATCH)
    scaler = StandardScaler().fit(feats)
    lr = LogisticRegression(class_weight="balanced", max_iter=2000).fit(scaler.transform(feats), y.numpy())
    coef = lr.coef_[0] / scaler.scale_
    intercept = float(lr.intercept_[0] - coef @ scaler.mean_)
    state = {"kind": "encoder", "encoder": absolute_spec(cfg.encoder), "resolution": size, "coef": coef.tolist(),
             "intercept": intercept}
    z = feats[y.numpy() == 0] @ coef + intercept
    return state, {"ratio_clf_features": float(feats.shape[1]), "ratio_clf_seconds": time.perf_counter() - t0
                   }, np.stack([np.zeros_like(z), z], 1)


def cnn_state(cfg: ReweightConfig, state_dict: dict) -> dict:
    """The CNN ratio classifier's state as `ratio_model` and the weight pass read it."""
    config = {"heads": {HEAD: 2}, "resolution": cfg.resolution, "width": cfg.width, "blocks": tuple(cfg.blocks)}
    return {"kind": "cnn", "resolution": cfg.resolution, "config": config, "state_dict": state_dict}


def train_cnn(cfg: ReweightConfig, dataset: Path) -> tuple[dict, dict, np.ndarray]:
    """Class-balanced training of fairgen's CNN with early stopping on balanced val NLL."""
    torch.manual_seed(cfg.seed)
    x, y = _xy(dataset, "train", cfg.resolution)
    xv, yv = _balanced_val(dataset, cfg.resolution, cfg.seed)
    model = AttributeClassifier(ClassifierConfig({HEAD: 2}, cfg.resolution, cfg.width, tuple(cfg.blocks)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ref, bias = torch.nonzero(y == 1).flatten(), torch.nonzero(y == 0).flatten()
    g = torch.Generator().manual_seed(cfg.seed)
    half = cfg.batch_size // 2
    steps_per_epoch = max(1, len(bias) // half)
    t0 = time.perf_counter()
    best, best_nll, best_epoch = None, float("inf"), -1
    for epoch in range(cfg.epochs):
        model.train()
        for _ in range(steps_per_epoch):
            idx = torch.cat([ref[torch.randint(len(ref), (half,), generator=g)],
                             bias[torch.randint(len(bias), (half,), generator=g)]])
            xb = _augment(x[idx].permute(0, 3, 1, 2).float().div(255), g)
            loss = F.cross_entropy(model(xb)[HEAD], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        nll = float(F.cross_entropy(torch.from_numpy(_logits(model, xv)), torch.from_numpy(yv)))
        if nll < best_nll:
            best, best_nll, best_epoch = copy.deepcopy(model.state_dict()), nll, epoch
    model.load_state_dict(best)
    state = cnn_state(cfg, best)
    return state, {"ratio_clf_epochs_run": cfg.epochs, "ratio_clf_best_epoch": best_epoch,
                   "ratio_clf_val_nll": best_nll, "ratio_clf_seconds": time.perf_counter() - t0
                   }, _logits(model, x[y == 0])


def calibrate(cfg: ReweightConfig, model: RatioModel, dataset: Path, out: Path) -> tuple[dict, dict]:
    """Fit the calibration map on a class-balanced val subsample; report balanced accuracy and ECE."""
    from fairray.debias.density_ratio import ece, fit_isotonic, fit_temperature, reliability_figure
    from fairray.metrics.calibration import calibrated_probs
    from fairray.report import fig_png

    xv, labels = _balanced_val(dataset, model.resolution, cfg.seed)
    logits = model.logits(xv.numpy())
    g = np.random.default_rng(cfg.seed + 1)
    # Fit the calibration map on one half, report on the other: no optimistic ECE.
    perm = g.permutation(len(labels))
    fit_i, rep_i = perm[: len(perm) // 2], perm[len(perm) // 2:]
    raw = calibrated_probs(logits)
    calib: dict = {"method": cfg.calibration, "temperature": 1.0}
    if cfg.calibration == "temperature":
        calib["temperature"] = fit_temperature(logits[fit_i], labels[fit_i])
        probs = calibrated_probs(logits, calib["temperature"])
    elif cfg.calibration == "isotonic":
        iso = fit_isotonic(raw[fit_i, 1], labels[fit_i])
        calib["isotonic"] = iso
        p1 = np.clip(iso.predict(raw[:, 1]), 0, 1)
        probs = np.stack([1 - p1, p1], 1)
    else:
        probs = raw
    report = {
        "calibration": cfg.calibration,
        "ratio_clf_balanced_acc_val": float(np.mean([(raw[rep_i].argmax(1) == labels[rep_i])[labels[rep_i] == c].mean()
                                                     for c in (0, 1)])),
        "ratio_clf_ece_val_raw": ece(raw[rep_i, 1], labels[rep_i]),
        "ratio_clf_ece_val": ece(probs[rep_i, 1], labels[rep_i]),
    }
    fig_png(reliability_figure({"raw": (raw[rep_i, 1], labels[rep_i]),
                                cfg.calibration: (probs[rep_i, 1], labels[rep_i])},
                               title="density-ratio classifier (held-out, class-balanced)"),
            out / "ratio_calibration.png")
    return calib, report


class WeightActor:
    """Ray Data actor: decode an Arrow batch and write its density-ratio weights, in one process (as labeling)."""

    def __init__(self, state: dict, calib: dict, clip_max: float, size: int, threads: int | None = None,
                 timings: str | None = None):
        from fairray.data.pipeline import BatchClock

        compute_setup(threads)
        self.model = ratio_model(state)
        self.calib, self.clip_max, self.size, self.clock = calib, clip_max, size, BatchClock(timings)

    def __call__(self, table: pa.Table) -> pa.Table:
        from fairray.data.pipeline import decode_table
        from fairray.debias.density_ratio import density_ratio

        pixels, ok, cols = decode_table(table, self.size, 50_000_000)
        p = ratio_probs(self.model, self.calib, pixels)
        w = np.minimum(density_ratio(p), self.clip_max)
        is_ref = np.asarray(table.column("subset").to_pylist()) == "reference"
        cols["ratio_prob"] = pa.array(np.where(ok, p, np.nan).astype(np.float32))
        cols["weight"] = pa.array(np.where(is_ref, 1.0, np.where(ok, w, 0.0)))
        self.clock.tick(table.num_rows)
        return pa.table(cols)


def ratio_probs(model: RatioModel, calib: dict, pixels: np.ndarray) -> np.ndarray:
    """Calibrated P(reference | x) for uint8 NHWC pixels."""
    return calibrated_ratio(model.logits(pixels), calib)


def calibrated_ratio(logits: np.ndarray, calib: dict) -> np.ndarray:
    """Calibrated P(reference | x) from the ratio classifier's (N, 2) logits."""
    from fairray.metrics.calibration import calibrated_probs

    if calib["method"] == "isotonic":
        return np.clip(calib["isotonic"].predict(calibrated_probs(logits)[:, 1]), 0, 1)
    return calibrated_probs(logits, calib["temperature"])[:, 1]


def run(cfg: ReweightConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Train + calibrate the ratio classifier, then write the dataset with a `weight` column (Ray Data). Logs no
    MLflow run of its own (its callers report the weights); ctx.progress shows the Ray Data pass's bar."""
    ctx, out = ctx or RunContext(), Path(out)
    dataset = Path(cfg.dataset)
    if (out / DATA_DIR).exists():
        raise FairrayError(f"{out / DATA_DIR} exists; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    state, report, biased_logits = train_classifier(cfg, dataset)
    model = ratio_model(state)
    calib, cal_report = calibrate(cfg, model, dataset, out)
    report |= cal_report
    # clip at the q-quantile of the biased-train ratios (fairgen's tails are what blow the GAN up)
    from fairray.debias.density_ratio import density_ratio

    w_train = density_ratio(calibrated_ratio(biased_logits, calib))
    clip_max = float(np.quantile(w_train, cfg.clip_quantile))
    weight_pass(dataset, out, state, calib, clip_max, cfg.ray.address, progress=ctx.progress)
    df = read_table(out, columns=["subset", "split", "weight", *cfg.report_attributes])
    report |= {"clip_max": clip_max, "weights": _weight_report(df, cfg.report_attributes)}
    (out / "reweight.json").write_text(json.dumps(report, indent=2, default=float))
    write_manifest(out, read_manifest(dataset) | {"reweighted": {k: v for k, v in report.items() if k != "weights"}})
    return report


def weight_pass(dataset: Path, out: Path, state: dict, calib: dict, clip_max: float, address: str | None = None,
                progress: bool = True, timings: Path | None = None, actors: int | None = None,
                engine: str = "auto") -> None:
    """Ray Data: every row of `dataset` -> decode + ratio classifier in one actor stage -> <out> with `weight` and
    `ratio_prob` (rows in == rows out; a row that does not decode gets weight 0). `timings`: see
    pipeline.BatchClock; `actors` default: from the cluster's CPUs; `engine`: as LabelConfig.engine (auto: in this
    process when no Ray runs or is given and the pool would be one actor)."""
    import ray

    from fairray.data.pipeline import run_in_process
    from fairray.data.table import iter_batches
    from fairray.ray_env import actor_pool, init_ray, model_actors, runs_in_process

    rows, paths = count_rows(dataset), [str(p) for p in shard_paths(dataset)]
    data_dir = Path(out).absolute() / DATA_DIR  # write tasks run in directories of their own
    stage_kwargs = {"state": state, "calib": calib, "clip_max": clip_max, "size": state["resolution"],
                    "timings": str(timings) if timings else None}
    # the ratio classifier is small: CPU actors
    if runs_in_process(engine, address, "cpu", actors, rows):
        run_in_process(WeightActor(**stage_kwargs), iter_batches(dataset, RATIO_BATCH), data_dir, rows,
                       "density ratio (in process)", progress)
        return
    init_ray(address)
    n_actors, cpus, threads = actor_pool("cpu", actors, rows=rows)
    data_ctx = ray.data.DataContext.get_current()
    data_ctx.execution_options.preserve_order = True
    bars, data_ctx.enable_progress_bars = data_ctx.enable_progress_bars, progress
    try:
        ds = ray.data.read_parquet(paths)
        ds = ds.map_batches(WeightActor, fn_constructor_kwargs=stage_kwargs | {"threads": threads},
                            batch_format="pyarrow", batch_size=RATIO_BATCH, num_cpus=cpus,
                            compute=model_actors(n_actors))
        ds.write_parquet(str(data_dir))
    finally:
        data_ctx.enable_progress_bars = bars  # the process's other pipelines keep their setting


def _weight_report(df: pd.DataFrame, attrs: list[str]) -> dict:
    """Effective share of each attribute value in the weighted train set (what the GAN's D sees)."""
    train = df[(df.split == "train")]
    rep = {}
    for a in attrs:
        if a in train.columns:
            s = train.groupby(a).weight.sum()
            rep[f"weighted_share_{a}"] = (s / s.sum()).round(4).to_dict()
            u = train.groupby(a).size()
            rep[f"unweighted_share_{a}"] = (u / u.sum()).round(4).to_dict()
    return rep
