"""`fairray compare`: every run in an MLflow store (campaign trials and single runs) on fairness vs quality.

A campaign's child runs say which metrics they optimise and in which direction (tags
`fairray.fairness_metric/_mode`, `fairray.quality_metric/_mode`); other runs are read by their protocol names
(`fairness_discrepancy_*` with `fd_attrclf_*`, or a downstream `eo_gap` with `acc`). Only runs measured by the same
pair of metrics are compared. The output: a table (params, fairness, quality, cost), the Pareto front, a scatter
PNG, a CSV, and optionally the fairest run whose quality meets a bound, with the command that reproduces it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairray.config import FairClassifierConfig, GanConfig
from fairray.errors import FairrayError
from fairray.tracking import PARENT_TAG

INTERVAL = ("_lo", "_hi", "_std", "_sd")
# (fairness pattern, mode), (quality pattern, mode) for runs that do not tag their metrics
FALLBACKS = [((r"^fairness_discrepancy_[A-Za-z0-9]+_\w+$", "min"), (r"^fd_attrclf_\w+$", "min")),
             ((r"^eo_gap$", "min"), (r"^acc$", "max"))]
# a single run's reproducing command: its fairray.command tag -> (CLI, config class)
COMMANDS = {"train-gan": ("fairray train-gan", GanConfig),
            "train-classifier": ("fairray train-classifier", FairClassifierConfig)}


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per comparable run, best fairness first
    fairness: tuple[str, str]
    quality: tuple[str, str]
    csv: Path
    png: Path
    best: pd.Series | None
    skipped: int  # runs without a comparable fairness/quality pair


def load_runs(uri: str, experiment: str | None = None) -> pd.DataFrame:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exps = [e for e in client.search_experiments() if e.name != "Default"]
    if experiment is not None:
        names = [e.name for e in exps]
        exps = [e for e in exps if e.name == experiment]
        if not exps:
            raise FairrayError(f"no experiment {experiment!r} in {uri}; experiments there: {names or 'none'}")
    rows = []
    for e in exps:
        for r in client.search_runs([e.experiment_id], max_results=50_000, order_by=["attributes.start_time ASC"]):
            end = r.info.end_time or r.info.start_time
            rows.append({"run_id": r.info.run_id, "run": r.info.run_name, "experiment": e.name,
                         "status": r.info.status, "parent": r.data.tags.get(PARENT_TAG),
                         "wall_s": (end - r.info.start_time) / 1000, "metrics": dict(r.data.metrics),
                         "params": dict(r.data.params), "tags": dict(r.data.tags)})
    if not rows:
        raise FairrayError(f"{uri} holds no runs" + (f" in experiment {experiment!r}" if experiment else ""))
    return pd.DataFrame(rows)


def metric_pair(metrics: dict, tags: dict) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """(fairness name, mode), (quality name, mode) of a run, or None when it has no comparable pair."""
    f, q = tags.get("fairray.fairness_metric"), tags.get("fairray.quality_metric")
    if f and q and f in metrics and q in metrics:
        return (f, tags.get("fairray.fairness_mode", "min")), (q, tags.get("fairray.quality_mode", "min"))
    for (fp, fm), (qp, qm) in FALLBACKS:
        fs = sorted(k for k in metrics if re.match(fp, k) and not k.endswith(INTERVAL) and not k.endswith("_exact"))
        qs = sorted(k for k in metrics if re.match(qp, k))
        if fs and qs:
            return (fs[0], fm), (qs[0], qm)
    return None


def pareto_front(fairness: np.ndarray, quality: np.ndarray, f_mode: str = "min", q_mode: str = "min") -> np.ndarray:
    """True for runs no other run beats on both axes (directions from the modes)."""
    from fairray.report_runs import pareto_mask

    f = np.asarray(fairness, float) * (1 if f_mode == "min" else -1)
    q = np.asarray(quality, float) * (1 if q_mode == "min" else -1)
    return pareto_mask(f, q)


def reproduce(row: pd.Series) -> str:
    """The command that reproduces a run: a campaign trial's own, or a single run's CLI with its non-default
    settings."""
    tags, params = row.tags, row.params
    if tags.get("fairray.reproduce"):
        return tags["fairray.reproduce"]
    command = tags.get("fairray.command")
    if command in COMMANDS:
        cli, cls = COMMANDS[command]
        try:
            defaults = _flat(cls().model_dump(mode="json"))
        except Exception:  # a config with required fields: keep every param
            defaults = {}
        sets = [f"{k}={v}" for k, v in sorted(params.items()) if k in defaults and str(defaults[k]) != v]
        return " ".join([cli, *[f"--set {shlex.quote(s)}" for s in sets]])
    return f"(no command recorded for run {row.run_id}; params: {json.dumps(params, sort_keys=True)[:300]})"


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare(uri: str, out: Path, experiment: str | None = None, quality_limit: float | None = None,
            fairness: str | None = None, quality: str | None = None) -> Comparison:
    """Table + Pareto front + scatter PNG + CSV of every comparable run; best run under a quality bound."""
    runs = load_runs(uri, experiment)
    runs["pair"] = [metric_pair(m, t) for m, t in zip(runs.metrics, runs.tags, strict=True)]
    if fairness or quality:
        runs["pair"] = [p if p and (not fairness or p[0][0] == fairness) and (not quality or p[1][0] == quality)
                        else _forced(m, fairness, quality, p) for m, p in zip(runs.metrics, runs.pair, strict=True)]
    ok = runs[runs.pair.notna()]
    if ok.empty:
        raise FairrayError("no run carries both a fairness and a quality metric (e.g. fairness_discrepancy_gender_2k "
                           "and fd_attrclf_2k); nothing to compare")
    pair = ok.pair.value_counts().idxmax()  # the protocol most runs share
    chosen = ok[ok.pair == pair].copy()
    (f_name, f_mode), (q_name, q_mode) = pair
    names = dict(zip(runs.run_id, runs.run, strict=True))
    searched = sorted({p for t in chosen.tags for p in t.get("fairray.searched", "").split(",") if p})
    table = pd.DataFrame({
        "run": chosen.run, "campaign": [names.get(p, "") if p else "" for p in chosen.parent],
        "experiment": chosen.experiment,
        **{f"param.{p}": [r.get(p, "") for r in chosen.params] for p in searched},
        f_name: [m[f_name] for m in chosen.metrics], q_name: [m[q_name] for m in chosen.metrics],
        "cost_s": [m.get("trial_seconds", w) for m, w in zip(chosen.metrics, chosen.wall_s, strict=True)],
        "status": chosen.status, "run_id": chosen.run_id,
    })
    table["valid"] = [validity(m, f_name) for m in chosen.metrics]
    # a generator whose samples are not faces has no fairness to trade: it is shown, never on the front or chosen
    meaningful = (table.valid != 0).to_numpy()
    table["pareto"] = False
    table.loc[meaningful, "pareto"] = pareto_front(table[f_name][meaningful], table[q_name][meaningful], f_mode,
                                                   q_mode)
    table["command"] = [reproduce(r) for _, r in chosen.iterrows()]
    table = table.sort_values([f_name, q_name], ascending=[f_mode == "min", q_mode == "min"]).reset_index(drop=True)
    best = None
    if quality_limit is not None:
        meets = table[q_name] <= quality_limit if q_mode == "min" else table[q_name] >= quality_limit
        meets &= table.valid != 0
        if meets.any():
            best = table[meets].iloc[0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, png = out / "compare.csv", out / "compare.png"
    table.to_csv(csv, index=False)
    _scatter(table, (f_name, f_mode), (q_name, q_mode), png, best, quality_limit)
    parents = sum("fairray.campaign_root" in t for t in runs.tags)  # campaign parents carry no pair of their own
    return Comparison(table, (f_name, f_mode), (q_name, q_mode), csv, png, best,
                      int(len(runs) - len(chosen) - parents))


def validity(metrics: dict, fairness: str) -> float:
    """The run's `valid_<n>` for the sample count its fairness metric names (1 valid, 0 not meaningful), NaN
    when the run measured no validity (downstream classifiers, runs from before the metric existed)."""
    tag = fairness.rsplit("_", 1)[-1]
    return float(metrics.get(f"valid_{tag}", float("nan")))


def _forced(metrics: dict, fairness: str | None, quality: str | None, pair) -> tuple | None:
    """A pair named on the command line (modes: fairness min; quality min unless it reads like an accuracy)."""
    f = fairness or (pair[0][0] if pair else None)
    q = quality or (pair[1][0] if pair else None)
    if f in metrics and q in metrics:
        q_mode = "max" if re.match(r"^(acc|worst_group_acc|ap_|ba_)", q or "") else "min"
        return (f, "min"), (q, q_mode)
    return None


def _scatter(table: pd.DataFrame, fairness: tuple[str, str], quality: tuple[str, str], png: Path,
             best: pd.Series | None, limit: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (f_name, f_mode), (q_name, q_mode) = fairness, quality
    front, invalid = table.pareto.to_numpy(bool), (table.valid == 0).to_numpy()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    campaigns = list(dict.fromkeys(table.campaign))
    for i, c in enumerate(campaigns):
        sel = (table.campaign == c).to_numpy()
        ax.scatter(table[q_name][sel & ~front & ~invalid], table[f_name][sel & ~front & ~invalid], c=f"C{i}",
                   alpha=0.45, s=28, label=f"{c or 'single runs'}")
        ax.scatter(table[q_name][sel & invalid], table[f_name][sel & invalid], c=f"C{i}", marker="x", s=28)
        ax.scatter(table[q_name][sel & front], table[f_name][sel & front], c=f"C{i}", s=46, edgecolors="k")
    fr = table[front].sort_values(q_name)
    ax.plot(fr[q_name], fr[f_name], c="k", lw=0.8, ls="--", label="Pareto front (outlined)")
    for _, r in table.iterrows():
        label = ",".join(f"{c.removeprefix('param.')}={r[c]}" for c in table.columns
                         if c.startswith("param.") and r[c] != "") or r.run
        ax.annotate(label, (r[q_name], r[f_name]), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
    if invalid.any():
        ax.scatter([], [], c="grey", marker="x", s=28, label="samples not valid: fairness not meaningful")
    if limit is not None:
        ax.axvline(limit, color="#C44E52", lw=0.8, ls=":", label=f"quality bound {limit:g}")
    if best is not None:
        ax.scatter([best[q_name]], [best[f_name]], marker="*", s=180, c="#C44E52", zorder=5, label="selected")
    ax.set_xlabel(f"{q_name} ({'lower' if q_mode == 'min' else 'higher'} is better)")
    ax.set_ylabel(f"{f_name} ({'lower' if f_mode == 'min' else 'higher'} is fairer)")
    ax.set_title("fairness vs quality", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
