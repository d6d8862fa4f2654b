"""`fairray demo`: the end-to-end tour on SynthFaces, every stage tracked in MLflow, one HTML report.

data -> attrclf (Ray Train) -> label + balance (Ray Data) -> fairgen density ratio -> a Ray Tune grid over alpha of
Ray Train GANs (alpha 0 = unweighted) with fairness/quality of their samples -> fair distillation of the unweighted
GAN into a balanced student -> baseline vs latent-debiased downstream classifier -> report.html.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fairray.config import (
    BalanceConfig,
    DemoConfig,
    DistillConfig,
    FairClassifierConfig,
    LabelConfig,
    ReweightConfig,
    dump_config,
)
from fairray.data import synth_dataset
from fairray.data.attributes import attribute_values
from fairray.data.decode import decode_column
from fairray.data.summary import share_tables, value_counts
from fairray.data.table import read_table
from fairray.errors import FairrayError
from fairray.metrics.fairness import fairness_discrepancy, kl_to_uniform
from fairray.metrics.names import sampled
from fairray.narrative import change, direction
from fairray.report import Section, fig_png, grid_figure, shares_figure, write_html
from fairray.report_runs import build as build_report
from fairray.report_runs import log_section
from fairray.stage import RunContext
from fairray.tracking import RunHandle, Tracker

SHOWN_ATTRIBUTES = ["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]
# Expected seconds per stage on a 2-core machine with default settings: drives the "time left" estimate.
# Measured 2026-12-06 on an AMD EPYC (seeds 0-5, benchmarks/demo_validity.py), rounded up for a cold first run.
BUDGET = {"data": 5, "attrclf": 30, "label": 18, "balance": 9, "reweight": 8, "gan": 125, "distill": 56,
          "classifier": 28, "report": 1}  # reweight's time is what is left of it after label -> balance (BACKGROUND)


@dataclass
class DemoResult:
    out: Path
    report: Path
    tracking_uri: str
    experiment: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Ctx:
    cfg: DemoConfig
    out: Path
    tracker: Tracker
    parent: RunHandle
    result: DemoResult
    sections: list[Section] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    pending: dict = field(default_factory=dict)  # stage -> ObjectRef of its job started early (see BACKGROUND)

    def add(self, section: Section, run: RunHandle | None = None) -> None:
        """Keep a report section and store it in MLflow, which the report is built from."""
        self.sections.append(section)
        log_section(run or self.parent, section, len(self.sections))


def data_metrics(df: pd.DataFrame, attrs: list[str]) -> dict[str, float]:
    """Exact-label distribution metrics of a table, named by protocol (`_exact`: ground truth, all rows)."""
    m: dict[str, float] = {"rows": float(len(df))}
    for a in attrs:
        p = value_counts(df, [a]).to_numpy() / max(len(df), 1)
        m[f"fairness_discrepancy_{a}_exact"] = fairness_discrepancy(p)
        m[f"kl_to_uniform_{a}_exact"] = kl_to_uniform(p)
        for v, share in zip(attribute_values(a), p, strict=True):
            m[f"share_{a}_{v}_exact"] = float(share)
    return m


def stage_data(c: Ctx) -> None:
    cfg, out = c.cfg, c.out
    data_dir = out / "data" / "synthfaces"
    c.manifest = synth_dataset.build(cfg.synth, data_dir)
    c.paths["data"] = data_dir
    c.parent.set_tags({"dataset.fingerprint": c.manifest["fingerprint"]})
    df = read_table(data_dir)
    bias_attrs = c.manifest["bias_attributes"]
    attrs = list(dict.fromkeys(bias_attrs + SHOWN_ATTRIBUTES))
    for subset in ("biased", "reference"):
        part = df[(df.subset == subset) & (df.split == "train")]
        metrics = data_metrics(part, attrs)
        c.result.metrics[f"data-{subset}"] = metrics
        with c.tracker.run(f"data-{subset}", parent=c.parent, tags={"fairray.stage": "data"}) as child:
            child.log_params({"subset": subset, "bias": c.manifest["bias"], "perc": cfg.synth.perc,
                              "seed": cfg.synth.seed, "resolution": cfg.synth.resolution,
                              "fingerprint": c.manifest["fingerprint"]})
            child.log_metrics(metrics)
    train = df[df.split == "train"]
    intersections = [bias_attrs] if len(bias_attrs) > 1 else [[bias_attrs[0], "tone4"]] if bias_attrs else []
    tables = share_tables(train, attrs, intersections, group="subset")
    target = {a: 1.0 / len(attribute_values(a)) for a in bias_attrs}
    shares_png = fig_png(shares_figure(tables, "Attribute shares, train split", target), out / "shares.png")
    n = cfg.grid_size**2
    grids = []
    for subset in ("biased", "reference"):
        blobs = train[train.subset == subset].image.iloc[:n]
        png = fig_png(grid_figure(decode_column(blobs)[0], cfg.grid_size, f"{subset} set (first {n})"),
                      out / f"grid_{subset}.png")
        grids.append((f"{subset}: first {n} training images", png))
        c.parent.log_artifact(out / f"grid_{subset}.png", "grids")
    c.parent.log_artifact(out / "shares.png", "charts")
    b, r = c.result.metrics["data-biased"], c.result.metrics["data-reference"]
    key = f"fairness_discrepancy_{bias_attrs[0]}_exact" if bias_attrs else None
    text = (f"The biased set follows '{c.manifest['bias']}' exactly; the reference set is balanced over "
            f"{' x '.join(bias_attrs) or 'nothing'} and is {cfg.synth.perc:.0%} the size. "
            + (f"Fairness discrepancy (L2 to uniform, {bias_attrs[0]}) is {b[key]:.3f} in the biased set "
               f"and {r[key]:.3f} in the reference set." if key else ""))
    summary = pd.DataFrame.from_dict(
        {s: {"rows": int(m["rows"]), **{k: m[k] for k in m if k.startswith(("fairness_", "kl_"))
                                        and any(k.endswith(f"_{a}_exact") for a in bias_attrs)}}
         for s, m in (("biased", b), ("reference", r))}, orient="index")
    c.add(Section("Data: biased vs balanced reference", text, [("attribute shares", shares_png)], summary))
    c.add(Section("Sample grids", "", grids))


def stage_attrclf(c: Ctx) -> None:
    from fairray.train import attrclf

    cfg = c.cfg.attrclf
    metrics = attrclf.run(cfg, c.out / "attrclf_run", RunContext(tracker=c.tracker, parent=c.parent, progress=False))
    c.paths["attrclf"] = c.out / "attrclf_run" / "attrclf"
    c.result.metrics["attrclf"] = metrics
    table = pd.DataFrame({h: {"test accuracy": metrics[f"acc_{h}_test"], "ECE": metrics[f"ece_{h}_test"]}
                          for h in cfg.heads}).T
    worst = min(cfg.heads, key=lambda h: metrics[f"acc_{h}_test"])
    text = (f"fairray's own attribute classifier, trained with Ray Train on a separate balanced SynthFaces set and "
            f"temperature-calibrated on its val split. Its weakest head is {worst} at "
            f"{metrics[f'acc_{worst}_test']:.1%}; it labels everything below.")
    png = (c.paths["attrclf"] / "calibration.png").read_bytes()
    c.add(Section("Attribute classifier (attrclf)", text, [("reliability after calibration", png)], table))


def stage_label(c: Ctx) -> None:
    from fairray.data.pipeline import label, label_metrics

    out = c.out / "labeled"
    s = label(LabelConfig(dataset=str(c.paths["data"]), labeler=f"attrclf:{c.paths['attrclf']}"), out)
    c.paths["labeled"] = out
    c.result.metrics["label"] = label_metrics(s) | {"rows": s["rows_out"]}
    g = s["heads"]["gender"]
    text = (f"Ray Data streamed {s['rows_out']:,} rows through one decode + attrclf actor stage "
            f"({s['errors']} bad rows). Predicted gender shares {g['shares'][0]:.3f}/{g['shares'][1]:.3f} vs ground "
            f"truth; agreement {g['agreement_with_ground_truth']:.1%}.")
    with c.tracker.run("label", parent=c.parent, tags={"fairray.stage": "label"}) as run:
        run.log_metrics(c.result.metrics["label"])
        c.add(Section("Labeling with Ray Data", text,
                      [("labeled vs ground truth vs uniform", (out / "distributions.png").read_bytes())]), run)


def stage_balance(c: Ctx) -> None:
    from fairray.data.pipeline import balance

    s = balance(BalanceConfig(dataset=str(c.paths["labeled"]), by=["gender", "tone4"], seed=c.cfg.seed or 0),
                c.out / "balanced")
    c.result.metrics["balance"] = {"rows_in": s["rows_in"], "rows_out": s["rows_out"]}
    table = pd.DataFrame(s["cells"]).T.astype({"rows": int})
    text = (f"Balancing over predicted gender x tone4 (fair-distill's balanced sampler) keeps exactly "
            f"{int(table.rows.iloc[0])} rows per cell: {s['rows_in']:,} -> {s['rows_out']:,} rows.")
    with c.tracker.run("balance", parent=c.parent, tags={"fairray.stage": "balance"}) as run:
        run.log_metrics(c.result.metrics["balance"])
        c.add(Section("Balancing (gender x tone4)", text, [], table), run)


def start_reweight(c: Ctx):
    """fairgen's density-ratio job as a Ray task: it needs only the data (and the attrclf, whose features it reads
    with `ratio_encoder`), so it runs beside attrclf (or label) -> balance (whose Ray Train and Ray Data start-ups
    leave the CPUs idle for seconds at a time)."""
    import ray

    from fairray.debias import reweight
    from fairray.ray_env import init_ray

    init_ray()
    cfg = ReweightConfig(dataset=str(c.paths["data"]), epochs=c.cfg.ratio_epochs, resolution=c.cfg.synth.resolution,
                         encoder=f"attrclf:{c.paths['attrclf']}" if c.cfg.ratio_encoder else None,
                         seed=c.cfg.seed or 0)
    # num_cpus=0: a driver-like task (one torch thread); its Ray Data pass asks for CPUs of its own
    return ray.remote(num_cpus=0, max_retries=0)(reweight.run).remote(cfg, c.out / "reweighted")


VERB = {"rose": "rises from", "fell": "falls from", "unchanged": "stays about the same,", "unknown": "goes from"}


def stage_reweight(c: Ctx) -> None:
    import ray

    if "reweight" not in c.pending:
        c.pending["reweight"] = start_reweight(c)
    r = ray.get(c.pending.pop("reweight"))
    c.paths["reweighted"] = c.out / "reweighted"
    ws, us = r["weights"]["weighted_share_gender"], r["weights"]["unweighted_share_gender"]
    c.result.metrics["reweight"] = {k: v for k, v in r.items() if isinstance(v, float)} | {
        "unweighted_share_gender_1": float(us.get(1, 0)), "weighted_share_gender_1": float(ws.get(1, 0))}
    how = ("a class-balanced logistic regression on the attrclf's features" if c.cfg.ratio_encoder
           else "fairgen's CNN trained on the pixels")
    text = (f"fairgen's density-ratio classifier (reference vs biased; {how}) reaches balanced accuracy "
            f"{r['ratio_clf_balanced_acc_val']:.1%}; "
            + (f"its held-out ECE is {r['ratio_clf_ece_val_raw']:.3f} (no calibration map)"
               if r["calibration"] == "none" else
               f"{r['calibration']} calibration moves its held-out ECE from {r['ratio_clf_ece_val_raw']:.3f} to "
               f"{r['ratio_clf_ece_val']:.3f}")
            + f". With w = D/(1-D), clipped at "
            f"{r['clip_max']:.1f}, the female share D sees "
            f"{VERB[direction(us.get(1, 0), ws.get(1, 0))]} {us.get(1, 0):.1%} to {ws.get(1, 0):.1%}.")
    with c.tracker.run("density-ratio", parent=c.parent, tags={"fairray.stage": "reweight"}) as run:
        run.log_metrics(c.result.metrics["reweight"])
        c.add(Section("fairgen density ratio", text, [
            ("reliability before/after calibration", (c.out / "reweighted" / "ratio_calibration.png").read_bytes())]),
            run)


def _campaign_space(c: Ctx) -> Path:
    """The GAN stage's Tune space, written into the run dir so `fairray tune` can reproduce any trial."""
    import yaml

    space = {"trainable": "gan", "description": "fairray demo: fairgen alpha sweep (alpha 0 = unweighted GAN)",
             "fixed": {"reweight": "weight"},
             "params": {"alpha": {"type": "grid", "values": list(c.cfg.alphas)}},
             "search": {"searcher": "grid", "scheduler": "fifo"}, "objective": {"metric": "fairness"},
             "budget": {"max_trials": len(c.cfg.alphas), "evaluations": 1,
                        "max_concurrent_trials": len(c.cfg.alphas)}}
    path = c.out / "demo_alpha.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _share_of_cpus(trials: int, trial_cpus: float) -> float:
    """CPUs per Train worker so every trial runs at once (their fixed start-up costs overlap)."""
    from fairray.ray_env import cluster_cpus, init_ray

    init_ray()
    return max(0.25, round((cluster_cpus() - trials * trial_cpus) / trials - 0.005, 2))


