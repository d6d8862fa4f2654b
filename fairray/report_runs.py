"""The fairness report, built from MLflow runs: every number and image in it is read back from the store.

A stage that wants a hand-written section logs it with `log_section` (text generated from its numbers, figures,
a table) under `report/<order>/` in its run's artifacts. `build` reads any store (a demo's run dir, a campaign,
single runs), puts a summary table (methods x fairness x quality, with intervals) and a fairness-vs-quality
Pareto plot on top, then the logged sections in order, then a generic section for every other run tree.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairray.errors import FairrayError
from fairray.report import Section, fig_png, write_html
from fairray.tracking import PARENT_TAG, RunHandle

SECTION_DIR = "report"
INTERVAL = ("_lo", "_hi", "_std", "_sd")


def log_section(run: RunHandle, section: Section, order: int) -> None:
    """Store a report section (text, figures, table) in the run's artifacts under report/<order>/."""
    if not run.live:
        return
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        images = []
        for i, (caption, png) in enumerate(section.images):
            (root / f"fig{i:02d}.png").write_bytes(png)
            images.append({"file": f"fig{i:02d}.png", "caption": caption})
        if section.table is not None:
            section.table.to_csv(root / "table.csv")
        meta = {"title": section.title, "text": section.text, "order": order, "images": images,
                "table": "table.csv" if section.table is not None else None}
        (root / "section.json").write_text(json.dumps(meta))
        for f in sorted(root.iterdir()):
            run.log_artifact(f, f"{SECTION_DIR}/{order:03d}")


@dataclass
class Store:
    client: object
    experiments: list
    runs: pd.DataFrame  # one row per run: id, name, parent, start, experiment, metrics dict


def open_store(uri: str, experiment: str | None = None) -> Store:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exps = [e for e in client.search_experiments() if e.name != "Default"]
    if experiment is not None:
        exps = [e for e in exps if e.name == experiment]
        if not exps:
            names = [e.name for e in client.search_experiments() if e.name != "Default"]
            raise FairrayError(f"no experiment {experiment!r} in {uri}; experiments there: {names or 'none'}")
    if not exps:
        raise FairrayError(f"{uri} holds no fairray runs")
    rows = []
    for e in exps:
        for r in client.search_runs([e.experiment_id], max_results=50_000, order_by=["attributes.start_time ASC"]):
            rows.append({"id": r.info.run_id, "name": r.info.run_name, "parent": r.data.tags.get(PARENT_TAG),
                         "start": r.info.start_time, "experiment": e.name, "metrics": dict(r.data.metrics),
                         "params": dict(r.data.params), "tags": dict(r.data.tags)})
    return Store(client, exps, pd.DataFrame(rows))


