"""The `fairray` command. User mistakes end as one red line and exit code 2, never a traceback."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from fairray.config import (
    AttrClfConfig,
    BalanceConfig,
    Cfg,
    DemoConfig,
    GanConfig,
    LabelConfig,
    ReweightConfig,
    SynthConfig,
    dump_config,
    load_config,
)
from fairray.errors import FairrayError

app = typer.Typer(help="fairray: fair generative face data on Ray, tracked in MLflow.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console(stderr=True)
out_console = Console(soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config key: a.b=value (repeatable).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default ./runs/<command>-<time>).")]

F = TypeVar("F", bound=Callable)
C = TypeVar("C", bound=Cfg)


def user_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FairrayError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def default_out(command: str, out: Path | None) -> Path:
    return out if out is not None else Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve(cls: type[C], config: Path | None, sets: list[str] | None, dry_run: bool) -> C | None:
    cfg = load_config(cls, config, sets)
    if dry_run:
        out_console.print(dump_config(cfg), end="", highlight=False, markup=False)
        return None
    return cfg


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
@user_errors
def synth(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None) -> None:
    """Render a biased SynthFaces dataset and its balanced reference set to sharded Parquet."""
    from fairray.data import synth_dataset

    cfg = resolve(SynthConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("synth", out)
    manifest = synth_dataset.build(cfg, out)
    table = Table("part", "rows", title=f"SynthFaces bias={manifest['bias']} seed={cfg.seed}")
    for part, n in manifest["counts"].items():
        table.add_row(part, f"{n:,}")
    out_console.print(table)
    out_console.print(f"wrote {manifest['rows']:,} images in {manifest['shards']} shard(s) to {out}")


@app.command()
@user_errors
def info(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (or a .parquet file).")],
    by: Annotated[str, typer.Option(help="Column to compare groups by.")] = "subset",
    split: Annotated[str | None, typer.Option(help="Only this split (train/val/test).")] = None,
    intersect: Annotated[list[str] | None, typer.Option(
        help="Intersection to count, e.g. 'gender,tone4' (repeatable).")] = None,
    out: OutOpt = None,
) -> None:
    """Print counts per attribute and per intersection, and write a share bar chart PNG."""
    from fairray.data.summary import count_tables, share_tables
    from fairray.data.table import attribute_columns, read_manifest, read_table
    from fairray.report import fig_png, shares_figure

    attrs = attribute_columns(dataset)
    df = read_table(dataset, columns=[c for c in dict.fromkeys([*attrs, by, "split"])])
    if split is not None:
        if split not in set(df.split):
            raise FairrayError(f"no rows with split={split!r}; splits: {sorted(set(df.split))}")
        df = df[df.split == split]
    manifest = read_manifest(dataset)
    inter = [s.split(",") for s in intersect] if intersect else (
        [manifest["bias_attributes"]] if len(manifest.get("bias_attributes", [])) > 1 else [["gender", "tone4"]])
    for i in inter:
        missing = [a for a in i if a not in df.columns]
        if missing:
            raise FairrayError(f"--intersect: unknown column(s) {missing}; columns: {attrs}")
    shown = [a for a in attrs if a not in ("skin_tone10",)]
    for name, t in count_tables(df, shown, inter, group=by).items():
        table = Table(name, *map(str, t.columns), title=None, show_edge=False)
        for idx, row in t.iterrows():
            table.add_row(idx, *(f"{int(v):,}" for v in row))
        out_console.print(table)
    out = default_out("info", out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{Path(dataset).name}: shares by {by}" + (f" ({split})" if split else "")
    png = out / "attribute_shares.png"
    fig_png(shares_figure(share_tables(df, shown, inter, group=by), title), png)
    out_console.print(f"chart: {png}")


@app.command("read")
@user_errors
def read(
    fmt: Annotated[str, typer.Argument(help="celeba | fairface | utkface | aiface | folder")],
    root: Annotated[Path, typer.Argument(help="Local dataset root (nothing is downloaded).")],
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """Read a local real dataset into fairray's canonical Parquet table (labels checked, bad files kept as rows)."""
    from fairray.config import apply_override, read_yaml
    from fairray.data.formats import read_dataset

    options = read_yaml(config) if config is not None else {}
    for o in set_ or []:
        apply_override(options, o)
    if dry_run:
        out_console.print(options, highlight=False)
        return
    out = default_out("read", out)
    m = read_dataset(fmt, root, out, options)
    out_console.print(f"wrote {m['rows']:,} rows ({m.get('error_rows', 0)} with errors) to {out}")