def stage_gan(c: Ctx) -> None:
    """Unweighted vs reweighted GANs as one Ray Tune grid over alpha (alpha 0 is the unweighted GAN)."""
    from fairray.config import TuneCampaignConfig
    from fairray.metrics.generated import count_tag
    from fairray.models.generator_io import load_generator, sample
    from fairray.report_runs import pareto_figure
    from fairray.tune.campaign import run_campaign
    from fairray.tune.spaces import load_space

    dataset = c.paths.get("reweighted", c.paths["data"])
    trial_cpus = 0.05
    gan = c.cfg.gan.model_dump(mode="json", exclude={"dataset", "name", "reweight", "alpha", "tracking"})
    if gan["ray"].get("cpus_per_worker") is None:
        gan["ray"]["cpus_per_worker"] = _share_of_cpus(len(c.cfg.alphas) * gan["ray"]["workers"], trial_cpus)
    gan["resolution"] = c.cfg.synth.resolution
    camp = TuneCampaignConfig(name="alpha", base=gan, dataset=str(dataset),
                              labeler=f"attrclf:{c.paths['attrclf']}", eval_n=c.cfg.eval_n, trial_cpus=trial_cpus,
                              tracking=c.cfg.tracking.model_copy(update={"uri": c.tracker.uri}))
    res = run_campaign(load_space(_campaign_space(c)), camp, c.out / "campaign", say=lambda s: None,
                       parent_run=c.parent)
    (f_name, _), (q_name, _) = res.metrics["fairness"], res.metrics["quality"]
    t = res.table.sort_values("param.alpha").reset_index(drop=True)
    failed = t[t[f_name].isna()]
    if len(failed):
        raise FairrayError(f"GAN trial(s) failed: {failed.error.tolist()}; see {c.out / 'campaign'}")
    tag = count_tag(c.cfg.eval_n)
    grids, rows = [], {}
    share_key = f"share_gender_1_{tag}"
    for _, r in t.iterrows():
        alpha = float(r["param.alpha"])
        name = "gan-unweighted" if alpha == 0 else f"gan-alpha{alpha:g}"
        trial = json.loads((c.out / "campaign" / "trials" / r.trial_id / "metrics.json").read_text())
        ckpt, metrics = Path(trial["checkpoint"]), trial["metrics"]
        G, gcfg = load_generator(ckpt)
        images, _ = sample(G, c.cfg.grid_size**2, gcfg.z_dim, seed=7)  # the same latents for every GAN
        png = fig_png(grid_figure(images, c.cfg.grid_size, f"alpha={alpha:g} (same latents)"),
                      c.out / f"grid_{name}.png")
        grids.append((f"alpha = {alpha:g}" + (" (unweighted)" if alpha == 0 else ""), png))
        shown = (f_name, q_name, share_key, f"precision_{tag}", f"coverage_{tag}", f"coverage_target_{tag}",
                 f"valid_{tag}")
        rows[name] = {"alpha": alpha, **{k: metrics[k] for k in shown if k in metrics}}
        c.result.metrics[name] = metrics
        c.paths[name] = ckpt
    c.paths["teacher"] = c.paths["gan-unweighted"]
    best = max((n for n in rows if n != "gan-unweighted"), key=lambda n: rows[n]["alpha"])
    c.paths["gan-fair"] = c.paths[best]
    c.result.metrics["gan-reweighted"] = c.result.metrics[best]
    table = pd.DataFrame(rows).T
    pts = pd.DataFrame({"run": [f"alpha={v['alpha']:g}" for v in rows.values()],
                        "fairness": [v[f_name] for v in rows.values()], "quality": [v[q_name] for v in rows.values()],
                        "fairness_metric": f_name, "quality_metric": q_name})
    pareto = fig_png(pareto_figure(pts, "alpha campaign: fairness vs quality"), c.out / "pareto_alpha.png")
    u, w = rows["gan-unweighted"], rows[best]
    data_share = c.result.metrics.get("data-biased", {}).get("share_gender_1_exact", 0.1)
    text = (f"A Ray Tune grid over fairgen's flattening power alpha ({len(rows)} trials, one Ray Train GAN each, "
            f"run side by side; alpha 0 is the unweighted GAN). Every GAN saw {c.cfg.gan.kimg:g} kimg of the same "
            f"data. Unweighted, {u[share_key]:.1%} of the faces are female-presenting (data: {data_share:.0%}); "
            f"at alpha {w['alpha']:g} it is {w[share_key]:.1%}; "
            f"{change('the fairness discrepancy', u[f_name], w[f_name])} and "
            f"{change(q_name, u[q_name], w[q_name], fmt='.2f')}. Shares are attrclf labels of {c.cfg.eval_n:,} "
            f"samples (bootstrap intervals in MLflow); each trial is an MLflow child run of the campaign."
            + not_meaningful({n: v.get(f"valid_{tag}") for n, v in rows.items()}))
    c.add(Section("GANs: unweighted vs fairgen-reweighted (Ray Tune alpha campaign)", text,
                  [("fairness vs quality per alpha (Pareto front in red)", pareto), *grids], table))


