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
* `point`: any `fn(cfg, out: Path) -> dict[str, float]` (DiGA, distillation): one evaluation per trial.

Wiring a new trainable is one entry in TRAINABLES.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from fairray.errors import FairrayError

EVAL_SEED = 7  # every trial is judged on the same latents


@dataclass(frozen=True)
class Trainable:
    """A tunable job: its config class, how a trial runs it, and the fairness/quality metrics it reports."""

    name: str
    config: str  # "module:Class": the pydantic config whose settings a space fixes or searches
    kind: Literal["gan", "classifier", "point"]
    fairness: tuple[str, str]  # (metric name, mode); {attr} and {n} are filled from the config and eval_n
    quality: tuple[str, str]
    run: str | None = None  # point kind: "module:function", fn(cfg, out: Path) -> dict[str, float]
    data_params: dict[str, tuple[float, float]] = field(default_factory=dict)  # settings of the data, not the job
    params_hint: tuple[str, ...] = ()  # setting names accepted while `config` does not exist yet
    description: str = ""

    def config_class(self) -> type | None:
        module, _, cls = self.config.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            return None

    def settings(self) -> set[str] | None:
        cls = self.config_class()
        if cls is not None:
            return set(cls.model_fields)
        return set(self.params_hint) or None

    def build(self, data: dict, where: str = "config") -> Any:
        """The trainable's config from nested overrides (unknown keys and bad values are FairrayErrors)."""
        from fairray.config import _with_defaults, format_validation_error

        cls = self.config_class()
        if cls is None:
            return dict(data)
        try:
            return cls.model_validate(_with_defaults(cls, data))
        except ValidationError as e:
            raise FairrayError(f"{where}: " + format_validation_error(cls, e).removeprefix("config error: ")
                               ) from None

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
            if cfg is None:
                from fairray.train.classifier import TICKS

                return TICKS
            steps = max(1, int(cfg.kimg * 1000) // cfg.batch_size)
            every = max(1, steps // _classifier_ticks())
            return steps // every + (1 if steps % every else 0)
        return 1

    def metric_names(self, objective, cfg: Any, eval_n: int) -> dict[str, tuple[str, str]]:
        """{"fairness": (name, mode), "quality": (name, mode)} with the space's overrides applied."""
        from fairray.metrics.generated import count_tag

        attrs = getattr(cfg, "eval_attributes", None) or ["gender"]
        fill = {"attr": attrs[0], "n": count_tag(eval_n)}
        out = {}
        for key in ("fairness", "quality"):
            name, mode = getattr(self, key)
            out[key] = (getattr(objective, key) or name.format(**fill), mode)
        return out

    def mode_of(self, metric: str, objective) -> str:
        if metric == "combined":
            return "min"
        return getattr(self, metric)[1]


def _classifier_ticks() -> int:
    from fairray.train.classifier import TICKS

    return TICKS


TRAINABLES: dict[str, Trainable] = {t.name: t for t in [
    Trainable("gan", "fairray.config:GanConfig", "gan", ("fairness_discrepancy_{attr}_{n}", "min"),
              ("fd_attrclf_{n}", "min"), data_params={"perc": (0.0, 1.0), "clip_quantile": (0.0, 1.0)},
              description="fairgen-reweighted GAN (Ray Train DDP); perc and clip_quantile pick the weighted dataset"),
    Trainable("classifier", "fairray.config:FairClassifierConfig", "classifier", ("eo_gap", "min"), ("acc", "max"),
              description="downstream target classifier; fairness and accuracy on the balanced test split"),
    # DiGA and distillation: point trainables; their functions land with their issues.
    Trainable("diga", "fairray.config:DigaConfig", "point", ("eo_gap", "min"), ("acc", "max"),
              run="fairray.debias.directions:diga_point",
              description="DiGA edit augmentation: combination coefficient c and edit strength s"),
    Trainable("distill", "fairray.config:DistillConfig", "point", ("fairness_discrepancy_{attr}_{n}", "min"),
              ("fd_attrclf_{n}", "min"), run="fairray.train.distill:run",
              params_hint=("lambda_adv", "lambda_feat", "lambda_pix", "lambda_fair", "k_schedule", "kimg", "seed"),
              description="fair distillation of a small student generator: loss weights and k schedule"),
]}


def get_trainable(name: str, where: str = "trainable") -> Trainable:
    if name not in TRAINABLES:
        raise FairrayError(f"{where}: unknown trainable {name!r} (known: {', '.join(TRAINABLES)})")
    return TRAINABLES[name]


def import_path(spec: str, what: str) -> Callable:
    module, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise FairrayError(f"{what} is not available yet ({spec}: {e})") from None


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
    from fairray.config import apply_override

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

    from fairray.config import _deep_merge
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
    cls = trainable.config_class()
    merged = _deep_merge(json.loads(json.dumps(ctx["base"])), job, cls) if cls is not None else {**ctx["base"], **job}
    cfg = trainable.build(merged, f"trial {trial_id}")
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
            dump = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else cfg
            child.log_params({**dump, **{f"data.{k}": v for k, v in data.items()}})
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

        RUNNERS[trainable.kind](trainable, cfg, data, ctx, trial_dir, state, child, emit)
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
# Runners: (trainable, cfg, data settings, ctx, trial dir, restored state, child run, emit) -> None


def _run_gan(trainable, cfg, data, ctx, trial_dir, state, child, emit) -> None:
    """Stage k trains to kimg * k / stages (one Ray Train run, resumed stage to stage), then evaluates."""
    from fairray.data.table import read_table
    from fairray.labelers.registry import load_labeler
    from fairray.metrics.generated import count_tag, evaluate_samples, sample
    from fairray.report import grid_figure, shares_figure
    from fairray.train import gan

    dataset = Path(ctx["datasets"][data_key(data)])
    cfg = cfg.model_copy(update={"dataset": str(dataset), "name": "gan"})
    labeler = load_labeler(ctx["labeler"])
    ref = gan.reference_images(dataset, cfg.resolution, ctx["eval_n"])
    train = read_table(dataset, columns=["split", "subset", *cfg.eval_attributes])
    train = train[(train.split == "train") & (train.subset != "reference")]
    tracking = {"out": ctx["out"], "experiment": ctx["experiment"], "uri": ctx["uri"], "run_id": child.run_id}
    stages = ctx["reports"]
    start = state["iteration"] if state else 0
    tag = count_tag(ctx["eval_n"])
    for k in range(start, stages):
        stage = cfg.model_copy(update={"kimg": cfg.kimg * (k + 1) / stages})
        ckpt = gan.fit(stage, dataset, trial_dir, tracking if child.live else None)
        G, _ = gan.load_generator(ckpt)
        images, _ = sample(G, ctx["eval_n"], cfg.z_dim, seed=EVAL_SEED)
        m = evaluate_samples(images, labeler, cfg.eval_attributes, reference=ref)
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


def _run_classifier(trainable, cfg, data, ctx, trial_dir, state, child, emit) -> None:
    """fairray.train.classifier's loop in this process; evaluate (balanced test split) at every tick."""
    import torch

    from fairray.train import classifier as C

    dataset = Path(ctx["datasets"]["default"])
    cfg = cfg.model_copy(update={"dataset": str(dataset)})
    torch.set_num_threads(max(1, int(round(ctx["trial_cpus"]))))
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


def _run_point(trainable, cfg, data, ctx, trial_dir, state, child, emit) -> None:
    fn = import_path(trainable.run, f"trainable {trainable.name!r}")
    emit(fn(cfg, trial_dir), {}, {}, done=True)


RUNNERS: dict[str, Callable] = {"gan": _run_gan, "classifier": _run_classifier, "point": _run_point}
