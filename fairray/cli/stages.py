"""Commands that run one configured stage or workflow: each is "call the stage, print its result"."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fairray.cli.base import (
    VERBOSE,
    app,
    assign,
    console,
    debias_app,
    out_console,
    stage_command,
    warn_if_not_meaningful,
)
from fairray.cli.quiet import quiet_console
from fairray.config import (
    DEMO_PRESETS,
    AttrClfConfig,
    BalanceConfig,
    DemoConfig,
    DigaConfig,
    DistillConfig,
    FacegenConfig,
    FairClassifierConfig,
    GanConfig,
    LabelConfig,
    LatentDebiasConfig,
    ReweightConfig,
    SynthConfig,
    TuneCampaignConfig,
)
from fairray.errors import FairrayError
from fairray.stage import RunContext


@stage_command(app, "synth", SynthConfig)
def synth(cfg: SynthConfig, out: Path) -> None:
    """Render a biased SynthFaces dataset and its balanced reference set to sharded Parquet."""
    from fairray.data import synth_dataset

    manifest = synth_dataset.build(cfg, out)
    table = Table("part", "rows", title=f"SynthFaces bias={manifest['bias']} seed={cfg.seed}")
    for part, n in manifest["counts"].items():
        table.add_row(part, f"{n:,}")
    out_console.print(table)
    out_console.print(f"wrote {manifest['rows']:,} images in {manifest['shards']} shard(s) to {out}")


@stage_command(app, "read", None)
def read(
    options: dict, out: Path,
    fmt: Annotated[str, typer.Argument(help="celeba | fairface | utkface | aiface | folder")],
    root: Annotated[Path, typer.Argument(help="Local dataset root (nothing is downloaded).")],
) -> None:
    """Read a local real dataset into fairray's canonical Parquet table (labels checked, bad files kept as rows)."""
    from fairray.data.formats import read_dataset

    m = read_dataset(fmt, root, out, options)
    out_console.print(f"wrote {m['rows']:,} rows ({m.get('error_rows', 0)} with errors) to {out}")


@stage_command(app, "train-attrclf", AttrClfConfig)
def train_attrclf(cfg: AttrClfConfig, out: Path) -> None:
    """Train fairray's attribute classifier (the `attrclf` labeler) with Ray Train; calibrate and report."""
    from fairray.train import attrclf

    metrics = attrclf.run(cfg, out)
    table = Table("head", "test accuracy", "ECE (calibrated)", "ECE (raw)", title="attrclf on held-out test")
    for h in [k[4:-5] for k in metrics if k.startswith("acc_") and k.endswith("_test")]:
        table.add_row(h, f"{metrics[f'acc_{h}_test']:.3f}", f"{metrics[f'ece_{h}_test']:.3f}",
                      f"{metrics[f'ece_{h}_test_uncalibrated']:.3f}")
    out_console.print(table)
    out_console.print(f"labeler: {out / 'attrclf'}  (use --labeler attrclf:{out / 'attrclf'})")


@stage_command(app, "label", LabelConfig, sets=lambda dataset, labeler, reference: assign(
    dataset=dataset, labeler=labeler, reference=reference))
def label(
    cfg: LabelConfig, out: Path,
    dataset: Annotated[str, typer.Argument(help="Dataset directory to label.")],
    labeler: Annotated[str, typer.Option(help="attrclf:DIR | fairface:FILE[:race4] | clip:MODEL:FILE")],
    reference: Annotated[str | None, typer.Option(help="Dataset to compare distributions with.")] = None,
) -> None:
    """Label a dataset with a labeler actor pool (Ray Data; a one-actor job with no Ray running: in this process);
    rows in == rows out, bad files marked."""
    from fairray.data.pipeline import label as run_label
    from fairray.data.pipeline import label_metrics

    s = run_label(cfg, out, dashboard=False)  # Ray Data only: a dashboard would add ~4 s of start-up
    with RunContext().tracker_for(out, cfg).run("label", tags={"fairray.command": "label"}) as run:
        run.log_params({"dataset": cfg.dataset, "labeler": cfg.labeler, "reference": cfg.reference})
        run.log_metrics(label_metrics(s))
        for f in ("summary.json", "distributions.png"):
            run.log_artifact(out / f)
    table = Table("head", "labeled shares", "agreement with ground truth", title=f"{s['rows_out']:,} rows labeled")
    for h, e in s["heads"].items():
        shares = " ".join(f"{c}:{v:.3f}" for c, v in zip(e["classes"], e["shares"], strict=True))
        agree = e.get("agreement_with_ground_truth")
        table.add_row(h, shares, "-" if agree is None else f"{agree:.3f}")
    out_console.print(table)
    if s.get("labeler_domain_mismatch"):
        console.print(f"[yellow]warning:[/] the labeler was trained on {s['labeler_sources']} and labeled "
                      f"{s['data_sources']}: its labels may be near chance here (labeler_domain_mismatch in "
                      "summary.json and MLflow)", highlight=False)
    out_console.print(f"{s['errors']} row(s) with errors (see {out / 'errors.parquet'}); "
                      f"charts: {out / 'distributions.png'}; data: {out / 'data'}")


