"""What a campaign can tune: a registry of trainables and the Tune function that runs one trial.

Every trial is a Tune function trainable (`trial_main`) that builds the trainable's pydantic config from the
space's fixed settings + the trial's params, finds or opens its MLflow child run (tagged with the trial id, so a
restored trial logs into the same child), runs the trainable's evaluations and reports each with a Tune
checkpoint. Kinds:

* `gan`: fairray.train.gan's Ray Train DDP job (TorchTrainer) per evaluation stage; rank 0 logs tick metrics
  into the trial's child run; the trial samples the EMA generator, labels the samples and reports
  `fairness_discrepancy_<attr>_<n>` and `fd_attrclf_<n>`. A stage re-run after a crash resumes from the Train
  run's newest complete checkpoint (same name and storage).
* `classifier`: fairray.train.classifier's training loop in the trial process, evaluated on the balanced test
  split at each of its ticks; the model/optimizer state is the Tune checkpoint.
* `point`: a stage, `run(cfg, out, ctx) -> metrics` (fairray.stage), called once per trial with the trial's
  directory and a RunContext whose parent is the trial's child run (DiGA, distillation).

Wiring a new trainable is one `Trainable(...)` in TRAINABLES.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from fairray.config import (
    Cfg,
    DigaConfig,
    DistillConfig,
    FairClassifierConfig,
    GanConfig,
    LatentDebiasConfig,
    apply_override,
    format_validation_error,
    merge_overrides,
    with_section_defaults,
)
from fairray.errors import FairrayError
from fairray.machine import compute_setup
from fairray.stage import RunContext, Stage

EVAL_SEED = 7  # every trial is judged on the same latents


class Metric(NamedTuple):
    """A reported metric and its direction; {attr} and {n} in the name are filled from the trial's config."""

    name: str
    mode: Literal["min", "max"]


