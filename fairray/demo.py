"""`fairray demo`: the end-to-end tour on SynthFaces, every stage tracked in MLflow, one HTML report.

data -> attrclf (Ray Train) -> label + balance (Ray Data) -> fairgen density ratio -> unweighted vs reweighted
GAN (Ray Train) -> fairness of generated samples -> report.html.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fairray.config import BalanceConfig, DemoConfig, LabelConfig, ReweightConfig, dump_config
from fairray.data import synth_dataset
from fairray.data.attributes import attribute_values
from fairray.data.summary import share_tables, value_counts
from fairray.data.table import decode_images, read_table
from fairray.errors import FairrayError
from fairray.metrics.fairness import fairness_discrepancy, kl_to_uniform
from fairray.report import Section, fig_png, grid_figure, shares_figure, write_html
from fairray.report_runs import build as build_report
from fairray.report_runs import log_section
from fairray.tracking import RunHandle, Tracker

SHOWN_ATTRIBUTES = ["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]
# Expected seconds per stage on a 2-core machine with default settings: drives the "time left" estimate.
BUDGET = {"data": 8, "attrclf": 55, "label": 15, "balance": 10, "reweight": 25, "gan": 170, "report": 8}


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
        png = fig_png(grid_figure(decode_images(blobs), cfg.grid_size, f"{subset} set (first {n})"),
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
    metrics = attrclf.run(cfg, c.out / "attrclf_run", progress=False, tracker=c.tracker, parent=c.parent)
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
    from fairray.data.pipeline import label

    out = c.out / "labeled"
    s = label(LabelConfig(dataset=str(c.paths["data"]), labeler=f"attrclf:{c.paths['attrclf']}"), out)
    c.paths["labeled"] = out
    c.result.metrics["label"] = {f"agreement_{h}": e.get("agreement_with_ground_truth", float("nan"))
                                 for h, e in s["heads"].items()} | {"rows": s["rows_out"], "errors": s["errors"]}
    g = s["heads"]["gender"]
    text = (f"Ray Data streamed {s['rows_out']:,} rows through a decode task and an attrclf actor pool "
            f"({s['errors']} bad rows). Predicted gender shares {g['shares'][0]:.3f}/{g['shares'][1]:.3f} vs ground "
            f"truth; agreement {g['agreement_with_ground_truth']:.1%}.")
    with c.tracker.run("label", parent=c.parent, tags={"fairray.stage": "label"}) as run:
        run.log_metrics(c.result.metrics["label"])
        c.add(Section("Labeling with Ray Data", text,
                      [("labeled vs ground truth vs uniform", (out / "distributions.png").read_bytes())]), run)


def stage_balance(c: Ctx) -> None:
    from fairray.data.pipeline import balance

    s = balance(BalanceConfig(dataset=str(c.paths["labeled"]), by=["gender", "tone4"]), c.out / "balanced")
    c.result.metrics["balance"] = {"rows_in": s["rows_in"], "rows_out": s["rows_out"]}
    table = pd.DataFrame(s["cells"]).T.astype({"rows": int})
    text = (f"Balancing over predicted gender x tone4 (fair-distill's balanced sampler) keeps exactly "
            f"{int(table.rows.iloc[0])} rows per cell: {s['rows_in']:,} -> {s['rows_out']:,} rows.")
    with c.tracker.run("balance", parent=c.parent, tags={"fairray.stage": "balance"}) as run:
        run.log_metrics(c.result.metrics["balance"])
        c.add(Section("Balancing (gender x tone4)", text, [], table), run)


def stage_reweight(c: Ctx) -> None:
    from fairray.debias import reweight

    cfg = ReweightConfig(dataset=str(c.paths["data"]), epochs=c.cfg.ratio_epochs, resolution=c.cfg.synth.resolution)
    r = reweight.run(cfg, c.out / "reweighted")
    c.paths["reweighted"] = c.out / "reweighted"
    c.result.metrics["reweight"] = {k: v for k, v in r.items() if isinstance(v, float)}
    ws, us = r["weights"]["weighted_share_gender"], r["weights"]["unweighted_share_gender"]
    text = (f"fairgen's density-ratio classifier (reference vs biased) reaches balanced accuracy "
            f"{r['ratio_clf_balanced_acc_val']:.1%}; temperature scaling moves its ECE from "
            f"{r['ratio_clf_ece_val_raw']:.3f} to {r['ratio_clf_ece_val']:.3f}. With w = D/(1-D), clipped at "
            f"{r['clip_max']:.1f}, the female share D sees rises from {us.get(1, 0):.1%} to {ws.get(1, 0):.1%}.")
    with c.tracker.run("density-ratio", parent=c.parent, tags={"fairray.stage": "reweight"}) as run:
        run.log_metrics(c.result.metrics["reweight"])
        c.add(Section("fairgen density ratio", text, [
            ("reliability before/after calibration", (c.out / "reweighted" / "ratio_calibration.png").read_bytes())]),
            run)


def stage_gan(c: Ctx) -> None:
    from fairray.labelers.attrclf import AttrClfLabeler
    from fairray.metrics.generated import count_tag, evaluate_samples, sample
    from fairray.train import gan
    from fairray.train.gan import reference_images

    dataset = c.paths.get("reweighted", c.paths["data"])
    labeler = AttrClfLabeler(c.paths["attrclf"])
    ref = reference_images(dataset, c.cfg.synth.resolution, c.cfg.eval_n)
    tag = count_tag(c.cfg.eval_n)
    rows, grids, shares = {}, [], {}
    for name, reweight in (("gan-unweighted", "none"), ("gan-reweighted", "weight")):
        cfg = c.cfg.gan.model_copy(update={"dataset": str(dataset), "name": name, "reweight": reweight,
                                           "tracking": c.cfg.tracking, "resolution": c.cfg.synth.resolution})
        with c.tracker.run(name, parent=c.parent, tags={"fairray.stage": "gan"}) as run:
            run.log_params({"reweight": reweight, "alpha": cfg.alpha, "kimg": cfg.kimg})
            tracking = {"out": str(c.out.resolve()), "experiment": c.cfg.tracking.experiment, "uri": c.tracker.uri,
                        "run_id": run.run_id}  # rank 0 streams tick metrics into this child run
            ckpt = gan.fit(cfg, dataset, c.out / "gans", tracking)
            G, _ = gan.load_generator(ckpt)
            images, _ = sample(G, c.cfg.eval_n, cfg.z_dim, seed=7)  # the same latents for both GANs
            m = evaluate_samples(images, labeler, ["gender"], reference=ref)
            rows[name] = m
            run.log_metrics(m)
            png = fig_png(grid_figure(images[:64], 8, f"{name} (same latents)"), c.out / f"grid_{name}.png")
            run.log_artifact(c.out / f"grid_{name}.png", "grids")
        grids.append((name, png))
        shares[name] = m[f"share_gender_1_{tag}"]
    c.result.metrics |= rows
    fd = {n: rows[n][f"fairness_discrepancy_gender_{tag}"] for n in rows}
    table = pd.DataFrame({n: {k: v for k, v in m.items() if k.startswith(("fairness_", "fd_", "share_gender_1"))}
                          for n, m in rows.items()}).T
    data_share = c.result.metrics.get("data-biased", {}).get("share_gender_1_exact", 0.1)
    text = (f"Both GANs saw the same images for {c.cfg.gan.kimg:g} kimg. The unweighted GAN makes "
            f"{shares['gan-unweighted']:.1%} female-presenting faces (data: {data_share:.0%}); fairgen's "
            f"reweighting lifts that to {shares['gan-reweighted']:.1%}, so fairness discrepancy goes "
            f"{fd['gan-unweighted']:.3f} -> {fd['gan-reweighted']:.3f} "
            f"({1 - fd['gan-reweighted'] / max(fd['gan-unweighted'], 1e-9):.0%} lower). Shares are attrclf labels "
            f"of {c.cfg.eval_n:,} samples with bootstrap intervals in MLflow.")
    c.add(Section("GANs: unweighted vs fairgen-reweighted", text, grids, table))


STAGES: dict[str, Callable[[Ctx], None]] = {
    "data": stage_data, "attrclf": stage_attrclf, "label": stage_label, "balance": stage_balance,
    "reweight": stage_reweight, "gan": stage_gan,
}
REQUIRES = {"attrclf": [], "label": ["attrclf"], "balance": ["label"], "reweight": [], "gan": ["attrclf"]}


def run_demo(cfg: DemoConfig, out: Path, say: Callable[[str], None] = print) -> DemoResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    steps = ["data"] + [s for s in cfg.steps if s != "data"]
    for s in steps:
        missing = [r for r in REQUIRES.get(s, []) if r not in steps]
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
        parent.log_metrics({f"seconds_{s}": v for s, v in result.seconds.items()}
                           | {"seconds_total": time.perf_counter() - t_start})
    (out / "demo_metrics.json").write_text(json.dumps({"metrics": result.metrics, "seconds": result.seconds},
                                                      indent=2, default=float))
    return result