@stage_command(app, "balance", BalanceConfig, sets=lambda dataset, by, mode: assign(dataset=dataset, by=by,
                                                                                   mode=mode))
def balance(
    cfg: BalanceConfig, out: Path,
    dataset: Annotated[str, typer.Argument(help="Labeled dataset directory.")],
    by: Annotated[str, typer.Option(help="Attribute or intersection to balance, e.g. gender or tone4,gender.")],
    mode: Annotated[str, typer.Option(help="undersample (exact equal counts) or weights (1/(K*share)).")
                    ] = "undersample",
) -> None:
    """Balance a labeled set over an attribute or an intersection (Ray Data)."""
    from fairray.data.pipeline import balance as run_balance
    from fairray.ray_env import init_ray

    init_ray(cfg.ray.address, dashboard=False)  # Ray Data only: a dashboard would add ~4 s of start-up
    s = run_balance(cfg, out)
    table = Table("cell", "rows", "weighted share", title=f"{cfg.mode}: {s['rows_in']:,} -> {s['rows_out']:,} rows")
    for cell, e in s["cells"].items():
        table.add_row(cell, f"{e['rows']:,}", f"{e['weighted_share']:.3f}")
    out_console.print(table)
    out_console.print(f"data: {out / 'data'}")


@stage_command(debias_app, "ratio", ReweightConfig, out_name="debias-ratio",
               sets=lambda dataset: assign(dataset=dataset))
def debias_ratio(
    cfg: ReweightConfig, out: Path,
    dataset: Annotated[str, typer.Argument(help="Dataset with biased + reference rows (fairray synth, perc > 0).")],
) -> None:
    """fairgen: train + calibrate a reference-vs-biased classifier; write w = D/(1-D) as the weight column."""
    from fairray.debias import reweight

    r = reweight.run(cfg, out)
    out_console.print(f"density-ratio classifier: balanced acc {r['ratio_clf_balanced_acc_val']:.3f}, "
                      f"ECE {r['ratio_clf_ece_val_raw']:.3f} raw -> {r['ratio_clf_ece_val']:.3f} {cfg.calibration}; "
                      f"weights clipped at {r['clip_max']:.2f}")
    for k, v in r["weights"].items():
        out_console.print(f"  {k}: {v}")
    out_console.print(f"weighted data: {out / 'data'}  calibration plot: {out / 'ratio_calibration.png'}")


def _fair_table(title: str, rows: dict[str, dict], target: str, protected: str) -> Table:
    """Downstream metrics (value [95% bootstrap interval]) per method, one column each."""
    from fairray.metrics.downstream import metric_name

    table = Table("metric", *rows, title=title)
    for k in ("acc", "worst_group_acc", "ap", "deo", "ba", "kl", "dp_gap", "eo_gap"):
        name = metric_name(k, target, protected)
        table.add_row(name, *(f"{m[name]:.3f} [{m.get(name + '_lo', float('nan')):.3f}, "
                              f"{m.get(name + '_hi', float('nan')):.3f}]" for m in rows.values()))
    return table


@stage_command(app, "train-classifier", FairClassifierConfig)
def train_classifier(cfg: FairClassifierConfig, out: Path) -> None:
    """Train the downstream target classifier (Ray Train) and report AP/DEO/BA/KL, acc/worst-group/DP/EO."""
    from fairray.train import classifier

    m = classifier.run(cfg, out, RunContext(progress=True))
    out_console.print(_fair_table(f"{cfg.target} classifier, protected {cfg.protected} ({int(m['n_eval'])} test rows)",
                                  {"classifier": m}, cfg.target, cfg.protected))


