"""`fairray distill`: pairs (Ray Data) -> balanced selection -> student (Ray Train DDP) -> teacher vs student report,
in one MLflow run."""

from __future__ import annotations

import json
import time
from pathlib import Path

from torch import nn

from fairray.config import DistillConfig, GanConfig
from fairray.data.table import read_table
from fairray.errors import FairrayError
from fairray.labelers.registry import absolute_spec
from fairray.ray_env import init_ray
from fairray.stage import RunContext
from fairray.train.distill.evaluate import evaluate, side_by_side
from fairray.train.distill.fairness_loss import fairness_loss
from fairray.train.distill.pairs import SELECTION, make_pairs, select_pairs, selection_summary
from fairray.train.distill.student_loop import fit, load_student


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
    return auto_width(cfg.student_arch, tcfg, int(count_params(teacher) * cfg.max_param_ratio))


def target_cells(cfg: DistillConfig) -> list[str] | None:
    """The attributes whose cells the student is trained to draw equally: the sampler's balance_by, or with no
    sampler the fairness term's cells when its target is the default uniform one; None: the teacher's own
    distribution (the student's validity is then judged against the data unweighted, as the teacher's)."""
    if cfg.sampler != "none":
        return cfg.balance_by
    if cfg.lambda_fair > 0 and cfg.fair_target is None:
        return cfg.fair_by or cfg.balance_by
    return None


def run(cfg: DistillConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Pairs (Ray Data) -> balanced selection -> student (Ray Train DDP) -> teacher vs student report.

    Returns the metrics (student's `fairness_discrepancy_<attr>_<n>`, `fd_attrclf_<n>`, `share_*`; the teacher's
    under `teacher_*`; params, img/s) plus `checkpoint`."""
    from fairray.data.reference import heldout_rows, reference_images
    from fairray.labelers.registry import load_labeler
    from fairray.models.generator_io import load_generator
    from fairray.report import fig_png, shares_figure

    ctx, out = ctx or RunContext(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labeler = load_labeler(cfg.labeler, "cpu") if cfg.labeler else None
    check(cfg, labeler)
    if cfg.lambda_fair > 0:
        fairness_loss(labeler, cfg.fair_by or cfg.balance_by, cfg.fair_target, cfg.fair_loss)  # fail fast
    cfg = cfg.model_copy(update={"labeler": absolute_spec(cfg.labeler)})
    T, tcfg = load_generator(Path(cfg.teacher))
    width = student_width(cfg, T, tcfg)
    params = cfg.model_dump(mode="json") | {"student_width": width}
    with ctx.resumable_run(out, cfg, "distill", ctx.name or cfg.name, params) as mlrun:
        t0 = time.perf_counter()
        init_ray(cfg.ray.address)
        pairs = Path(cfg.pairs) if cfg.pairs else make_pairs(cfg, out)
        t_pairs = time.perf_counter() - t0
        labels = read_table(pairs, columns=["image_id", *cfg.balance_by])
        selection = select_pairs(labels, cfg.balance_by, cfg.sampler, cfg.seed)
        selection.to_parquet(out / SELECTION, index=False)
        summary = selection_summary(selection, labels, cfg.balance_by)
        t1 = time.perf_counter()
        ckpt = fit(cfg, pairs, out / SELECTION, out, width, mlrun.worker_spec(out))
        t_fit = time.perf_counter() - t1
        S, info = load_student(ckpt)
        dataset = cfg.reference or tcfg.dataset
        ref = held = held_w = None
        if dataset and Path(dataset).exists():
            ref = reference_images(Path(dataset), tcfg.resolution, cfg.eval_n)
            held, held_w = heldout_rows(Path(dataset), tcfg.resolution, cfg.eval_n, balance_by=target_cells(cfg))
        metrics, tables, t_img, s_img = evaluate(T, S, tcfg.z_dim, labeler, cfg, ref, held, held_w)
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
