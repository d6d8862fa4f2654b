"""A campaign: validate the space, prepare data once, open the MLflow parent run, run (or restore) the Tuner,
then reconcile MLflow with Tune's results.

Restore: the Tune experiment lives at <out>/tune/<name>. Re-running the same command after the driver died
(SIGKILL, lost head node) finds it with `Tuner.can_restore` and continues with `Tuner.restore(...,
resume_errored=True)`: finished trials are not re-run, running ones restart from their last Tune checkpoint (and a
GAN stage from its Ray Train checkpoint). The parent run is found by its `fairray.campaign` tag; each trial finds
its child by `fairray.trial_key`. Tune's experiment snapshot can lag the trials by a moment, so after fit the
driver reconciles: one child per trial (orphans deleted, missing ones backfilled) and each child's final metrics
equal Tune's.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd

from fairray.config import ReweightConfig, TuneCampaignConfig, apply_override, dump_config
from fairray.errors import FairrayError
from fairray.stage import RunContext
from fairray.tune.spaces import Space, describe
from fairray.tune.trainables import Trainable, data_key, get_trainable, trial_main

STATE_TAG = "fairray.space_digest"


@dataclass
class CampaignResult:
    name: str
    out: Path
    parent_run_id: str | None
    table: pd.DataFrame  # one row per trial
    metrics: dict[str, tuple[str, str]]  # fairness / quality -> (name, mode)
    restored: bool
    tracking_uri: str
    experiment: str
    best: dict[str, Any] = field(default_factory=dict)


def git_commit() -> str:
    """HEAD of the checkout fairray runs from (+ '-dirty' with uncommitted changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def fingerprint(paths: list[Path]) -> str:
    """Hash of the datasets' manifests (their own content fingerprints, configs, weight reports)."""
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        for name in ("dataset.json", "reweight.json"):
            f = Path(p) / name
            if f.is_file():
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def concurrency(trainable: Trainable, cfg: TuneCampaignConfig, base: Any, space: Space) -> tuple[int, dict]:
    """How many trials fit the cluster at once, and what one trial holds (Train workers hold their own)."""
    from fairray.ray_env import cluster_cpus, cluster_gpus, resolve_device, worker_resources

    cpus, gpus = cluster_cpus(), cluster_gpus()
    per_cpu, per_gpu = cfg.trial_cpus, 0.0
    if trainable.kind == "gan":
        use_gpu = resolve_device(base.ray.device) == "cuda"
        w = worker_resources(base.ray.workers, use_gpu, base.ray.cpus_per_worker)
        per_cpu += base.ray.workers * w["CPU"]
        per_gpu = base.ray.workers * w.get("GPU", 0.0)
    fit = math.floor(cpus / per_cpu + 1e-9)
    if per_gpu:
        fit = min(fit, math.floor(gpus / per_gpu + 1e-9))
    n = max(1, fit)
    if space.spec.budget.max_concurrent_trials is not None:
        n = min(n, space.spec.budget.max_concurrent_trials)
    return n, {"cpu": cfg.trial_cpus}


def _values(space: Space, key: str, default: Any) -> list:
    p = space.params.get(key)
    return list(p.values or []) if p is not None else [default]


def prepare(trainable: Trainable, space: Space, cfg: TuneCampaignConfig, base: Any, out: Path,
            say: Callable[[str], None]) -> dict:
    """Data (and labeler) every trial needs, made once on the driver and reused by a restored campaign."""
    from fairray.data import synth_dataset

    if trainable.kind == "classifier":
        from fairray.train.classifier import dataset_path

        path = Path(cfg.dataset) if cfg.dataset else dataset_path(base, out / "data" / "classifier")
        return {"datasets": {"default": str(path.resolve())}, "data_defaults": {}, "labeler": None,
                "fingerprint": fingerprint([path])}
    if trainable.kind != "gan":
        return {"datasets": {}, "data_defaults": {}, "labeler": cfg.labeler, "fingerprint": "n/a"}
    from fairray.debias import reweight

    defaults = {"perc": cfg.synth.perc, "clip_quantile": ReweightConfig.model_fields["clip_quantile"].default}
    if cfg.dataset and "perc" in space.params:
        raise FairrayError("params.perc needs rendered data (the reference fraction is a property of the dataset); "
                           "drop `dataset` or stop searching perc")
    modes = _values(space, "reweight", base.reweight)
    alphas = _values(space, "alpha", base.alpha)
    weights_needed = any(m != "none" for m in modes) and any(a != 0 for a in alphas)
    datasets, paths = {}, []
    combos = list(product(_values(space, "perc", defaults["perc"]), _values(space, "clip_quantile",
                                                                             defaults["clip_quantile"])))
    for perc, clip in combos:
        src = Path(cfg.dataset) if cfg.dataset else out / "data" / f"perc{perc:g}" / "synth"
        synth = cfg.synth.model_copy(update={"perc": perc})
        if not cfg.dataset and not synth_dataset.current(synth, src):
            say(f"rendering SynthFaces {cfg.synth.bias.describe()} n={cfg.synth.n} perc={perc:g}")
            synth_dataset.build(synth, src, progress=False)
        path = src
        if weights_needed and cfg.dataset and "clip_quantile" not in space.params \
                and (src / "reweight.json").is_file():
            pass  # already weighted (fairray reweight output): use its `weight` column as it is
        elif weights_needed:
            path = src.parent / f"weights-clip{clip:g}" if not cfg.dataset else out / "data" / f"weights-clip{clip:g}"
            if not (path / "reweight.json").is_file():
                say(f"density-ratio weights for perc={perc:g}, clipped at the {clip:g} quantile")
                shutil.rmtree(path, ignore_errors=True)  # a crash mid-write leaves a partial table behind
                reweight.run(ReweightConfig(dataset=str(src), epochs=cfg.ratio_epochs, clip_quantile=clip,
                                            seed=cfg.synth.seed, resolution=base.resolution,
                                            report_attributes=list(base.eval_attributes)), path)
        datasets[data_key({"perc": perc, "clip_quantile": clip})] = str(path.resolve())
        paths.append(path)
    from fairray.labelers.registry import absolute_spec

    labeler = absolute_spec(cfg.labeler)  # trials run in their own working directories
    if labeler is None:
        from fairray.train import attrclf

        clf = out / "attrclf"
        if not (clf / "attrclf" / "metrics.json").is_file():
            say("training the attrclf labeler (set labeler=attrclf:DIR to reuse one)")
            attrclf.run(cfg.attrclf, clf, RunContext(progress=False))
        labeler = f"attrclf:{(clf / 'attrclf').resolve()}"
    return {"datasets": datasets, "data_defaults": defaults, "labeler": labeler, "fingerprint": fingerprint(paths)}


def run_campaign(space: Space, cfg: TuneCampaignConfig, out: Path, config_path: Path | None = None,
                 config_sets: list[str] | None = None, space_sets: list[str] | None = None,
                 say: Callable[[str], None] = print, parent_run=None) -> CampaignResult:
    """Run (or continue) the campaign `cfg.name or space.name` under <out>; its MLflow parent run is a child of
    `parent_run` when given (the demo's run tree)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from fairray.ray_env import init_ray
    from fairray.tracking import Tracker

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = cfg.name or space.name
    trainable = get_trainable(space.spec.trainable)
    if trainable.kind == "point":
        trainable.run_stage()  # an import error fails here, not in every trial
    fixed: dict = {}
    for k, v in space.spec.fixed.items():
        apply_override(fixed, f"{k}={json.dumps(v)}")
    base = trainable.build(trainable.merge(fixed, cfg.base), "base")
    init_ray(cfg.ray.address)
    say(describe(space))
    prep = prepare(trainable, space, cfg, base, out, say)
    names = trainable.metric_names(space.spec.objective, base, cfg.eval_n)
    mode = trainable.mode_of(space.spec.objective.metric, space.spec.objective)
    n_conc, resources = concurrency(trainable, cfg, base, space)
    storage = out / "tune"
    exp_path = storage / name
    restored = tune.Tuner.can_restore(str(exp_path))
    tracker = Tracker(out, cfg.tracking.experiment, cfg.tracking.uri, cfg.tracking.enabled)
    parent_id = tracker.find_run("fairray.campaign_root", name)
    digest = space.digest()
    if restored:
        saved = json.loads((out / f"{name}.campaign.json").read_text()) if (out / f"{name}.campaign.json").is_file() \
            else {}
        if saved.get("space_digest") not in (None, digest):
            raise FairrayError(f"campaign {name!r} in {out} was started with a different space; re-run it unchanged "
                               "to continue, or pick a new name (--set name=...) or --out")
    (out / f"{name}.campaign.json").write_text(json.dumps({"space_digest": digest, "space": str(space.path)}))
    dump = base.model_dump(mode="json")
    with tracker.run(name, tags={"fairray.campaign_root": name, "fairray.command": "tune", STATE_TAG: digest},
                     run_id=parent_id, parent=parent_run) as parent:
        if parent_id is None:
            parent.log_params({"space": json.dumps(space.raw, default=str), "trainable": trainable.name,
                               "search": space.spec.search.model_dump(mode="json"),
                               "objective": space.spec.objective.model_dump(mode="json"),
                               "budget": space.spec.budget.model_dump(mode="json"), "base": dump,
                               "eval_n": cfg.eval_n, "max_concurrent_trials": n_conc})
            parent.set_tags({"fairray.git_commit": git_commit(), "fairray.dataset_fingerprint": prep["fingerprint"],
                             "fairray.space_file": str(space.path), "fairray.campaign_config": dump_config(cfg)})
        ctx = {"campaign": name, "trainable": trainable.name, "out": str(out), "base": dump,
               "datasets": prep["datasets"], "data_defaults": prep["data_defaults"], "labeler": prep["labeler"],
               "eval_n": cfg.eval_n, "reports": trainable.reports(space, base), "metrics": names,
               "objective": space.spec.objective.metric, "weights": dict(space.spec.objective.weights),
               "experiment": cfg.tracking.experiment, "uri": tracker.uri, "tracking": tracker.active,
               "parent_run_id": parent.run_id, "trial_cpus": cfg.trial_cpus, "space_path": str(space.path),
               "config_path": str(config_path) if config_path else None,
               "config_sets": [s for s in (config_sets or []) if not s.startswith("name=")],
               "space_sets": space_sets or []}
        # the campaign's constants travel with the trainable, not in the config: trial configs hold only the
        # searched params (what Tune prints, logs and restores)
        fn = tune.with_resources(tune.with_parameters(trial_main, ctx=ctx), resources)
        if restored:
            say(f"continuing campaign {name!r} from {exp_path}")
            tuner = tune.Tuner.restore(str(exp_path), trainable=fn, resume_unfinished=True, resume_errored=True)
        else:
            s = space.spec.search
            scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=ctx["reports"],
                                       grace_period=s.grace_period, reduction_factor=s.reduction_factor)
                         if s.scheduler == "asha" else FIFOScheduler())
            tuner = tune.Tuner(
                fn, param_space=space.param_space(),
                tune_config=tune.TuneConfig(metric="objective", mode=mode, num_samples=s.num_samples,
                                            scheduler=scheduler,
                                            search_alg=BasicVariantGenerator(random_state=s.seed,
                                                                             max_concurrent=n_conc),
                                            time_budget_s=space.spec.budget.time_budget_s),
                # num_to_keep=1: Tune snapshots the experiment after every trial checkpoint (a restore loses nothing)
                run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=1,
                                          callbacks=[status_callback(out / f"{name}.status.json", exp_path)],
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                          failure_config=tune.FailureConfig(max_failures=1)))
        say(f"{space.n_trials()} trial(s), up to {n_conc} at a time; MLflow parent run {parent.run_id}")
        grid = tuner.fit()
        table = reconcile(tracker, parent.run_id, grid, names, name)
        result = CampaignResult(name, out, parent.run_id, table, names, restored, tracker.uri,
                                cfg.tracking.experiment)
        _summarise(result, parent, mode)
    return result


def status_callback(path: Path, exp_path: Path):
    """A Tune callback that keeps <out>/<name>.status.json current with what a restore would continue from.

    Tune saves its experiment snapshot to a staging directory and copies it to storage in a background thread, so
    the driver's in-memory trials run ahead of what survives a SIGKILL. Each trial's `status`, `iteration` and
    `checkpoint` here are read from the newest snapshot *in storage* (`experiment_state-*.json`, the file
    `Tuner.restore` reads); `live_status` and `live_iteration` are the driver's current view. A job monitor can
    read the file without Ray."""
    from ray.tune import Callback

    def persisted(newest: Path) -> dict[str, dict] | None:
        try:
            snap = json.loads(newest.read_text())
        except (OSError, ValueError):  # caught mid-copy: the next step reads it whole
            return None
        res = {}
        for trial_json, meta_json in snap.get("trial_data", []):
            trial, meta = json.loads(trial_json), json.loads(meta_json)
            last = meta.get("last_result") or {}
            res[trial["trial_id"]] = {"status": trial["status"], "iteration": last.get("training_iteration", 0),
                                      "checkpoint": last.get("checkpoint_dir_name")}
        return res

    class _Status(Callback):
        def __init__(self) -> None:
            self.last: str | None = None
            self.stamp: tuple | None = None
            self.saved: dict[str, dict] = {}

        def on_step_end(self, iteration: int, trials: list, **info) -> None:
            stamp = tuple(sorted((f.stat().st_mtime_ns, f.name) for f in exp_path.glob("experiment_state-*.json")))
            if stamp and stamp != self.stamp:  # re-read only when the storage copy changed
                saved = persisted(exp_path / stamp[-1][1])
                if saved is not None:
                    self.stamp, self.saved = stamp, saved
            none = {"status": "PENDING", "iteration": 0, "checkpoint": None}
            state = {t.trial_id: {**self.saved.get(t.trial_id, none), "live_status": t.status,
                                  "live_iteration": (t.last_result or {}).get("training_iteration", 0)}
                     for t in trials}
            text = json.dumps(state, sort_keys=True)
            if text != self.last:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
                self.last = text

    return _Status()


def reconcile(tracker, parent_id: str | None, grid, names: dict, campaign: str) -> pd.DataFrame:
    """Make MLflow agree with Tune: exactly one child per trial, final metrics equal to Tune's results."""
    rows = []
    client = None
    children: dict[str, list] = {}
    if parent_id and tracker.active:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracker.uri)
        runs = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'",
                                  max_results=50_000, order_by=["attributes.start_time ASC"])
        for r in runs:
            children.setdefault(r.data.tags.get("fairray.trial_id", ""), []).append(r)
    keys = [names["fairness"][0], names["quality"][0], "objective"]
    for res in grid:
        m = res.metrics or {}
        trial_id = m.get("trial_id") or Path(res.path).name
        params = dict(res.config or {})
        row = {"trial_id": trial_id, **{f"param.{k}": v for k, v in params.items()},
               **{k: m.get(k) for k in keys}, "iterations": m.get("training_iteration"),
               "seconds": m.get("trial_seconds"), "error": str(res.error).splitlines()[0] if res.error else None,
               "run_id": None}
        found = children.pop(trial_id, [])
        if client is not None:
            run_id = found[0].info.run_id if found else None
            for extra in found[1:]:
                client.delete_run(extra.info.run_id)
            if run_id is None:  # the trial's own logging failed (e.g. a locked store): backfill from Tune
                run = client.create_run(tracker.experiment_id, run_name=f"{campaign} {trial_id}",
                                        tags={"mlflow.parentRunId": parent_id, "fairray.trial_id": trial_id,
                                              "fairray.trial_key": f"{campaign}:{trial_id}",
                                              "fairray.backfilled": "1"})
                run_id = run.info.run_id
                for k, v in params.items():
                    client.log_param(run_id, k, str(v))
            logged = client.get_run(run_id).data.metrics
            step = int(m.get("training_iteration") or 0)
            for k in keys:
                if m.get(k) is not None and (k not in logged or abs(logged[k] - m[k]) > 1e-12 * max(1, abs(m[k]))):
                    client.log_metric(run_id, k, float(m[k]), step=step)
            client.set_terminated(run_id, "FAILED" if res.error else "FINISHED")
            row["run_id"] = run_id
        rows.append(row)
    if client is not None:
        for orphans in children.values():  # children of trials Tune no longer knows (lost before a snapshot)
            for r in orphans:
                client.delete_run(r.info.run_id)
    return pd.DataFrame(rows)


def _summarise(result: CampaignResult, parent, mode: str) -> None:
    from fairray.compare import pareto_front

    t = result.table
    (f_name, f_mode), (q_name, q_mode) = result.metrics["fairness"], result.metrics["quality"]
    ok = t[t[f_name].notna() & t[q_name].notna()] if len(t) else t
    if len(ok):
        front = pareto_front(ok[f_name], ok[q_name], f_mode, q_mode)
        t.loc[ok.index, "pareto"] = front
        best = ok.loc[(ok.objective.idxmin() if mode == "min" else ok.objective.idxmax())]
        result.best = best.to_dict()
        parent.log_metrics({"campaign_trials": float(len(t)), "campaign_best_objective": float(best.objective),
                            f"campaign_best_{f_name}": float(best[f_name]),
                            f"campaign_best_{q_name}": float(best[q_name])})
        parent.set_tags({"fairray.best_trial": str(best.trial_id)})
    csv = result.out / f"{result.name}.trials.csv"
    t.to_csv(csv, index=False)
    parent.log_artifact(csv, "campaign")
