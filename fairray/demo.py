"""`fairray demo`: the end-to-end tour on SynthFaces. Each stage is timed and tracked in MLflow."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fairray.config import DemoConfig, dump_config
from fairray.data import synth_dataset
from fairray.data.attributes import attribute_values
from fairray.data.summary import share_tables, value_counts
from fairray.data.table import decode_images, read_table
from fairray.metrics.fairness import fairness_discrepancy, kl_to_uniform
from fairray.report import Section, fig_png, grid_figure, shares_figure, write_html
from fairray.tracking import Tracker

SHOWN_ATTRIBUTES = ["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]


@dataclass
class DemoResult:
    out: Path
    report: Path
    tracking_uri: str
    experiment: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def data_metrics(df, attrs: list[str]) -> dict[str, float]:
    """Exact-label distribution metrics of a table, named by protocol (`_exact`: ground truth, all rows)."""
    m: dict[str, float] = {"rows": float(len(df))}
    for a in attrs:
        p = value_counts(df, [a]).to_numpy() / max(len(df), 1)
        m[f"fairness_discrepancy_{a}_exact"] = fairness_discrepancy(p)
        m[f"kl_to_uniform_{a}_exact"] = kl_to_uniform(p)
        for v, share in zip(attribute_values(a), p, strict=True):
            m[f"share_{a}_{v}_exact"] = float(share)
    return m


def run_demo(cfg: DemoConfig, out: Path, say: Callable[[str], None] = print) -> DemoResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    tracker = Tracker(out, cfg.tracking.experiment, cfg.tracking.uri, cfg.tracking.enabled)
    stages = ["render SynthFaces", "measure and log", "report"]
    clock: dict[str, float] = {}

    def stage(i: int) -> None:
        clock[stages[i]] = time.perf_counter()
        say(f"[{i + 1}/{len(stages)}] {stages[i]}")

    result = DemoResult(out, out / "report.html", tracker.uri, cfg.tracking.experiment)
    with tracker.run("demo", tags={"fairray.command": "demo"}) as parent:
        parent.log_params(cfg.model_dump(mode="json"))
        stage(0)
        data_dir = out / "data" / "synthfaces"
        manifest = synth_dataset.build(cfg.synth, data_dir)
        parent.set_tags({"dataset.fingerprint": manifest["fingerprint"]})

        stage(1)
        df = read_table(data_dir)
        bias_attrs = manifest["bias_attributes"]
        attrs = list(dict.fromkeys(bias_attrs + SHOWN_ATTRIBUTES))
        for subset in ("biased", "reference"):
            part = df[(df.subset == subset) & (df.split == "train")]
            metrics = data_metrics(part, attrs)
            result.metrics[subset] = metrics
            with tracker.run(f"data-{subset}", parent=parent, tags={"fairray.stage": "data"}) as child:
                child.log_params({"subset": subset, "bias": manifest["bias"], "perc": cfg.synth.perc,
                                  "seed": cfg.synth.seed, "resolution": cfg.synth.resolution,
                                  "fingerprint": manifest["fingerprint"]})
                child.log_metrics(metrics)

        stage(2)
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
        parent.log_artifact(out / "shares.png", "charts")
        for subset in ("biased", "reference"):
            parent.log_artifact(out / f"grid_{subset}.png", "grids")
        summary = _summary_table(result.metrics, bias_attrs)
        b, r = result.metrics["biased"], result.metrics["reference"]
        key = f"fairness_discrepancy_{bias_attrs[0]}_exact" if bias_attrs else None
        text = (f"The biased set follows '{manifest['bias']}' exactly; the reference set is balanced over "
                f"{' x '.join(bias_attrs) or 'nothing'} and is {cfg.synth.perc:.0%} the size. "
                + (f"Fairness discrepancy (L2 to uniform, {bias_attrs[0]}) is {b[key]:.3f} in the biased set "
                   f"and {r[key]:.3f} in the reference set." if key else ""))
        sections = [
            Section("Data: biased vs balanced reference", text, [("attribute shares", shares_png)], summary),
            Section("Sample grids", "", grids),
        ]
        subtitle = (f"SynthFaces {cfg.synth.resolution}px, {manifest['rows']:,} images, bias {manifest['bias']}; "
                    f"MLflow: {tracker.uri} (experiment {cfg.tracking.experiment})")
        write_html(result.report, "fairray demo report", subtitle, sections)
        parent.log_artifact(result.report)
        end = time.perf_counter()
        names = list(clock)
        for i, s in enumerate(names):
            result.seconds[s] = (clock[names[i + 1]] if i + 1 < len(names) else end) - clock[s]
        parent.log_metrics({f"seconds_{s.replace(' ', '_')}": v for s, v in result.seconds.items()})
    return result


def _summary_table(metrics: dict[str, dict[str, float]], attrs: list[str]):
    import pandas as pd

    rows = {}
    for subset, m in metrics.items():
        row = {"rows": int(m["rows"])}
        for a in attrs:
            row[f"fairness_discrepancy_{a}_exact"] = m[f"fairness_discrepancy_{a}_exact"]
            row[f"kl_to_uniform_{a}_exact"] = m[f"kl_to_uniform_{a}_exact"]
        rows[subset] = row
    return pd.DataFrame.from_dict(rows, orient="index")