@stage_command(debias_app, "latent", LatentDebiasConfig, out_name="debias-latent")
def debias_latent(cfg: LatentDebiasConfig, out: Path) -> None:
    """GAN Data Debiasing: complementary latent pairs (target kept, protected flipped) + fair classifier."""
    from fairray.debias import latent

    m = latent.run(cfg, out, RunContext(progress=True))
    out_console.print(_fair_table("classifier on real + complementary pairs", {"latent": m},
                                  cfg.classifier.target, cfg.classifier.protected))
    out_console.print(f"pairs: target kept {m['pairs_target_kept']:.3f}, protected flipped "
                      f"{m['pairs_protected_flipped']:.3f} (labeler-measured)")


@stage_command(debias_app, "diga", DigaConfig, out_name="debias-diga")
def debias_diga(
    cfg: DigaConfig, out: Path,
    grid: Annotated[bool, typer.Option("--grid", help="Train one classifier per (c, s) of coefficients x strengths.")
                    ] = False,
) -> None:
    """DiGA: invert, find n = normalise(w_a - c w_b), edit the biased training set, train the fair classifier."""
    from fairray.debias import directions

    t, p = cfg.classifier.target, cfg.classifier.protected
    if grid:
        r = directions.grid(cfg, out)
        out_console.print(_fair_table("DiGA (c, s) grid", {f"c={m['c']:g} s={m['s']:g}": m for m in r["points"]}, t, p))
        out_console.print(f"best by {r['select']}: c={r['best']['c']:g} s={r['best']['s']:g}")
        return
    m = directions.run(cfg, out, RunContext(progress=True))
    out_console.print(_fair_table(f"DiGA c={m['c']:g} s={m['s']:g}", {"diga": m}, t, p))
    if "edits_used" in m:
        out_console.print(f"edits: target kept {m['edits_target_kept']:.3f}, protected flipped "
                          f"{m['edits_protected_flipped']:.3f} (labeler-measured); {m['edits_used']:,} added "
                          f"(verify={cfg.verify})")


@stage_command(app, "train-gan", GanConfig, sets=lambda labeler: assign(eval_labeler=labeler))
def train_gan(
    cfg: GanConfig, out: Path,
    labeler: Annotated[str | None, typer.Option(help="Labeler for fairness metrics, e.g. attrclf:DIR "
                                                     "(sets eval_labeler).")] = None,
) -> None:
    """Train a GAN with Ray Train DDP (optionally fairgen-reweighted); re-run with the same --out and name resumes."""
    from fairray.train import gan

    m = gan.run(cfg, out)
    for k, v in m.items():
        if not k.endswith(("_lo", "_hi")):
            out_console.print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    out_console.print(f"samples: {out / (cfg.name + '_grid.png')}  metrics: {out / (cfg.name + '_metrics.json')}")
    warn_if_not_meaningful(m)


@stage_command(app, "distill", DistillConfig)
def distill(cfg: DistillConfig, out: Path) -> None:
    """Distil a teacher GAN into a small fair student (Ray Data pairs, balanced sampler, Ray Train DDP, L_fair)."""
    from fairray.train import distill as run_distill

    m = run_distill.run(cfg, out)
    table = Table("metric", "teacher", "student", title=f"{cfg.name}: teacher vs student ({cfg.eval_n:,} samples, "
                                                        "same latents)")
    for k in sorted(k for k in m if k.startswith("teacher_") and k.removeprefix("teacher_") in m):
        s = k.removeprefix("teacher_")
        table.add_row(s, f"{m[k]:.4f}", f"{m[s]:.4f}")
    out_console.print(table)
    out_console.print(f"student: {int(m['student_params']):,} params ({m['param_ratio']:.2f} of the teacher), "
                      f"checkpoint {m['checkpoint']}")
    out_console.print(f"plots: {out / (cfg.name + '_shares.png')}  {out / (cfg.name + '_grids.png')}")


@stage_command(app, "facegen", FacegenConfig)
def facegen(cfg: FacegenConfig, out: Path) -> None:
    """FairFace-Generator workflow: train a DCGAN-64, generate N faces, annotate both sides, compare demographics."""
    from fairray import facegen as workflow

    m = workflow.run(cfg, out)
    for name, t in m["tables"].items():
        key = name.replace(" x ", "_x_")
        table = Table("cell", "training", "generated", "shift (pts)",
                      title=f"{name}: TV {m['tv_' + key]:.3f}, chi-square p {m['chi2_p_' + key]:.3g}")
        for cell, r in t.iterrows():
            table.add_row(cell, f"{r.training:.3f}", f"{r.generated:.3f}", f"{r.shift_pts:+.1f}")
        out_console.print(table)
    if len(m["snapshots"]) > 1:
        attrs = list(m["snapshots"][0]["max_abs_shift_pts"])
        table = Table("snapshot kimg", "faces", *attrs, title="largest shift (pts) per snapshot; the tables above pool "
                      "them")
        for snap in m["snapshots"]:
            table.add_row(f"{snap['kimg']:.0f}", str(snap["n"]),
                          *(f"{snap['max_abs_shift_pts'][a]:.1f}" for a in attrs))
        out_console.print(table)
    out_console.print(f"charts: {out / 'facegen_shares.png'}  {out / 'facegen_skin_tone.png'}; "
                      f"numbers: {out / 'facegen.json'}")


