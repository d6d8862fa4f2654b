"""Commands around the stages: inspect a dataset, sample and score a generator, report, compare, submit to a cluster."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fairray.cli.base import OutOpt, app, default_out, out_console, user_errors, warn_if_not_meaningful
from fairray.errors import FairrayError

RunDirArg = Annotated[Path | None, typer.Argument(help="A fairray run dir with mlflow.db (e.g. runs/demo-<time>).")]
ExperimentOpt = Annotated[str | None, typer.Option(help="Only this MLflow experiment.")]
UriOpt = Annotated[str | None, typer.Option(help="MLflow tracking URI (default RUN_DIR/mlflow.db, else "
                                                 "$MLFLOW_TRACKING_URI).")]


def tracking_uri(run_dir: Path | None, uri: str | None, missing: str) -> str:
    """--uri, else the run dir's own store, else $MLFLOW_TRACKING_URI; `missing` says what to give when none is."""
    from fairray.report_runs import store_uri

    if run_dir is not None and not Path(run_dir).is_dir():
        raise FairrayError(f"{run_dir} is not a directory")
    uri = uri or (store_uri(run_dir) if run_dir is not None else os.environ.get("MLFLOW_TRACKING_URI"))
    if uri is None:
        raise FairrayError(missing)
    return uri


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


@app.command()
@user_errors
def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A GAN checkpoint directory (ray_results/<name>/checkpoint_*).")],
    n: Annotated[int, typer.Option(help="Number of samples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Latent seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    actors: Annotated[int | None, typer.Option(help="Generator actors (one GPU each with --device cuda); "
                                                    "default: from the cluster's resources.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray address (default $RAY_ADDRESS or a local Ray).")] = None,
    image_format: Annotated[str, typer.Option(help="png, or npy: raw uint8 pixels, ~10x faster to label and load "
                                                   "(fairray and NumPy read them, image viewers do not).")] = "png",
    engine: Annotated[str, typer.Option(help="ray: Ray Data actors; process: this process, no Ray; auto: process "
                                             "when no Ray runs or is given and the pool would be one actor.")
                      ] = "auto",
    out: OutOpt = None,
) -> None:
    """Sample N faces from a checkpoint through Ray Data actors into the canonical table (with latents); a
    one-actor job with no Ray running samples in this process (the same rows).

    Re-running with the same --out, checkpoint, n and seed reuses the finished output."""
    from fairray.data.table import IMAGE_FORMATS
    from fairray.generate import generate as run_generate

    if n < 1:
        raise FairrayError("--n must be at least 1")
    if actors is not None and actors < 1:
        raise FairrayError("--actors must be at least 1")
    if image_format not in IMAGE_FORMATS:  # before Ray starts
        raise FairrayError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if engine not in ("auto", "ray", "process"):
        raise FairrayError(f"--engine must be auto, ray or process, got {engine!r}")
    out = default_out("generate", out)
    run_generate(checkpoint, n, out, seed=seed, device=device, actors=actors, address=address,
                 image_format=image_format, engine=engine,
                 dashboard=False)  # Ray Data only: a dashboard would add ~4 s of start-up
    out_console.print(f"wrote {n:,} samples to {out / 'data'}; label them with `fairray label {out} --labeler ...`")


@app.command()
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A GAN checkpoint directory.")],
    labeler: Annotated[str, typer.Option(help="Labeler for the fairness metrics, e.g. attrclf:DIR.")],
    reference: Annotated[Path | None, typer.Option(help="Dataset whose reference rows are the target (fd_attrclf) "
                                                   "and whose val/test rows the validity metrics use.")] = None,
    attributes: Annotated[str, typer.Option(help="Comma-separated heads to measure.")] = "gender",
    n: Annotated[int, typer.Option(help="Samples.")] = 10_000,
    repeats: Annotated[int, typer.Option(help="Disjoint sets to average the discrepancy over (fairgen: 10).")] = 1,
    seed: Annotated[int, typer.Option(help="Latent seed.")] = 0,
) -> None:
    """Fairness (discrepancy, KL, shares with bootstrap intervals) and fd_attrclf of a generator's samples."""
    from fairray.data.reference import heldout_images, reference_images
    from fairray.labelers.registry import load_labeler
    from fairray.metrics.generated import evaluate_samples
    from fairray.models.generator_io import load_generator, sample

    G, cfg = load_generator(checkpoint)
    lab = load_labeler(labeler)
    missing = [a for a in attributes.split(",") if a not in {h.name for h in lab.heads}]
    if missing:
        raise FairrayError(f"labeler has no head(s) {missing}; heads: {[h.name for h in lab.heads]}")
    images, _ = sample(G, n, cfg.z_dim, seed)
    ref = reference_images(reference, cfg.resolution, n) if reference else None
    held = heldout_images(reference, cfg.resolution, n) if reference else None
    m = evaluate_samples(images, lab, attributes.split(","), reference=ref, repeats=repeats, heldout=held)
    table = Table("metric", "value", title=f"{cfg.name}: {n:,} samples")
    for k, v in m.items():
        table.add_row(k, f"{v:.4f}")
    out_console.print(table)
    warn_if_not_meaningful(m)