def not_meaningful(valid: dict[str, float | None]) -> str:
    """The sentence a section adds when some generator's samples fail the validity rule (empty when none do)."""
    from fairray.metrics.validity import VALIDITY_RULE

    bad = [name for name, flag in valid.items() if flag == 0]
    if not bad:
        return ""
    return (f" Not meaningful: the samples of {', '.join(bad)} fail the validity rule ({VALIDITY_RULE}), so "
            f"{'its' if len(bad) == 1 else 'their'} fairness numbers above describe what the labeler reads in "
            f"images unlike faces, not an effect.")


def distill_config(cfg: DemoConfig, teacher: Path, attrclf: Path, data: Path) -> DistillConfig:
    """The distill stage's config: the demo's distill settings on its teacher, attrclf and data (also what
    benchmarks/demo_distill_variants.py re-runs on a finished demo). Tracking off: the stage logs the run itself."""
    return cfg.distill.model_copy(update={
        "teacher": str(teacher), "labeler": f"attrclf:{attrclf}", "reference": str(data),
        "tracking": cfg.tracking.model_copy(update={"enabled": False})})


def stage_distill(c: Ctx) -> None:
    """The unweighted GAN as teacher -> labeled pairs (Ray Data) -> balanced sampler -> small fair student."""
    from fairray.metrics.generated import count_tag
    from fairray.train import distill

    cfg = distill_config(c.cfg, c.paths["teacher"], c.paths["attrclf"], c.paths["data"])
    with c.tracker.run("distill", parent=c.parent, tags={"fairray.stage": "distill"}) as run:
        run.log_params(cfg.model_dump(mode="json"))
        m = {k: v for k, v in distill.run(cfg, c.out / "distill", RunContext(progress=False)).items()
             if isinstance(v, float)}
        run.log_metrics(m)
        c.result.metrics["distill"] = m
        tag = count_tag(cfg.eval_n)
        f, q, sh = f"fairness_discrepancy_gender_{tag}", f"fd_attrclf_{tag}", f"share_gender_1_{tag}"
        v = f"valid_{tag}"
        table = pd.DataFrame({"teacher": {"params": m["teacher_params"], sh: m[f"teacher_{sh}"],
                                          f: m[f"teacher_{f}"], q: m[f"teacher_{q}"], v: m.get(f"teacher_{v}")},
                              "student": {"params": m["student_params"], sh: m[sh], f: m[f], q: m[q],
                                          v: m.get(v)}}).T
        text = (f"The unweighted GAN is the teacher. Ray Data drew {cfg.n_pairs:,} (latent, image) pairs and labeled "
                f"them; the balanced sampler evened out predicted gender and the student "
                f"({m['student_params'] / m['teacher_params']:.0%} of the teacher's parameters) was trained with Ray "
                f"Train on L1 + adversarial + feature losses plus the differentiable fairness term. On the same "
                f"latents the female-presenting share goes {m[f'teacher_{sh}']:.1%} (teacher) -> {m[sh]:.1%} "
                f"(student); {change(q, m[f'teacher_{q}'], m[q], fmt='.2f')}."
                + not_meaningful({"teacher": m.get(f"teacher_{v}"), "student": m.get(v)}))
        images = [(cap, (c.out / "distill" / f"{cfg.name}_{n}.png").read_bytes())
                  for cap, n in (("teacher vs student shares (same latents)", "shares"),
                                 ("same latents: teacher | student", "grids"))]
        c.add(Section("Fair distillation: teacher -> balanced student", text, images, table), run)


