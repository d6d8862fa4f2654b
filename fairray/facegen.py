"""FairFace-Generator / AI-Face workflow: train a DCGAN-64 on a labeled face set, generate N faces, annotate the
training and the generated faces with the same labeler (Ray Data actor pool), and compare their demographics.

Both sides are measured by the same labeler, so a shift is the generator's, not the annotator's; where the training
set has exact labels (SynthFaces) the labeler's own error on it is reported beside. Every stage reuses its finished
output on a re-run with the same --out (dataset, labeler, GAN checkpoint, samples, labels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chisquare

from fairray.config import FacegenConfig, LabelConfig
from fairray.data.summary import value_counts
from fairray.data.table import read_table
from fairray.errors import FairrayError
from fairray.stage import RunContext

GROUPS = ("training", "generated")


def shift_tables(train: pd.DataFrame, gen: pd.DataFrame, attrs: list[str], intersections: list[list[str]]
                 ) -> dict[str, pd.DataFrame]:
    """Per attribute / intersection: counts and shares of training and generated faces, shift in points."""
    tables = {}
    for keys in [[a] for a in attrs] + intersections:
        ct, cg = value_counts(train, keys), value_counts(gen, keys)
        t = pd.DataFrame({"training_n": ct, "generated_n": cg,
                          "training": ct / max(ct.sum(), 1), "generated": cg / max(cg.sum(), 1)})
        t["shift_pts"] = 100 * (t.generated - t.training)
        tables[" x ".join(keys)] = t
    return tables


def divergence(table: pd.DataFrame) -> dict[str, float]:
    """TV distance between the share vectors and a chi-square goodness-of-fit test of the generated counts
    against the training shares (cells the training set never has are left out of the test)."""
    tv = 0.5 * float((table.training - table.generated).abs().sum())
    keep = table.training > 0
    n = table.generated_n[keep].sum()
    if keep.sum() < 2 or n == 0:
        return {"tv": tv, "chi2": float("nan"), "chi2_p": float("nan")}
    expected = table.training[keep] / table.training[keep].sum() * n
    stat, p = chisquare(table.generated_n[keep].to_numpy(float), expected.to_numpy(float))
    return {"tv": tv, "chi2": float(stat), "chi2_p": float(p)}


def double_bars(tables: dict[str, pd.DataFrame], title: str):
    """AI-Face style: training vs generated share per cell, with the shift in points over each pair."""
    from fairray.report import finish_panels, panel_grid, share_panel

    fig, axes = panel_grid(len(tables), 2, (6.2, 3.2))
    for ax, (name, t) in zip(axes.flat, tables.items(), strict=False):
        x = np.arange(len(t))
        ax.bar(x - 0.2, t.training, 0.4, label="training", color="#4c72b0")
        ax.bar(x + 0.2, t.generated, 0.4, label="generated", color="#dd8452")
        for xi, (hi, s) in enumerate(zip(np.maximum(t.training, t.generated), t.shift_pts, strict=True)):
            ax.text(xi, hi + 0.01, f"{s:+.1f}", ha="center", fontsize=7, color="#444")
        labels = [i.replace(" & ", "\n").split("=")[-1] if " & " not in i else
                  "\n".join(p.split("=")[-1] for p in i.split(" & ")) for i in t.index]
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylim(0, float(np.maximum(t.training, t.generated).max()) * 1.2 + 0.03)
        share_panel(ax, name)
    return finish_panels(fig, axes, len(tables), title)


def _dataset(cfg: FacegenConfig, out: Path, progress: bool) -> Path:
    from fairray.data import synth_dataset

    if cfg.dataset is not None:
        if not Path(cfg.dataset).is_dir():
            raise FairrayError(f"dataset {cfg.dataset} is not a directory")
        return Path(cfg.dataset)
    return synth_dataset.ensure(cfg.synth, out / "data", progress)


def _labeler(cfg: FacegenConfig, out: Path, progress: bool) -> str:
    from fairray.train import attrclf

    if cfg.labeler is not None:
        return cfg.labeler
    clf = out / "attrclf"
    if not (clf / "attrclf" / "metrics.json").is_file():
        attrclf.run(cfg.attrclf, clf, RunContext(progress=progress))
    return f"attrclf:{(clf / 'attrclf').resolve()}"


def _generator(cfg: FacegenConfig, dataset: Path, out: Path, ctx: RunContext) -> Path:
    """cfg.generator, or the GAN stage run under the facegen run (a re-run continues its Train run)."""
    from fairray.train import gan

    if cfg.generator is not None:
        return Path(cfg.generator)
    gcfg = cfg.gan.model_copy(update={"dataset": str(dataset)})
    return Path(gan.run(gcfg, out, ctx)["checkpoint"])


def _snapshots(ckpt: Path, k: int) -> list[Path]:
    """The last k complete checkpoints of the run that ended with `ckpt`, oldest first."""
    from fairray.train.checkpoint import complete_checkpoints

    if k == 1:
        return [ckpt]
    found = complete_checkpoints(ckpt.parent, k, until=ckpt)
    if len(found) < k:
        raise FairrayError(f"snapshots={k} needs {k} checkpoints of the run, {ckpt.parent} holds {len(found)}: train "
                           f"with --set gan.keep={k} and a gan.snapshot_ticks that writes {k} snapshots by gan.kimg")
    return found


def _labeled(dataset: Path, labeler: str, out: Path, ray_cfg) -> pd.DataFrame:
    from fairray.data.pipeline import label

    if not (out / "summary.json").is_file():
        label(LabelConfig(dataset=str(dataset), labeler=labeler, ray=ray_cfg), out)
    return read_table(out)


def run(cfg: FacegenConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Dataset -> labeler -> DCGAN -> N samples -> labels for both -> shift tables, charts, MLflow (a run named
    ctx.name, default "facegen", under ctx.parent)."""
    from fairray.generate import generate
    from fairray.labelers.registry import load_labeler
    from fairray.ray_env import init_ray
    from fairray.report import fig_png
    from fairray.train.checkpoint import load_state

    ctx, out = ctx or RunContext(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _dataset(cfg, out, ctx.progress)
    labeler = _labeler(cfg, out, ctx.progress)
    heads = {h.name for h in load_labeler(labeler, "cpu").heads}
    attrs = [a for a in cfg.attributes if a in heads]
    inter = [i for i in cfg.intersections if all(a in heads for a in i)]
    if not attrs:
        raise FairrayError(f"the labeler has none of the attributes {cfg.attributes}; heads: {sorted(heads)}")
    tracker = ctx.tracker_for(out, cfg)
    init_ray(cfg.gan.ray.address)
    with tracker.run(ctx.name or "facegen", parent=ctx.parent, tags={"fairray.command": "facegen", **ctx.tags}
                     ) as parent:
        parent.log_params({"n": cfg.n, "labeler": labeler, "dataset": str(dataset), "attributes": attrs})
        ckpt = _generator(cfg, dataset, out, RunContext(tracker=tracker, parent=parent, progress=ctx.progress))
        train = _labeled(dataset, labeler, out / "training_labeled", cfg.gan.ray)
        train = train[train.error.isna() & (train.split == "train")]
        snaps = _snapshots(ckpt, cfg.snapshots)
        parts, per_snapshot = [], []
        for snap, n in zip(snaps, np.diff(np.linspace(0, cfg.n, len(snaps) + 1).round().astype(int)), strict=True):
            where = out if len(snaps) == 1 else out / "snapshots" / snap.name
            generate(snap, int(n), where / "generated", seed=cfg.seed, device=cfg.gan.ray.device,
                     address=cfg.gan.ray.address)
            gen = _labeled(where / "generated", labeler, where / "generated_labeled", cfg.gan.ray)
            parts.append(gen[gen.error.isna()])
            state = load_state(snap) or {}
            per_snapshot.append({"checkpoint": str(snap), "kimg": state.get("nimg", float("nan")) / 1000, "n": int(n),
                                 "max_abs_shift_pts": {
                k: float(t.shift_pts.abs().max()) for k, t in shift_tables(train, parts[-1], attrs, []).items()}})
        gen = pd.concat(parts, ignore_index=True)
        tables = shift_tables(train, gen, attrs, inter)
        metrics: dict[str, float] = {"n_training": float(len(train)), "n_generated": float(len(gen))}
        for name, t in tables.items():
            key = name.replace(" x ", "_x_")
            d = divergence(t)
            metrics |= {f"tv_{key}": d["tv"], f"chi2_{key}": d["chi2"], f"chi2_p_{key}": d["chi2_p"],
                        f"max_abs_shift_pts_{key}": float(t.shift_pts.abs().max())}
            true_col = f"{name}_true"
            if " x " not in name and true_col in train:  # the labeler's own error on the training set
                exact = value_counts(train.rename(columns={name: "_pred", true_col: name}), [name])
                metrics[f"labeler_share_error_pts_{key}"] = float(100 * (t.training - exact / exact.sum()).abs().max())
        title = f"training ({len(train):,}) vs generated ({len(gen):,}) faces, labeler {labeler.split(':')[0]}"
        marginal = {k: v for k, v in tables.items() if " x " not in k}
        fig_png(double_bars(marginal, title), out / "facegen_shares.png")
        if inter:
            fig_png(double_bars({k: v for k, v in tables.items() if " x " in k}, "intersections: " + title),
                    out / "facegen_intersections.png")
        tone = next((a for a in ("skin_tone10", "tone4") if a in tables), None)
        if tone:
            fig_png(double_bars({tone: tables[tone]}, f"skin tone: {title}"), out / "facegen_skin_tone.png")
        report = {"metrics": metrics, "checkpoint": str(ckpt), "labeler": labeler, "snapshots": per_snapshot,
                  "tables": {k: v.reset_index(names="cell").to_dict("records") for k, v in tables.items()}}
        (out / "facegen.json").write_text(json.dumps(report, indent=2, default=float))
        parent.log_metrics(metrics)
        for f in ("facegen_shares.png", "facegen_intersections.png", "facegen_skin_tone.png", "facegen.json"):
            if (out / f).is_file():
                parent.log_artifact(out / f, "facegen")
    return metrics | {"checkpoint": str(ckpt), "tables": tables, "snapshots": per_snapshot}