def _fmt(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


CONCEPTS = ("fairness", "female share", "quality", "validity")


def _first(m: dict, prefixes: tuple[str, ...]) -> str | None:
    """The first metric of m named by one of the prefixes, in the prefixes' order, gender's first (the attribute
    every fairray method reports); intervals skipped."""
    for p in prefixes:
        keys = sorted((k for k in m if k.startswith(p) and not k.endswith(INTERVAL)), key=lambda k: ("gender" not in k, k))
        sampled = [k for k in keys if not k.endswith("_exact")]
        if sampled or keys:
            return (sampled or keys)[0]
    return None


def _cell(m: dict, key: str | None, label: bool = True) -> str:
    """`discrepancy gender 0.312 [0.291, 0.334]`: the metric's short name, value and interval."""
    if key is None:
        return ""
    lo, hi = m.get(f"{key}_lo"), m.get(f"{key}_hi")
    value = _fmt(m[key]) + (f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "")
    name = re.sub(r"_(\d+k|exact)$", "", key).replace("fairness_discrepancy_", "discrepancy ").replace("_", " ")
    return f"{name} {value}" if label else value


def concept_row(m: dict) -> dict[str, str]:
    """One method's numbers under one column per concept (not per metric name), with the validity flag beside
    the fairness number it qualifies."""
    fair = _first(m, ("fairness_discrepancy_", "deo_", "dp_gap", "eo_gap"))
    share = _first(m, ("share_gender_1_",))
    quality = _first(m, ("fd_attrclf_", "fid_inception_", "acc", "accuracy_", "worst_group_acc", "ap_"))
    valid = _first(m, ("valid_",))
    validity = ""
    if valid is not None:
        tag = valid[len("valid_"):]
        detail = ", ".join(f"{k} {m[f'{k}_{tag}']:.2f}" for k in ("precision", "coverage", "coverage_target")
                           if f"{k}_{tag}" in m)
        validity = (f"valid ({detail})" if m[valid] == 1 else f"NOT valid ({detail}): fairness not meaningful")
    return {"fairness": _cell(m, fair), "female share": _cell(m, share, label=False), "quality": _cell(m, quality),
            "validity": validity}


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Methods x (fairness, female share, quality, validity): one column per concept, each cell naming its metric;
    a value with a bootstrap interval reads `0.312 [0.291, 0.334]`. Runs with none of them are left out."""
    rows: dict[str, dict[str, str]] = {}
    for _, r in runs.iterrows():
        row = concept_row(r.metrics)
        if any(row[c] for c in ("fairness", "female share", "quality")):
            rows[_unique(rows, r["name"])] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(CONCEPTS))


def _unique(existing: dict, name: str) -> str:
    out, i = name, 2
    while out in existing:
        out, i = f"{name} ({i})", i + 1
    return out


def fairness_quality_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that carry both a fairness discrepancy and an fd_attrclf (generators): one point each."""
    pts = []
    for _, r in runs.iterrows():
        fair = sorted(k for k in r.metrics if k.startswith("fairness_discrepancy_") and not k.endswith(INTERVAL)
                      and not k.endswith("_exact"))
        qual = sorted(k for k in r.metrics if k.startswith("fd_attrclf_"))
        if fair and qual:
            pts.append({"run": r["name"], "fairness": r.metrics[fair[0]], "quality": r.metrics[qual[0]],
                        "fairness_metric": fair[0], "quality_metric": qual[0]})
    df = pd.DataFrame(pts)
    if df.empty:
        return df
    # only points measured by the same protocol are comparable: keep the most common (fairness, quality) pair
    pair = df.groupby(["fairness_metric", "quality_metric"]).size().idxmax()
    return df[(df.fairness_metric == pair[0]) & (df.quality_metric == pair[1])].reset_index(drop=True)


def pareto_mask(fairness: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """True where no other point is at least as good on both (lower is better on both) and better on one."""
    f, q = np.asarray(fairness, float), np.asarray(quality, float)
    dominated = ((f[None, :] <= f[:, None]) & (q[None, :] <= q[:, None])
                 & ((f[None, :] < f[:, None]) | (q[None, :] < q[:, None]))).any(1)
    return ~dominated


def pareto_figure(pts: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    front = pareto_mask(pts.fairness.to_numpy(), pts.quality.to_numpy())
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.scatter(pts.quality[~front], pts.fairness[~front], c="#8c8c8c", label="dominated")
    ax.scatter(pts.quality[front], pts.fairness[front], c="#C44E52", label="Pareto front")
    order = np.argsort(pts.quality[front].to_numpy())
    ax.plot(pts.quality[front].to_numpy()[order], pts.fairness[front].to_numpy()[order], c="#C44E52", lw=0.8)
    for _, p in pts.iterrows():
        ax.annotate(p.run, (p.quality, p.fairness), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{pts.quality_metric.iloc[0]} (lower is better)")
    ax.set_ylabel(f"{pts.fairness_metric.iloc[0]} (lower is fairer)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _download_sections(store: Store, run_id: str) -> list[tuple[int, Section]]:
    client = store.client
    try:
        entries = client.list_artifacts(run_id, SECTION_DIR)
    except Exception:  # a run without artifacts (or a store without an artifact root)
        return []
    out = []
    for e in entries:
        if not e.is_dir:
            continue
        with tempfile.TemporaryDirectory() as d:
            local = Path(client.download_artifacts(run_id, e.path, d))
            meta = json.loads((local / "section.json").read_text())
            images = [(i["caption"], (local / i["file"]).read_bytes()) for i in meta["images"]]
            table = pd.read_csv(local / meta["table"], index_col=0) if meta.get("table") else None
            out.append((meta["order"], Section(meta["title"], meta["text"], images, table)))
    return out


def _pngs(store: Store, run_id: str, path: str = "") -> list[tuple[str, bytes]]:
    """Every PNG artifact of a run (outside report/), captioned by its path."""
    out = []
    for e in store.client.list_artifacts(run_id, path or None):
        if e.is_dir and e.path != SECTION_DIR:
            out += _pngs(store, run_id, e.path)
        elif e.path.endswith(".png"):
            with tempfile.TemporaryDirectory() as d:
                out.append((e.path, Path(store.client.download_artifacts(run_id, e.path, d)).read_bytes()))
    return out


def _generic_section(store: Store, root: pd.Series, members: pd.DataFrame) -> Section:
    """A run tree nobody wrote a section for: its key numbers, a table of its runs, its figures."""
    table = summary_table(members)
    pts = fairness_quality_points(members)
    images = []
    if len(pts) >= 2:
        images.append(("fairness vs quality", fig_png(pareto_figure(pts, f"{root['name']}: fairness vs quality"))))
    for rid in members.id[:12]:  # a large campaign: the first trials' figures are enough to look at
        images += _pngs(store, rid)
    text = ""
    if len(pts):
        best = pts.iloc[int(np.argmin(pts.fairness))]
        text = (f"{len(members)} run(s). The fairest is {best.run}: {best.fairness_metric} {best.fairness:.3f} at "
                f"{best.quality_metric} {best.quality:.3f}.")
    return Section(f"{root['name']} ({root['experiment']})", text, images, table if len(table) else None)


def _roots(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Top-level run id -> every run id in its tree."""
    parent = dict(zip(runs.id, runs.parent, strict=True))

    def top(rid: str) -> str:
        seen = set()
        while parent.get(rid) in parent and rid not in seen:
            seen.add(rid)
            rid = parent[rid]
        return rid

    trees: dict[str, list[str]] = {}
    for rid in runs.id:
        trees.setdefault(top(rid), []).append(rid)
    return trees


def build(uri: str, out: Path, experiment: str | None = None, title: str = "fairray report",
          subtitle: str | None = None, run_id: str | None = None) -> Path:
    """Write a self-contained report.html from every run in the store (or one experiment of it, or the tree
    of one top-level run)."""
    # dozens of small artifacts are read back; MLflow's bar per download is noise in the command's output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store = open_store(uri, experiment)
    if run_id is not None:
        store.runs = store.runs[store.runs.id.isin(_roots(store.runs).get(run_id, [run_id]))]
    runs = store.runs
    sections: list[Section] = []
    table = summary_table(runs)
    pts = fairness_quality_points(runs)
    images = []
    if len(pts) >= 2:
        images.append(("fairness vs quality of every generator (Pareto front in red)",
                       fig_png(pareto_figure(pts, "generators: fairness vs quality"))))
    sections.append(Section("Summary", "Every method's fairness and quality numbers as logged in MLflow; "
                            "brackets are bootstrap 95% intervals.", images, table if len(table) else None))
    for root, members in _roots(runs).items():
        logged = sorted((s for rid in members for s in _download_sections(store, rid)), key=lambda t: t[0])
        if logged:
            sections += [s for _, s in logged]
        else:
            sections.append(_generic_section(store, runs[runs.id == root].iloc[0], runs[runs.id.isin(members)]))
    subtitle = subtitle or f"MLflow: {uri} (experiments: {', '.join(e.name for e in store.experiments)})"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_html(out, title, subtitle, sections)


def store_uri(run_dir: Path) -> str:
    db = Path(run_dir) / "mlflow.db"
    if not db.is_file():
        raise FairrayError(f"{run_dir} has no mlflow.db; give a fairray run dir (e.g. runs/demo-<time>) "
                           f"or --experiment NAME with --uri")
    return f"sqlite:///{db.resolve()}"


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=10000"]


def render(html: Path, screenshot: Path | None = None, width: int = 1100, height: int = 5000,
           chromium: str = "chromium") -> str:
    """Load the report in headless Chromium; return the DOM after load (and write a screenshot when asked)."""
    import shutil
    import subprocess

    exe = shutil.which(chromium)
    if exe is None:
        raise FairrayError(f"{chromium} not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        url = Path(html).resolve().as_uri()
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        if screenshot is not None:
            subprocess.run([*base, f"--screenshot={Path(screenshot).resolve()}", url], capture_output=True,
                           timeout=120)
    return dom