def classifier_runs(cfg: DemoConfig, generator: Path, attrclf: Path, out: Path, ctx: RunContext
                    ) -> tuple[FairClassifierConfig, dict, dict, str]:
    """The classifier stage's two runs: latent debiasing with `generator`'s complementary pairs, then the baseline
    trained for as many images as the debiased classifier saw (also what benchmarks/demo_classifier_variants.py
    re-runs on a finished demo). The pairs add rows and budget real_passes keeps each real row's passes, so the
    debiased classifier trains longer; at demo size longer training alone lowers DEO (a baseline of the config's
    kimg: lower DEO after debiasing in 5 of 6 Xeon seeds; trained as long: higher in 5 of 6 EPYC seeds,
    benchmarks/results/demo_classifier_matched.json). Returns the classifier config, both runs' metrics ({} when
    debiasing could not run) and why it was skipped ("" when it ran)."""
    from fairray.debias import latent
    from fairray.train import classifier

    lcfg = cfg.classifier.model_copy(update={"generator": str(generator), "labeler": f"attrclf:{attrclf}"})
    own = {"uri": ctx.tracker.uri} if ctx.tracker is not None else {"enabled": False}
    tracking = cfg.tracking.model_copy(update=own)
    clf = lcfg.classifier.model_copy(update={"tracking": tracking})
    clf = clf.model_copy(update={"dataset": str(classifier.dataset_path(clf, out))})
    try:
        deb = latent.run(lcfg.model_copy(update={"classifier": clf}), out,
                         RunContext(tracker=ctx.tracker, parent=ctx.parent, progress=ctx.progress))
        kimg, skipped = deb["kimg_trained"], ""
    except FairrayError as e:  # e.g. a generator too young to make both groups: report it, keep the baseline
        deb, kimg, skipped = {}, clf.kimg, f" Latent debiasing did not run: {e}."
    base = classifier.run(clf.model_copy(update={"kimg": kimg, "budget": "images"}), out,
                          RunContext(tracker=ctx.tracker, parent=ctx.parent, name="classifier-baseline",
                                     tags={"fairray.method": "baseline"}, progress=ctx.progress))
    return clf, base, deb, skipped