@app.command("train-attrclf")
@user_errors
def train_attrclf(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False,
                  out: OutOpt = None) -> None:
    """Train fairray's attribute classifier (the `attrclf` labeler) with Ray Train; calibrate and report."""
    from fairray.train import attrclf

    cfg = resolve(AttrClfConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("train-attrclf", out)
    metrics = attrclf.run(cfg, out)
    table = Table("head", "test accuracy", "ECE (calibrated)", "ECE (raw)", title="attrclf on held-out test")
    for h in cfg.heads:
        table.add_row(h, f"{metrics[f'acc_{h}_test']:.3f}", f"{metrics[f'ece_{h}_test']:.3f}",
                      f"{metrics[f'ece_{h}_test_uncalibrated']:.3f}")
    out_console.print(table)
    out_console.print(f"labeler: {out / 'attrclf'}  (use --labeler attrclf:{out / 'attrclf'})")


@app.command()
@user_errors
def label(
    dataset: Annotated[str, typer.Argument(help="Dataset directory to label.")],
    labeler: Annotated[str, typer.Option(help="attrclf:DIR | fairface:FILE[:race4] | clip:MODEL:FILE")],
    reference: Annotated[str | None, typer.Option(help="Dataset to compare distributions with.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """Label a dataset with a labeler actor pool (Ray Data); rows in == rows out, bad files marked."""
    from fairray.data.pipeline import label as run_label

    extra = [f"dataset={dataset}", f"labeler={labeler}"] + ([f"reference={reference}"] if reference else [])
    cfg = resolve(LabelConfig, config, extra + (set_ or []), dry_run)
    if cfg is None:
        return
    out = default_out("label", out)
    s = run_label(cfg, out)
    table = Table("head", "labeled shares", "agreement with ground truth", title=f"{s['rows_out']:,} rows labeled")
    for h, e in s["heads"].items():
        shares = " ".join(f"{c}:{v:.3f}" for c, v in zip(e["classes"], e["shares"], strict=True))
        agree = e.get("agreement_with_ground_truth")
        table.add_row(h, shares, "-" if agree is None else f"{agree:.3f}")
    out_console.print(table)
    out_console.print(f"{s['errors']} row(s) with errors (see {out / 'errors.parquet'}); "
                      f"charts: {out / 'distributions.png'}; data: {out / 'data'}")


@app.command()
@user_errors
def balance(
    dataset: Annotated[str, typer.Argument(help="Labeled dataset directory.")],
    by: Annotated[str, typer.Option(help="Attribute or intersection to balance, e.g. gender or tone4,gender.")],
    mode: Annotated[str, typer.Option(help="undersample (exact equal counts) or weights (1/(K*share)).")
                    ] = "undersample",
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """Balance a labeled set over an attribute or an intersection (Ray Data)."""
    from fairray.data.pipeline import balance as run_balance

    cfg = resolve(BalanceConfig, config, [f"dataset={dataset}", f"by={by}", f"mode={mode}"] + (set_ or []),
                  dry_run)
    if cfg is None:
        return
    out = default_out("balance", out)
    s = run_balance(cfg, out)
    table = Table("cell", "rows", "weighted share", title=f"{cfg.mode}: {s['rows_in']:,} -> {s['rows_out']:,} rows")
    for cell, e in s["cells"].items():
        table.add_row(cell, f"{e['rows']:,}", f"{e['weighted_share']:.3f}")
    out_console.print(table)
    out_console.print(f"data: {out / 'data'}")


debias_app = typer.Typer(help="Debiasing methods: fairgen density-ratio weights, ...", no_args_is_help=True)
app.add_typer(debias_app, name="debias")


@debias_app.command("ratio")
@user_errors
def debias_ratio(
    dataset: Annotated[str, typer.Argument(help="Dataset with biased + reference rows (fairray synth, perc > 0).")],
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """fairgen: train + calibrate a reference-vs-biased classifier; write w = D/(1-D) as the weight column."""
    from fairray.debias import reweight

    cfg = resolve(ReweightConfig, config, [f"dataset={dataset}"] + (set_ or []), dry_run)
    if cfg is None:
        return
    out = default_out("debias-ratio", out)
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


@app.command("train-classifier")
@user_errors
def train_classifier(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False,
                     out: OutOpt = None) -> None:
    """Train the downstream target classifier (Ray Train) and report AP/DEO/BA/KL, acc/worst-group/DP/EO."""
    from fairray.config import FairClassifierConfig
    from fairray.train import classifier

    cfg = resolve(FairClassifierConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("train-classifier", out)
    m = classifier.run(cfg, out, progress=True)
    out_console.print(_fair_table(f"{cfg.target} classifier, protected {cfg.protected} ({int(m['n_eval'])} test rows)",
                                  {"classifier": m}, cfg.target, cfg.protected))


@debias_app.command("latent")
@user_errors
def debias_latent(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False,
                  out: OutOpt = None) -> None:
    """GAN Data Debiasing: complementary latent pairs (target kept, protected flipped) + fair classifier."""
    from fairray.config import LatentDebiasConfig
    from fairray.debias import latent

    cfg = resolve(LatentDebiasConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("debias-latent", out)
    m = latent.run(cfg, out, progress=True)
    out_console.print(_fair_table("classifier on real + complementary pairs", {"latent": m},
                                  cfg.classifier.target, cfg.classifier.protected))
    out_console.print(f"pairs: target kept {m['pairs_target_kept']:.3f}, protected flipped "
                      f"{m['pairs_protected_flipped']:.3f} (labeler-measured)")


@debias_app.command("diga")
@user_errors
def debias_diga(
    grid: Annotated[bool, typer.Option("--grid", help="Train one classifier per (c, s) of coefficients x strengths.")
                    ] = False,
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """DiGA: invert, find n = normalise(w_a - c w_b), edit the biased training set, train the fair classifier."""
    from fairray.config import DigaConfig
    from fairray.debias import directions

    cfg = resolve(DigaConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("debias-diga", out)
    t, p = cfg.classifier.target, cfg.classifier.protected
    if grid:
        r = directions.grid(cfg, out)
        out_console.print(_fair_table("DiGA (c, s) grid", {f"c={m['c']:g} s={m['s']:g}": m for m in r["points"]}, t, p))
        out_console.print(f"best by {r['select']}: c={r['best']['c']:g} s={r['best']['s']:g}")
        return
    m = directions.run(cfg, out, progress=True)
    out_console.print(_fair_table(f"DiGA c={m['c']:g} s={m['s']:g}", {"diga": m}, t, p))


@app.command("train-gan")
@user_errors
def train_gan(
    labeler: Annotated[str | None, typer.Option(help="Labeler for fairness metrics, e.g. attrclf:DIR.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """Train a GAN with Ray Train DDP (optionally fairgen-reweighted); re-run with the same --out and name resumes."""
    from fairray.train import gan

    cfg = resolve(GanConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("train-gan", out)
    m = gan.run(cfg, out, labeler)
    for k, v in m.items():
        if not k.endswith(("_lo", "_hi")):
            out_console.print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    out_console.print(f"samples: {out / (cfg.name + '_grid.png')}")


@app.command()
@user_errors
def distill(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None) -> None:
    """Distil a teacher GAN into a small fair student (Ray Data pairs, balanced sampler, Ray Train DDP, L_fair)."""
    from fairray.config import DistillConfig
    from fairray.train import distill as run_distill

    cfg = resolve(DistillConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("distill", out)
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


@app.command()
@user_errors
def facegen(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None) -> None:
    """FairFace-Generator workflow: train a DCGAN-64, generate N faces, annotate both sides, compare demographics."""
    from fairray import facegen as workflow
    from fairray.config import FacegenConfig

    cfg = resolve(FacegenConfig, config, set_, dry_run)
    if cfg is None:
        return
    out = default_out("facegen", out)
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


@app.command()
@user_errors
def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A GAN checkpoint directory (ray_results/<name>/checkpoint_*).")],
    n: Annotated[int, typer.Option(help="Number of samples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Latent seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    actors: Annotated[int, typer.Option(help="Generator actors (one GPU each with --device cuda).")] = 1,
    address: Annotated[str | None, typer.Option(help="Ray address (default $RAY_ADDRESS or a local Ray).")] = None,
    out: OutOpt = None,
) -> None:
    """Sample N faces from a checkpoint through Ray Data actors into the canonical table (with latents).

    Re-running with the same --out, checkpoint, n and seed reuses the finished output."""
    from fairray.generate import generate as run_generate

    if n < 1:
        raise FairrayError("--n must be at least 1")
    out = default_out("generate", out)
    if actors < 1:
        raise FairrayError("--actors must be at least 1")
    run_generate(checkpoint, n, out, seed=seed, device=device, actors=actors, address=address)
    out_console.print(f"wrote {n:,} samples to {out / 'data'}; label them with `fairray label {out} --labeler ...`")


@app.command()
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A GAN checkpoint directory.")],
    labeler: Annotated[str, typer.Option(help="Labeler for the fairness metrics, e.g. attrclf:DIR.")],
    reference: Annotated[Path | None, typer.Option(help="Dataset whose reference rows are the target (fd_attrclf).")
                         ] = None,
    attributes: Annotated[str, typer.Option(help="Comma-separated heads to measure.")] = "gender",
    n: Annotated[int, typer.Option(help="Samples.")] = 10_000,
    repeats: Annotated[int, typer.Option(help="Disjoint sets to average the discrepancy over (fairgen: 10).")] = 1,
    seed: Annotated[int, typer.Option(help="Latent seed.")] = 0,
) -> None:
    """Fairness (discrepancy, KL, shares with bootstrap intervals) and fd_attrclf of a generator's samples."""
    from fairray.labelers.registry import load_labeler
    from fairray.metrics.generated import evaluate_samples, sample
    from fairray.train.gan import load_generator, reference_images

    G, cfg = load_generator(checkpoint)
    lab = load_labeler(labeler)
    missing = [a for a in attributes.split(",") if a not in {h.name for h in lab.heads}]
    if missing:
        raise FairrayError(f"labeler has no head(s) {missing}; heads: {[h.name for h in lab.heads]}")
    images, _ = sample(G, n, cfg.z_dim, seed)
    ref = reference_images(reference, cfg.resolution, n) if reference else None
    m = evaluate_samples(images, lab, attributes.split(","), reference=ref, repeats=repeats)
    table = Table("metric", "value", title=f"{cfg.name}: {n:,} samples")
    for k, v in m.items():
        table.add_row(k, f"{v:.4f}")
    out_console.print(table)


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path | None, typer.Argument(help="A fairray run dir with mlflow.db (e.g. runs/demo-<time>).")
                       ] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this MLflow experiment.")] = None,
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default RUN_DIR/mlflow.db, else "
                                                 "$MLFLOW_TRACKING_URI).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write (default RUN_DIR/report.html, "
                                                                  "else runs/report-<time>.html).")] = None,
) -> None:
    """Build the self-contained HTML fairness report from MLflow runs (a run dir, an experiment, any store)."""
    import os

    from fairray.report_runs import build, store_uri

    if run_dir is None and experiment is None:
        raise FairrayError("give a RUN_DIR or --experiment NAME (with --uri or $MLFLOW_TRACKING_URI)")
    if run_dir is not None and not Path(run_dir).is_dir():
        raise FairrayError(f"{run_dir} is not a directory")
    uri = uri or (store_uri(run_dir) if run_dir is not None else os.environ.get("MLFLOW_TRACKING_URI"))
    if uri is None:
        raise FairrayError("--experiment needs --uri or $MLFLOW_TRACKING_URI (where the runs are)")
    out = out or (Path(run_dir) / "report.html" if run_dir is not None
                  else Path("runs") / f"report-{time.strftime('%Y%m%d-%H%M%S')}.html")
    path = build(uri, out, experiment)
    out_console.print(f"report: {path.resolve()}")