@dataclass(frozen=True)
class Trainable:
    """A tunable job: its config class, how a trial runs it, and the fairness/quality metrics it reports."""

    name: str
    config: type[Cfg]  # the pydantic config whose settings a space fixes or searches
    kind: Literal["gan", "classifier", "point"]
    fairness: Metric
    quality: Metric
    # point kind: returns the stage function. A loader, not the function, because the stages pull in torch,
    # Ray Train and sklearn, which validating a space (the CLI's first step) must not pay for.
    stage: Callable[[], Stage] | None = None
    data_params: dict[str, tuple[float, float]] = field(default_factory=dict)  # settings of the data, not the job
    description: str = ""

    def run_stage(self) -> Stage:
        if self.stage is None:
            raise FairrayError(f"trainable {self.name!r} ({self.kind}) is not a point stage")
        return self.stage()

    def settings(self) -> set[str]:
        return set(self.config.model_fields)

    def build(self, data: dict, where: str = "config") -> Any:
        """The trainable's config from nested overrides (unknown keys and bad values are FairrayErrors)."""
        try:
            return self.config.model_validate(with_section_defaults(self.config, data))
        except ValidationError as e:
            raise FairrayError(f"{where}: " + format_validation_error(self.config, e).removeprefix("config error: ")
                               ) from None

    def merge(self, base: dict, update: dict) -> dict:
        """`update` over `base`, nested sections merged key by key (what `build` then validates)."""
        return merge_overrides(self.config, base, update)

    def validate(self, data: dict, where: str) -> None:
        self.build(data, where)

    def check_data_param(self, key: str, value: Any, where: str) -> None:
        lo, hi = self.data_params[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not lo < value <= hi:
            raise FairrayError(f"{where}: must be a number in ({lo}, {hi}]")

    def reports(self, space, cfg: Any = None) -> int:
        """Evaluations per trial (what ASHA's max_t counts)."""
        if self.kind == "gan":
            return space.spec.budget.evaluations
        if self.kind == "classifier":
            from fairray.train.classifier import TICKS

            if cfg is None:
                return TICKS
            steps = max(1, int(cfg.kimg * 1000) // cfg.batch_size)
            every = max(1, steps // TICKS)
            return steps // every + (1 if steps % every else 0)
        return 1

    def metric_names(self, objective, cfg: Any, eval_n: int) -> dict[str, Metric]:
        """{"fairness": (name, mode), "quality": (name, mode)} with the space's overrides applied. A point stage
        scores its own samples, so its config's eval_n names the metrics; the campaign's eval_n otherwise."""
        from fairray.metrics.generated import count_tag

        if self.kind == "point":
            eval_n = getattr(cfg, "eval_n", eval_n)
        attrs = getattr(cfg, "eval_attributes", None) or ["gender"]
        fill = {"attr": attrs[0], "n": count_tag(eval_n)}
        out = {}
        for key in ("fairness", "quality"):
            name, mode = getattr(self, key)
            out[key] = Metric(getattr(objective, key) or name.format(**fill), mode)
        return out

    def mode_of(self, metric: str, objective) -> str:
        if metric == "combined":
            return "min"
        return getattr(self, metric).mode


def _diga_stage() -> Stage:
    from fairray.debias import directions

    return directions.run


def _latent_stage() -> Stage:
    from fairray.debias import latent

    return latent.run


def _distill_stage() -> Stage:
    from fairray.train import distill

    return distill.run


TRAINABLES: dict[str, Trainable] = {t.name: t for t in [
    Trainable("gan", GanConfig, "gan", Metric("fairness_discrepancy_{attr}_{n}", "min"), Metric("fd_attrclf_{n}", "min"),
              data_params={"perc": (0.0, 1.0), "clip_quantile": (0.0, 1.0)},
              description="fairgen-reweighted GAN (Ray Train DDP); perc and clip_quantile pick the weighted dataset"),
    Trainable("classifier", FairClassifierConfig, "classifier", Metric("eo_gap", "min"), Metric("acc", "max"),
              description="downstream target classifier; fairness and accuracy on the balanced test split"),
    # coefficient and strength are DigaConfig fields: with both set, directions.run is exactly one (c, s) point
    Trainable("diga", DigaConfig, "point", Metric("eo_gap", "min"), Metric("acc", "max"), stage=_diga_stage,
              description="DiGA edit augmentation: combination coefficient c and edit strength s"),
    Trainable("latent", LatentDebiasConfig, "point", Metric("eo_gap", "min"), Metric("acc", "max"),
              stage=_latent_stage, description="GAN Data Debiasing: complementary pairs added and their loss weight"),
    Trainable("distill", DistillConfig, "point", Metric("fairness_discrepancy_{attr}_{n}", "min"),
              Metric("fd_attrclf_{n}", "min"), stage=_distill_stage,
              description="fair distillation of a small student generator: loss weights and k schedule"),
]}


def get_trainable(name: str, where: str = "trainable") -> Trainable:
    if name not in TRAINABLES:
        raise FairrayError(f"{where}: unknown trainable {name!r} (known: {', '.join(TRAINABLES)})")
    return TRAINABLES[name]


# ---------------------------------------------------------------------------------------------------------------
# One trial


class EventLog:
    """Append-only JSON lines in the trial's directory: what ran, in which process (audit trail of restores)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"event": event, "pid": os.getpid(), "time": time.time(), **fields}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def objective_value(metrics: dict[str, float], ctx: dict) -> float:
    """The number Tune optimises: one metric, or the weighted sum with each term signed so lower is better."""
    names = ctx["metrics"]
    if ctx["objective"] != "combined":
        return float(metrics[names[ctx["objective"]][0]])
    total = 0.0
    for key in ("fairness", "quality"):
        name, mode = names[key]
        total += ctx["weights"].get(key, 0.0) * (metrics[name] if mode == "min" else -metrics[name])
    return float(total)


def split_params(trainable: Trainable, params: dict) -> tuple[dict, dict]:
    """Searched values -> (nested config overrides, data settings)."""
    job: dict = {}
    data = {k: v for k, v in params.items() if k in trainable.data_params}
    for k, v in params.items():
        if k not in trainable.data_params:
            apply_override(job, f"{k}={json.dumps(v)}")
    return job, data


def data_key(data: dict) -> str:
    return "-".join(f"{k}{v:g}" for k, v in sorted(data.items())) or "default"


def trial_main(config: dict, ctx: dict) -> None:
    """The Tune function trainable behind every campaign: config = the searched params, ctx = the campaign's
    constants (tune.with_parameters)."""
    import torch
    from ray import tune

    from fairray.tracking import Tracker

    trainable = get_trainable(ctx["trainable"])
    params = dict(config)
    trial_id = tune.get_context().get_trial_id()
    trial_dir = Path(ctx["out"]) / "trials" / trial_id
    events = EventLog(trial_dir / "events.jsonl")
    state: dict | None = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "trial.pt", weights_only=False)
    if state is not None and state.get("done"):
        events.write("already_done", iteration=state["iteration"])  # restored from its final checkpoint
        return
    start = state["iteration"] if state else 0
    events.write("start", iteration=start)
    job, data = split_params(trainable, params)
    cfg = trainable.build(trainable.merge(json.loads(json.dumps(ctx["base"])), job), f"trial {trial_id}")
    data = {**ctx.get("data_defaults", {}), **data}
    tracker = Tracker(Path(ctx["out"]), ctx["experiment"], ctx["uri"], ctx["tracking"])
    key = f"{ctx['campaign']}:{trial_id}"
    existing = tracker.find_run("fairray.trial_key", key)
    tags = {"fairray.trial_key": key, "fairray.trial_id": trial_id, "fairray.campaign": ctx["campaign"],
            "fairray.trainable": trainable.name, "fairray.searched": ",".join(sorted(params)),
            "fairray.fairness_metric": ctx["metrics"]["fairness"][0],
            "fairray.fairness_mode": ctx["metrics"]["fairness"][1],
            "fairray.quality_metric": ctx["metrics"]["quality"][0],
            "fairray.quality_mode": ctx["metrics"]["quality"][1],
            "fairray.reproduce": reproduce_command(ctx, params)}
    label = ",".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))
    with tracker.run(f"{ctx['campaign']} {label}", parent=tracker.attach(ctx["parent_run_id"]), tags=tags,
                     run_id=existing) as child:
        if existing is None:
            child.log_params({**cfg.model_dump(mode="json"), **{f"data.{k}": v for k, v in data.items()}})
        seconds = state["seconds"] if state else 0.0
        t0 = time.perf_counter()
        it = [start]

        def emit(metrics: dict[str, float], train_state: dict, figures: dict[str, Any], done: bool) -> None:
            it[0] += 1
            m = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
            m["objective"] = objective_value(m, ctx)
            m["trial_seconds"] = seconds + time.perf_counter() - t0
            child.log_metrics(m, step=it[0])
            child.flush()
            for name, fig in figures.items():
                child.log_figure(fig, name)
            with tempfile.TemporaryDirectory() as d:
                torch.save({"iteration": it[0], "seconds": m["trial_seconds"], "done": done, "train": train_state},
                           Path(d) / "trial.pt")
                events.write("report", iteration=it[0], done=done, **{k: m[k] for k in ("objective",)})
                tune.report(m, checkpoint=tune.Checkpoint.from_directory(d))

        # stages the trial calls log under its child run; a unique name keeps a stage that reuses its run by name
        # (distill) from finding another trial's
        stage_ctx = RunContext(tracker=tracker, parent=child, name=f"{ctx['campaign']}-{trial_id}", progress=False)
        RUNNERS[trainable.kind](trainable, cfg, data, ctx, trial_dir, state, stage_ctx, emit)
        events.write("finished", iteration=it[0])


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def reproduce_command(ctx: dict, params: dict) -> str:
    """`fairray tune` of this one trial: the same space with each searched param pinned to its value."""
    import shlex

    parts = ["fairray", "tune", ctx["space_path"]]
    if ctx.get("config_path"):
        parts += ["--config", ctx["config_path"]]
    for s in ctx.get("config_sets", []):
        parts += ["--set", s]
    parts += ["--set", f"name={ctx['campaign']}-repro"]
    for s in ctx.get("space_sets", []):  # the campaign's own space overrides first, then the pinned params
        parts += ["--space-set", s]
    for k, v in sorted(params.items()):
        parts += ["--space-set", f"params.{k}={{type: grid, values: [{json.dumps(v)}]}}"]
    parts += ["--space-set", "search.searcher=grid", "--space-set", "search.num_samples=1",
              "--space-set", "search.scheduler=fifo"]
    return " ".join(shlex.quote(p) for p in parts)


# ---------------------------------------------------------------------------------------------------------------
# Runners: (trainable, cfg, data settings, campaign constants, trial dir, restored state, stage context whose parent
# is the trial's child run, emit) -> None


def _run_gan(trainable, cfg, data, ctx, trial_dir, state, stage_ctx: RunContext, emit) -> None:
    """Stage k trains to kimg * k / stages (one Ray Train run, resumed stage to stage), then evaluates."""
    from fairray.data.reference import heldout_rows, reference_images
    from fairray.data.table import read_table
    from fairray.labelers.registry import load_labeler
    from fairray.metrics.generated import count_tag, evaluate_samples
    from fairray.models.generator_io import load_generator, sample
    from fairray.report import grid_figure, shares_figure
    from fairray.train import gan

    dataset = Path(ctx["datasets"][data_key(data)])
    cfg = cfg.model_copy(update={"dataset": str(dataset), "name": "gan"})
    labeler = load_labeler(ctx["labeler"])
    ref = reference_images(dataset, cfg.resolution, ctx["eval_n"])
    held, held_w = heldout_rows(dataset, cfg.resolution, ctx["eval_n"], gan.target_alpha(cfg))
    train = read_table(dataset, columns=["split", "subset", *cfg.eval_attributes])
    train = train[(train.split == "train") & (train.subset != "reference")]
    child = stage_ctx.parent
    stages = ctx["reports"]
    start = state["iteration"] if state else 0
    tag = count_tag(ctx["eval_n"])
    for k in range(start, stages):
        stage = cfg.model_copy(update={"kimg": cfg.kimg * (k + 1) / stages})
        ckpt = gan.fit(stage, dataset, trial_dir, child.worker_spec(ctx["out"]))
        G, _ = load_generator(ckpt)
        images, _ = sample(G, ctx["eval_n"], cfg.z_dim, seed=EVAL_SEED)
        m = evaluate_samples(images, labeler, cfg.eval_attributes, reference=ref, heldout=held,
                             heldout_weights=held_w)
        m["kimg"] = stage.kimg
        tables = {}
        for a in cfg.eval_attributes:
            codes = sorted({int(c.split("_")[-2]) for c in m if c.startswith(f"share_{a}_") and c.endswith(tag)})
            data_share = train[a].value_counts(normalize=True)
            tables[a] = _frame({"generated": [m[f"share_{a}_{c}_{tag}"] for c in codes],
                                "training data": [float(data_share.get(c, 0.0)) for c in codes]},
                               [f"{a}={c}" for c in codes])
        figures = {f"grids/samples_{stage.kimg:g}kimg.png": grid_figure(images[:64], 8, f"{stage.kimg:g} kimg"),
                   "charts/attribute_shares.png": shares_figure(tables, f"alpha={cfg.alpha:g} reweight={cfg.reweight}",
                                                                {a: 1 / len(t) for a, t in tables.items()})}
        (trial_dir / "metrics.json").write_text(json.dumps({"checkpoint": str(ckpt), "metrics": m}, default=float))
        emit(m, {"checkpoint": str(ckpt), "stage": k + 1}, figures, done=k + 1 == stages)
        _close(figures)


def _frame(columns: dict, index: list):
    import pandas as pd

    return pd.DataFrame(columns, index=index)


def _close(figures: dict) -> None:
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def _run_classifier(trainable, cfg, data, ctx, trial_dir, state, stage_ctx: RunContext, emit) -> None:
    """fairray.train.classifier's loop in this process; evaluate (balanced test split) at every tick."""
    import torch

    from fairray.train import classifier as C

    dataset = Path(ctx["datasets"]["default"])
    cfg = cfg.model_copy(update={"dataset": str(dataset)})
    compute_setup(max(1, int(round(ctx["trial_cpus"]))))
    torch.manual_seed(cfg.seed)
    x, y, w, _ = C.training_rows(cfg, dataset)
    model = C.build_model(cfg)
    total = trainable.reports(None, cfg)
    done_ticks = state["iteration"] if state else 0

    def on_tick(metrics: dict, st: dict) -> None:
        m = C.evaluate_model(cfg, st["model"], dataset) | {"kimg": metrics["kimg"], "train_loss": metrics["train_loss"]}
        tick = done_ticks + 1 + on_tick.count
        on_tick.count += 1
        emit(m, {k: v for k, v in st.items()}, {}, done=tick >= total)

    on_tick.count = 0  # type: ignore[attr-defined]
    C.fit_loop(model, x, y, w, cfg, torch.device("cpu"), state=state["train"] if state else None, on_tick=on_tick)


def _run_point(trainable, cfg, data, ctx, trial_dir, state, stage_ctx: RunContext, emit) -> None:
    """The trainable's stage once, in the trial's directory (a restart re-runs it there and reuses what it
    finished)."""
    emit(trainable.run_stage()(cfg, trial_dir, stage_ctx), {}, {}, done=True)


RUNNERS: dict[str, Callable] = {"gan": _run_gan, "classifier": _run_classifier, "point": _run_point}