def stage_classifier(c: Ctx) -> None:
    """Baseline vs GAN latent debiasing for a downstream Smiling classifier on a Smiling x gender cut set. The
    latents come from the reweighted GAN: both genders are well represented in its latent space, so the protected
    hyperplane is fit on balanced hallucinated labels."""
    from fairray.metrics.downstream import metric_name

    clf, base, deb, skipped = classifier_runs(c.cfg, c.paths["gan-fair"], c.paths["attrclf"], c.out / "classifier",
                                              RunContext(tracker=c.tracker, parent=c.parent, progress=False))
    cfg = c.cfg.classifier
    t, g = clf.target, clf.protected
    keys = {label: metric_name(m, t, g) for label, m in (("accuracy", "acc"), ("worst-group accuracy", "worst_group_acc"),
                                                         ("DEO", "deo"), ("DP gap", "dp_gap"), ("EO gap", "eo_gap"))}
    rows = {"baseline": base} | ({"latent debiasing": deb} if deb else {})
    table = pd.DataFrame({n: {lab: m.get(k) for lab, k in keys.items()} for n, m in rows.items()}).T
    c.result.metrics["classifier-baseline"], c.result.metrics["classifier-latent"] = base, deb
    d0, d1 = base.get(keys["DEO"], float("nan")), deb.get(keys["DEO"], float("nan"))
    a0, a1 = base.get(keys["accuracy"], float("nan")), deb.get(keys["accuracy"], float("nan"))
    noise = clf.synth.ambiguity.get(t)  # the demo renders its classifier set from this config
    drawn = (f", with {t} drawn faintly or half-way in many faces (cue noise {noise:g}: the image cannot always tell, "
             f"so a classifier leans on {g})" if noise else "")
    text = (f"A {t} classifier trained on a set where {t} and {g} are cut 1:9:9:1 (DiGA's split){drawn}, scored on a "
            f"balanced test split; the baseline's DEO is {d0:.3f} at accuracy {a0:.1%}." + (skipped or (
                " GAN latent debiasing adds "
                + (f"the {int(deb.get('pairs_used', 0)):,} of {cfg.n_pairs:,} complementary pairs whose flip attrclf "
                   "confirms" if cfg.verified_only else f"{cfg.n_pairs:,} complementary pairs")
                + f" from the reweighted GAN (z and z' with "
                f"{t} kept and {g} flipped, from two linear SVMs in latent space)"
                + (f", trained until it has seen each real row as often as the baseline would in {clf.kimg:g} kimg "
                   f"({deb.get('kimg_trained', 0):.1f} kimg); the baseline trains as long, so a change is the pairs' "
                   "and not more training" if clf.budget == "real_passes" else "") + ": "
                f"{change('DEO', d0, d1, before_ci=ci(base, keys['DEO']), after_ci=ci(deb, keys['DEO']))}; "
                f"{change('accuracy', a0, a1, lower_is_better=False, fmt='.1%')}. "
                f"Flip check by attrclf: {deb.get('pairs_protected_flipped', 0):.0%} "
                f"of pairs flipped {g}, {deb.get('pairs_target_kept', 0):.0%} kept {t}.")))
    c.add(Section(f"Fair downstream classifier ({t} vs {g})", text, [], table))