@app.command("tune")
@user_errors
def tune_cmd(
    space: Annotated[Path, typer.Argument(help="Search space YAML (tune_spaces/*.yaml, or its stem).")],
    space_set: Annotated[list[str] | None, typer.Option(
        "--space-set", help="Override a space key: params.alpha.values=[0,1] (repeatable).")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """Ray Tune campaign over a space (MLflow parent + child runs); re-running the same command continues it."""
    from fairray.config import TuneCampaignConfig
    from fairray.tune.campaign import run_campaign
    from fairray.tune.spaces import describe, load_space

    sp = load_space(space, space_set)  # a bad space fails here, before Ray or any trial starts
    cfg = resolve(TuneCampaignConfig, config, set_, dry_run)
    if cfg is None:
        out_console.print(f"# {describe(sp)}", highlight=False, markup=False)
        return
    out = default_out("tune", out)
    res = run_campaign(sp, cfg, out, config, set_, space_set, say=lambda s: console.print(f"[bold cyan]{s}[/]"))
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


@app.command("compare")
@user_errors
def compare_cmd(
    run_dir: Annotated[Path | None, typer.Argument(help="A fairray run dir with mlflow.db (e.g. a `tune` --out).")
                       ] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this MLflow experiment.")] = None,
    uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default RUN_DIR/mlflow.db, else "
                                                 "$MLFLOW_TRACKING_URI).")] = None,
    quality_limit: Annotated[float | None, typer.Option(
        help="Select the fairest run whose quality meets this bound (<= for distances, >= for accuracies).")] = None,
    fairness: Annotated[str | None, typer.Option(help="Fairness metric to compare on (default: detected).")] = None,
    quality: Annotated[str | None, typer.Option(help="Quality metric to compare on (default: detected).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where compare.csv/png go (default RUN_DIR, "
                                                                  "else runs/compare-<time>).")] = None,
) -> None:
    """Compare MLflow runs (campaigns and single runs): table, Pareto front, scatter PNG, CSV, best under a bound."""
    import os

    from fairray.compare import compare
    from fairray.report_runs import store_uri

    if run_dir is not None and not Path(run_dir).is_dir():
        raise FairrayError(f"{run_dir} is not a directory")
    uri = uri or (store_uri(run_dir) if run_dir is not None else os.environ.get("MLFLOW_TRACKING_URI"))
    if uri is None:
        raise FairrayError("give a RUN_DIR (with mlflow.db), --uri, or set $MLFLOW_TRACKING_URI")
    out = out or (Path(run_dir) if run_dir is not None else default_out("compare", None))
    c = compare(uri, out, experiment, quality_limit, fairness, quality)
    (f_name, _), (q_name, q_mode) = c.fairness, c.quality
    params = [col for col in c.table.columns if col.startswith("param.")]
    table = Table("run", "campaign", *[p.removeprefix("param.") for p in params], f_name, q_name, "cost s", "Pareto",
                  title=f"{len(c.table)} run(s) on {f_name} vs {q_name}" + (f" ({c.skipped} other run(s) skipped)"
                                                                            if c.skipped else ""))
    for _, r in c.table.iterrows():
        table.add_row(r.run, r.campaign, *[str(r[p]) for p in params], f"{r[f_name]:.4f}", f"{r[q_name]:.4f}",
                      f"{r.cost_s:.0f}", "*" if r.pareto else "")
    out_console.print(table)
    out_console.print(f"Pareto front: {int(c.table.pareto.sum())} run(s) marked *; plot: {c.png}; table: {c.csv}")
    if quality_limit is not None:
        if c.best is None:
            out_console.print(f"no run has {q_name} {'<=' if q_mode == 'min' else '>='} {quality_limit:g}")
        else:
            out_console.print(f"fairest run with {q_name} {'<=' if q_mode == 'min' else '>='} {quality_limit:g}: "
                              f"{c.best.run} ({f_name} {c.best[f_name]:.4f}, {q_name} {c.best[q_name]:.4f})")
            out_console.print(f"reproduce: {c.best.command}", highlight=False, markup=False)