@app.command()
@user_errors
def report(
    run_dir: RunDirArg = None,
    experiment: ExperimentOpt = None,
    uri: UriOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write (default RUN_DIR/report.html, "
                                                                  "else runs/report-<time>.html).")] = None,
) -> None:
    """Build the self-contained HTML fairness report from MLflow runs (a run dir, an experiment, any store)."""
    from fairray.report_runs import build

    if run_dir is None and experiment is None:
        raise FairrayError("give a RUN_DIR or --experiment NAME (with --uri or $MLFLOW_TRACKING_URI)")
    uri = tracking_uri(run_dir, uri, "--experiment needs --uri or $MLFLOW_TRACKING_URI (where the runs are)")
    out = out or (Path(run_dir) / "report.html" if run_dir is not None
                  else Path("runs") / f"report-{time.strftime('%Y%m%d-%H%M%S')}.html")
    path = build(uri, out, experiment)
    out_console.print(f"report: {path.resolve()}")


@app.command("compare")
@user_errors
def compare_cmd(
    run_dir: Annotated[Path | None, typer.Argument(help="A fairray run dir with mlflow.db (e.g. a `tune` --out).")
                       ] = None,
    experiment: ExperimentOpt = None,
    uri: UriOpt = None,
    quality_limit: Annotated[float | None, typer.Option(
        help="Select the fairest run whose quality meets this bound (<= for distances, >= for accuracies).")] = None,
    fairness: Annotated[str | None, typer.Option(help="Fairness metric to compare on (default: detected).")] = None,
    quality: Annotated[str | None, typer.Option(help="Quality metric to compare on (default: detected).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where compare.csv/png go (default RUN_DIR, "
                                                                  "else runs/compare-<time>).")] = None,
) -> None:
    """Compare MLflow runs (campaigns and single runs): table, Pareto front, scatter PNG, CSV, best under a bound."""
    from fairray.compare import compare

    uri = tracking_uri(run_dir, uri, "give a RUN_DIR (with mlflow.db), --uri, or set $MLFLOW_TRACKING_URI")
    out = out or (Path(run_dir) if run_dir is not None else default_out("compare", None))
    c = compare(uri, out, experiment, quality_limit, fairness, quality)
    (f_name, _), (q_name, q_mode) = c.fairness, c.quality
    params = [col for col in c.table.columns if col.startswith("param.")]
    table = Table("run", "campaign", *[p.removeprefix("param.") for p in params], f_name, q_name, "valid", "cost s",
                  "Pareto",
                  title=f"{len(c.table)} run(s) on {f_name} vs {q_name}" + (f" ({c.skipped} other run(s) skipped)"
                                                                            if c.skipped else ""))
    for _, r in c.table.iterrows():
        valid = "–" if r.valid != r.valid else ("yes" if r.valid else "no: fairness not meaningful")
        table.add_row(r.run, r.campaign, *[str(r[p]) for p in params], f"{r[f_name]:.4f}", f"{r[q_name]:.4f}",
                      valid, f"{r.cost_s:.0f}", "*" if r.pareto else "")
    out_console.print(table)
    out_console.print(f"Pareto front: {int(c.table.pareto.sum())} run(s) marked *; plot: {c.png}; table: {c.csv}")
    if quality_limit is not None:
        bound = f"{q_name} {'<=' if q_mode == 'min' else '>='} {quality_limit:g}"
        if c.best is None:
            out_console.print(f"no run has {bound}")
        else:
            out_console.print(f"fairest run with {bound}: {c.best.run} ({f_name} {c.best[f_name]:.4f}, "
                              f"{q_name} {c.best[q_name]:.4f})")
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