def ci(metrics: dict, key: str) -> tuple[float, float] | None:
    """A metric's bootstrap interval (<key>_lo, <key>_hi) when the run logged one."""
    lo, hi = metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi")
    return (lo, hi) if lo is not None and hi is not None else None


STAGES: dict[str, Callable[[Ctx], None]] = {
    "data": stage_data, "attrclf": stage_attrclf, "label": stage_label, "balance": stage_balance,
    "reweight": stage_reweight, "gan": stage_gan, "distill": stage_distill, "classifier": stage_classifier,
}
# stage -> the stage at whose start it is launched as a Ray task, to overlap with the stages in between
BACKGROUND: dict[str, tuple[Callable[[DemoConfig], str], Callable]] = {
    "reweight": (lambda cfg: "label" if cfg.ratio_encoder else "attrclf", start_reweight)}


def requires(cfg: DemoConfig) -> dict[str, list[str]]:
    return {"attrclf": [], "label": ["attrclf"], "balance": ["label"],
            "reweight": ["attrclf"] if cfg.ratio_encoder else [], "gan": ["attrclf", "reweight"],
            "distill": ["gan"], "classifier": ["gan"]}


def finished(stage: str, m: dict[str, dict]) -> str:
    """The key numbers of a finished stage, for its one console line."""
    def get(run: str, prefix: str) -> float | None:
        return sampled(m.get(run, {}), prefix)

    def pct(v: float | None) -> str:
        return "?" if v is None else f"{v:.1%}"

    if stage == "data":
        exact = [m.get(r, {}).get("share_gender_1_exact") for r in ("data-biased", "data-reference")]
        return f"female {pct(exact[0])} biased, {pct(exact[1])} reference"
    if stage == "attrclf":
        return f"gender test accuracy {pct(m.get('attrclf', {}).get('acc_gender_test'))}"
    if stage == "label":
        return f"{int(m['label']['rows'])} rows, gender agreement {pct(m['label'].get('agreement_gender'))}"
    if stage == "balance":
        return f"{int(m['balance']['rows_out'])} of {int(m['balance']['rows_in'])} rows kept"
    if stage == "gan":
        u, w = m.get("gan-unweighted", {}), m.get("gan-reweighted", {})
        valid = [get(r, "valid") for r in ("gan-unweighted", "gan-reweighted")]
        return (f"female unweighted {pct(get('gan-unweighted', 'share_gender_1'))}, reweighted "
                f"{pct(get('gan-reweighted', 'share_gender_1'))}; valid {sum(v == 1 for v in valid)}/2"
                if u and w else "")
    if stage == "distill":
        return (f"student female {pct(get('distill', 'share_gender_1'))}, valid "
                f"{'yes' if get('distill', 'valid') == 1 else 'no'}")
    if stage == "classifier":
        b, d = m.get("classifier-baseline", {}), m.get("classifier-latent", {})
        deo = [sampled(r, "deo", parts=2) for r in (b, d)]
        return "" if deo[0] is None else f"DEO {deo[0]:.3f} -> " + ("skipped" if deo[1] is None else f"{deo[1]:.3f}")
    return ""