@app.command()
@user_errors
def submit(
    job: Annotated[str, typer.Argument(help="A jobs/<JOB>.py entrypoint: label, train_gan, debias, generate, ...")],
    args: Annotated[list[str] | None, typer.Argument(help="The job's own arguments, after `--`.")] = None,
    address: Annotated[str | None, typer.Option(help="Jobs API URL (default $RAY_API_SERVER_ADDRESS, an http:// "
                                                     "$RAY_ADDRESS, else http://127.0.0.1:8265).")] = None,
    submission_id: Annotated[str | None, typer.Option(help="Submission id (default fairray-<job>-<time>).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job ends; fail with its last log line.")
                    ] = False,
    working_dir: Annotated[Path, typer.Option(help="Uploaded as the job's working_dir (the fairray checkout).")
                           ] = Path("."),
) -> None:
    """Submit jobs/<JOB>.py to a Ray cluster (Ray Jobs API): `fairray submit train_gan -- --set ... --out /shared/..`."""
    from fairray.submit import new_submission_id
    from fairray.submit import submit as submit_job

    sid = submission_id or new_submission_id(job)
    if wait:
        out_console.print(f"submitting {sid}; logs: ray job logs --follow {sid}")
        status = submit_job(job, args or [], address, working_dir, sid, wait=True)
        out_console.print(f"{sid}: {status}")
        return
    submit_job(job, args or [], address, working_dir, sid, wait=False)
    out_console.print(f"submitted {sid}")
    out_console.print(f"follow it: ray job logs --follow {sid}   (ray job status {sid}, ray job stop {sid})")