def _check_space(space: Path, space_set: list[str] | None) -> list[str]:
    """A bad space fails here, before Ray or any trial starts (and before --dry-run prints anything)."""
    from fairray.tune.spaces import load_space

    load_space(space, space_set)
    return []


def _describe_space(space: Path, space_set: list[str] | None) -> str:
    from fairray.tune.spaces import describe, load_space

    return f"# {describe(load_space(space, space_set))}"


@stage_command(app, "tune", TuneCampaignConfig, sets=_check_space, note=_describe_space)
def tune_cmd(
    cfg: TuneCampaignConfig, out: Path,
    space: Annotated[Path, typer.Argument(help="Search space YAML (tune_spaces/*.yaml, or its stem).")],
    space_set: Annotated[list[str] | None, typer.Option(
        "--space-set", help="Override a space key: params.alpha.values=[0,1] (repeatable).")] = None,
    config: Path | None = None, set_: list[str] | None = None,
) -> None:
    """Ray Tune campaign over a space (MLflow parent + child runs); re-running the same command continues it."""
    from fairray.tune.campaign import run_campaign
    from fairray.tune.spaces import load_space

    # the campaign records config and --sets as given: each trial's reproduce command repeats them
    res = run_campaign(load_space(space, space_set), cfg, out, config, set_, space_set,
                       say=lambda s: console.print(f"[bold cyan]{s}[/]"))
    (f_name, _), (q_name, _) = res.metrics["fairness"], res.metrics["quality"]
    params = [c for c in res.table.columns if c.startswith("param.")]
    table = Table("trial", *[c.removeprefix("param.") for c in params], f_name, q_name, "s", "Pareto",
                  title=f"campaign {res.name}" + (" (continued)" if res.restored else ""))
    for _, r in res.table.iterrows():
        table.add_row(r.trial_id, *[str(r[c]) for c in params],
                      *[("-" if r[k] is None or r[k] != r[k] else f"{r[k]:.4f}") for k in (f_name, q_name)],
                      f"{(r.seconds or 0):.0f}", "*" if r.get("pareto") is True else "")
    out_console.print(table)
    out_console.print(f"MLflow: {res.tracking_uri} (experiment '{res.experiment}', parent run {res.parent_run_id}); "
                      f"compare: fairray compare {out} --experiment {res.experiment}")


def _demo_sets(quick: bool, full: bool, device: str) -> list[str]:
    if quick and full:
        raise FairrayError("--quick and --full exclude each other")
    preset = DEMO_PRESETS["quick"] if quick else DEMO_PRESETS["full"] if full else []
    return [*preset, *(f"{k}.ray.device={device}" for k in ("attrclf", "gan"))]


@stage_command(app, "demo", DemoConfig, sets=_demo_sets)
def demo(
    cfg: DemoConfig, out: Path,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller data and shorter GANs (about 2 minutes).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Bigger data and longer GANs (tens of minutes).")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Run the end-to-end tour on SynthFaces and write report.html (local Ray, local MLflow)."""
    from fairray.demo import run_demo

    t0 = time.perf_counter()
    out = out.resolve()
    with quiet_console(out / "logs", (console, out_console), enabled=not VERBOSE["on"]) as log:
        if log is not None:
            console.print(f"[dim]Ray, Tune and MLflow output: {log} (-v shows it here)[/]", highlight=False,
                          soft_wrap=True)  # a path broken over two lines cannot be copied
        res = run_demo(cfg, out, say=lambda s: console.print(f"[bold cyan]{s}[/]" if s.startswith("[") else s,
                                                             highlight=False))
    out_console.print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    out_console.print(f"report:  {res.report.resolve()}")
    out_console.print(f"MLflow:  {res.tracking_uri} (experiment '{res.experiment}')")
    if res.tracking_uri.startswith("sqlite"):
        out_console.print(f"open it: mlflow ui --backend-store-uri {res.tracking_uri}")