def run_demo(cfg: DemoConfig, out: Path, say: Callable[[str], None] = print) -> DemoResult:
    cfg = cfg.seeded()
    out = Path(out).resolve()  # Tune trials and Train workers run in other working directories
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    steps = ["data"] + [s for s in cfg.steps if s != "data"]
    for s in steps:
        missing = [r for r in requires(cfg).get(s, []) if r not in steps]
        if missing:
            raise FairrayError(f"demo step {s!r} needs {missing}; steps given: {cfg.steps}")
    tracker = Tracker(out, cfg.tracking.experiment, cfg.tracking.uri, cfg.tracking.enabled)
    result = DemoResult(out, out / "report.html", tracker.uri, cfg.tracking.experiment)
    t_start = time.perf_counter()
    with tracker.run("demo", tags={"fairray.command": "demo"}) as parent:
        parent.log_params(cfg.model_dump(mode="json"))
        c = Ctx(cfg, out, tracker, parent, result)
        plan = steps + ["report"]
        for i, s in enumerate(plan):
            elapsed = time.perf_counter() - t_start
            left = sum(BUDGET[p] for p in plan[i:])
            say(f"[{i + 1}/{len(plan)}] {s}  (elapsed {elapsed:.0f}s, about {left:.0f}s left)")
            t0 = time.perf_counter()
            for later, (at, launch) in BACKGROUND.items():
                if at(cfg) == s and later in steps:
                    c.pending[later] = launch(c)
            if s == "report":
                subtitle = (f"SynthFaces {cfg.synth.resolution}px, bias {c.manifest['bias']}; MLflow: {tracker.uri} "
                            f"(experiment {cfg.tracking.experiment})")
                parent.flush()
                if tracker.active:  # the report reads every number back from MLflow
                    build_report(tracker.uri, result.report, cfg.tracking.experiment, "fairray demo report", subtitle,
                                 run_id=parent.run_id)
                else:
                    write_html(result.report, "fairray demo report", subtitle, c.sections)
                parent.log_artifact(result.report)
            else:
                STAGES[s](c)
            result.seconds[s] = time.perf_counter() - t0
            say(f"      {s} done in {result.seconds[s]:.0f}s" + (f": {line}" if (line := finished(s, result.metrics))
                                                               else ""))
        parent.log_metrics({f"seconds_{s}": v for s, v in result.seconds.items()}
                           | {"seconds_total": time.perf_counter() - t_start})
    (out / "demo_metrics.json").write_text(json.dumps({"metrics": result.metrics, "seconds": result.seconds},
                                                      indent=2, default=float))
    return result