@app.command()
@user_errors
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller data and shorter GANs (about 2 minutes).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Bigger data and longer GANs (tens of minutes).")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False, out: OutOpt = None,
) -> None:
    """Run the end-to-end tour on SynthFaces and write report.html (local Ray, local MLflow)."""
    from fairray.config import DEMO_PRESETS
    from fairray.demo import run_demo

    if quick and full:
        raise FairrayError("--quick and --full exclude each other")
    preset = DEMO_PRESETS["quick"] if quick else DEMO_PRESETS["full"] if full else []
    devices = [f"{k}.ray.device={device}" for k in ("attrclf", "gan")]
    cfg = resolve(DemoConfig, config, preset + devices + (set_ or []), dry_run)
    if cfg is None:
        return
    out = default_out("demo", out)
    t0 = time.perf_counter()
    res = run_demo(cfg, out, say=lambda s: console.print(f"[bold cyan]{s}[/]"))
    out_console.print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    out_console.print(f"report:  {res.report.resolve()}")
    out_console.print(f"MLflow:  {res.tracking_uri} (experiment '{res.experiment}')")
    if res.tracking_uri.startswith("sqlite"):
        out_console.print(f"open it: mlflow ui --backend-store-uri {res.tracking_uri}")


if __name__ == "__main__":
    app()
