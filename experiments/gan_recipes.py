"""GAN recipe study: which training recipe learns SynthFaces at fairray's budgets (issue "Generators that learn
their data in minutes").

Settings: 32 px on SynthFaces 90_10 (perc 0.25, the demo's data; unweighted and fairgen-reweighted with alpha 1)
and 64 px on balanced SynthFaces (facegen's data). Recipes (`RECIPES`): today's DCGAN (the demo's / facegen's GAN
config), + StyleGAN2-ADA's training protocol (batch 32, lazy R1 with the res^2/batch gamma heuristic,
minibatch-stddev in D, Adam betas (0, 0.99), EMA half-life with ramp-up) with the logistic or the hinge loss, the
small style-based generator (`models/stylegan.py`: 2-layer mapping network -> w, modulated convs, equalised lr)
with that protocol, and the same + DiffAugment translation,cutout. Each (setting, recipe, seed) trains once, in
process (`train.gan.train_local`, the Ray Train loop's own code at world 1) to the largest budget; the EMA
generator is evaluated at every budget (40, 80, 160 kimg = the demo's, 2x, 4x): nothing in the loop depends on
the total length, so the 40-kimg snapshot of a 160-kimg run is the 40-kimg run.

Per snapshot: share error against the training shares (attrclf on the training images vs on 2k samples; gender,
tone4, Young, Smiling, Eyeglasses), precision/recall/density/coverage + `valid` (fairray.metrics.validity) and
fd_attrclf with their real-vs-real values, the gender fairness discrepancy, linear separability of gender and
Smiling in z and in w (StyleGAN's protocol: of `--sep-n` samples the most confident half per attribute, a linear
SVM fit on half of them, accuracy on the rest), wall time and img/s of the training.

    python experiments/gan_recipes.py prepare --out runs/gan-recipes      # data, weights, labelers (Ray, ~4 min)
    python experiments/gan_recipes.py run --out runs/gan-recipes --procs 2 --settings 32px-90_10 --budgets 40
    python experiments/gan_recipes.py summarize --out runs/gan-recipes    # -> experiments/results/gan_recipes.json

`run` appends one JSON line per (setting, recipe, mode, seed) to <out>/results.jsonl and skips those already
there, so an interrupted study continues; `--device cuda --procs 12` runs the same jobs on a GPU host.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from results_io import write_json

RESULTS = Path(__file__).parent / "results"
ATTRS = ["gender", "tone4", "Young", "Smiling", "Eyeglasses"]
SEP_ATTRS = ["gender", "Smiling"]
EVAL_N = 2000
EVAL_SEED = 7

# StyleGAN2-ADA's protocol on standard-layer DCGAN nets (lr stays 2e-4: 0.0025 is for equalised-lr layers)
ADA = {"batch_size": 32, "loss": "bce", "betas": (0.0, 0.99), "r1_gamma": "auto", "r1_interval": 16,
       "mbstd_group": 4, "ema_kimg": 10.0, "ema_rampup": 0.05}
# fairray's GANs before this study (the demo's 32 px GAN; facegen's 64 px GAN sets its own loss, betas and batch)
FORMER = {"batch_size": 64, "loss": "hinge", "betas": (0.0, 0.9), "r1_gamma": 0.0, "mbstd_group": 0, "ema_kimg": 4.0,
          "ema_rampup": 0.05}
RECIPES: dict[str, dict] = {
    "dcgan": FORMER,
    "ada": ADA,
    "ada-hinge": ADA | {"loss": "hinge"},
    # one protocol component off at a time: which one makes the unweighted GAN under-draw the minority?
    "ada-no-mbstd": ADA | {"mbstd_group": 0},
    "ada-no-r1": ADA | {"r1_gamma": 0.0},
    "ada-batch64": ADA | {"batch_size": 64},
    # capacity: does a G and D of twice the width (4x the parameters) keep the thin minority mode?
    "ada-w64": ADA | {"width": 64},
    # PacGAN: D judges packs of 2 or 4 images, so a pack without the minority tells it the share is off
    "ada-pac2": ADA | {"d_pack": 2},
    "ada-pac4": ADA | {"d_pack": 4},
    "style": ADA | {"model": "style", "lr_g": 0.0025, "lr_d": 0.0025, "map_layers": 2, "w_dim": 128},
    "style-diffaug": ADA | {"model": "style", "lr_g": 0.0025, "lr_d": 0.0025, "map_layers": 2, "w_dim": 128,
                            "augment": ["translation", "cutout"]},
}


def settings() -> dict[str, dict]:
    from fairray.config import DemoConfig, FacegenConfig, SynthConfig, experiment_attrclf

    demo, face = DemoConfig(), FacegenConfig()
    clf64 = experiment_attrclf().model_copy(update={"resolution": 64})
    clf64.synth = clf64.synth.model_copy(update={"resolution": 64})
    return {
        "32px-90_10": {"synth": demo.synth, "gan": demo.gan, "attrclf": experiment_attrclf(), "modes": ["none", "weight"],
                       "train_dir": "weights"},
        "64px-balanced": {"synth": SynthConfig(n=10_000, bias="none", perc=0.0, val_frac=0.05, test_frac=0.05,
                                               resolution=64),
                          "gan": face.gan, "attrclf": clf64, "modes": ["none"], "train_dir": "data",
                          "former": {"loss": "bce", "betas": (0.5, 0.999)}},
    }


# ---------------------------------------------------------------------------------------------------------------
# prepare: data, density-ratio weights, labelers (Ray; done once, here or on the machine that runs the study)


def prepare(out: Path, names: list[str]) -> None:
    from fairray.config import ReweightConfig
    from fairray.data import synth_dataset
    from fairray.debias import reweight
    from fairray.stage import RunContext
    from fairray.train import attrclf

    for name in names:
        s = settings()[name]
        d = out / name
        if not (d / "data" / "dataset.json").is_file():
            synth_dataset.build(s["synth"], d / "data", progress=False)
        if s["train_dir"] == "weights" and not (d / "weights" / "reweight.json").is_file():
            reweight.run(ReweightConfig(dataset=str(d / "data"), epochs=4, seed=0), d / "weights",
                         RunContext(progress=False))
        if not (d / "attrclf" / "attrclf" / "metrics.json").is_file():
            attrclf.run(s["attrclf"], d / "attrclf", RunContext(progress=False))


# ---------------------------------------------------------------------------------------------------------------
# run: one job = one (setting, recipe, mode, seed), trained to the largest budget and evaluated at each


def separability(G, labeler, n: int, seed: int) -> dict[str, float]:
    """Linear SVM accuracy of each SEP_ATTRS label from z and from w on the most confident half of n samples."""
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from fairray.models.generator_io import latents_to_w, sample

    images, z = sample(G, n, G.z_dim, seed=seed)
    w = latents_to_w(G, z)
    probs = {h: np.concatenate([labeler.predict_proba(images[i:i + 1000])[h] for i in range(0, n, 1000)])
             for h in SEP_ATTRS}
    out = {}
    for h, p in probs.items():
        keep = np.argsort(-p.max(1))[: n // 2]
        y = p[keep].argmax(1)
        for space, x in (("z", z), ("w", w)):
            if len(np.unique(y)) < 2 or np.bincount(y).min() < 10:  # one class: nothing to separate
                out[f"sep_{space}_{h}"] = float("nan")
                continue
            xtr, xte, ytr, yte = train_test_split(x[keep], y, test_size=0.5, random_state=0, stratify=y)
            svm = make_pipeline(StandardScaler(), LinearSVC(C=1.0, dual=False, max_iter=2000)).fit(xtr, ytr)
            out[f"sep_{space}_{h}"] = float(svm.score(xte, yte))
    return out


def shares_of(labeler, images: np.ndarray) -> dict[str, np.ndarray]:
    heads = {h.name: h for h in labeler.heads}
    probs: dict[str, list] = {}
    for i in range(0, len(images), 1000):
        for h, p in labeler.predict_proba(images[i:i + 1000]).items():
            probs.setdefault(h, []).append(p)
    return {a: np.bincount(np.concatenate(probs[a]).argmax(1), minlength=len(heads[a].codes)) / len(images)
            for a in ATTRS if a in probs}


def grid_png(images: np.ndarray, n: int = 8) -> str:
    from PIL import Image

    k = images[: n * n]
    h, w = k.shape[1:3]
    tile = k.reshape(n, n, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(n * h, n * w, 3)
    buf = io.BytesIO()
    Image.fromarray(tile).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


_CACHE: dict = {}


def job_data(out: Path, setting: str, device: str) -> dict:
    """Training images, weights, reference images, labeler and their real-side statistics (once per process)."""
    if setting in _CACHE:
        return _CACHE[setting]
    from fairray.data.loading import load_split
    from fairray.data.reference import heldout_images, reference_images
    from fairray.labelers.attrclf import AttrClfLabeler
    from fairray.metrics.quality import feature_stats, frechet_distance
    from fairray.metrics.validity import split_halves

    s = settings()[setting]
    d = out / setting
    res = s["synth"].resolution
    images, df = load_split(d / s["train_dir"], "train", ["weight"] if s["train_dir"] == "weights" else [], size=res)
    labeler = AttrClfLabeler(d / "attrclf" / "attrclf", device=device)
    ref = reference_images(d / s["train_dir"], res, EVAL_N)
    held = heldout_images(d / ("data" if s["train_dir"] == "weights" else s["train_dir"]), res, EVAL_N)
    f_ref = labeler.features(ref)
    a, b = split_halves(len(ref))
    fd_real = frechet_distance(*feature_stats(f_ref[b]), *feature_stats(f_ref[a]))
    _CACHE[setting] = {"images": images, "weights": df["weight"].to_numpy(np.float64) if "weight" in df else None,
                       "labeler": labeler, "ref": ref, "heldout": held, "train_shares": shares_of(labeler, images),
                       "fd_real_half": float(fd_real), "res": res}
    return _CACHE[setting]


def evaluate(G, data: dict, sep_n: int) -> dict:
    from fairray.metrics.fairness import fairness_discrepancy
    from fairray.metrics.generated import evaluate_samples
    from fairray.models.generator_io import sample

    images, _ = sample(G, EVAL_N, G.z_dim, seed=EVAL_SEED)
    m = evaluate_samples(images, data["labeler"], ["gender"], reference=data["ref"], heldout=data["heldout"])
    gen = shares_of(data["labeler"], images)
    row = {k: v for k, v in m.items() if not k.startswith("share_")}
    for a, p in gen.items():
        row[f"share_error_{a}"] = float(np.abs(p - data["train_shares"][a]).max())
    row["female_share"] = float(gen["gender"][1])
    row["train_female_share"] = float(data["train_shares"]["gender"][1])
    row["fairness_discrepancy_gender"] = fairness_discrepancy(gen["gender"])
    row["fd_attrclf_real_half"] = data["fd_real_half"]
    row["validity_against"] = "heldout"  # val/test rows of the training data (rows before 2026-12-04: reference)
    if sep_n:
        row |= separability(G, data["labeler"], sep_n, seed=EVAL_SEED + 1)
    return row, images


def run_job(job: dict) -> list[dict]:
    import copy
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="Loky-backed parallel loops")

    from fairray.config import GanConfig
    from fairray.train.gan import train_local

    torch.set_num_threads(job["threads"])
    torch.backends.cudnn.benchmark = False
    out, setting = Path(job["out"]), job["setting"]
    data = job_data(out, setting, job["device"])
    base = settings()[setting]["gan"].model_dump(mode="json")
    budgets = sorted(job["budgets"])
    recipe = RECIPES[job["recipe"]] | (settings()[setting].get("former", {}) if job["recipe"] == "dcgan" else {})
    cfg = GanConfig.model_validate(base | recipe | {
        "resolution": data["res"], "seed": job["seed"], "kimg": budgets[-1], "tick_kimg": budgets[0],
        "reweight": job["mode"], "alpha": 1.0, "ray": {"device": job["device"]}})
    rows, t0 = [], time.perf_counter()
    snaps: dict[float, tuple[float, dict]] = {}

    def keep(clock, ema) -> None:
        kimg = round(clock.nimg / 1000, 3)
        if any(abs(kimg - b) < 0.05 for b in budgets):
            snaps[kimg] = (time.perf_counter() - t0, copy.deepcopy(ema.module.state_dict()))

    G_ema = train_local(cfg, data["images"], data["weights"] if job["mode"] == "weight" else None, job["device"],
                        on_tick=keep, quiet=True)
    G = G_ema.module
    for kimg, (secs, state) in sorted(snaps.items()):
        G.load_state_dict(state)
        row, images = evaluate(G, data, job["sep_n"])
        row |= {k: job[k] for k in ("setting", "recipe", "mode", "seed", "device")} | {
            "kimg": kimg, "train_seconds": secs, "train_img_per_s": kimg * 1000 / secs,
            "g_params": sum(p.numel() for p in G.parameters())}
        if job["seed"] == job["grid_seed"]:
            row["grid_png"] = grid_png(images)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> None:
    out: Path = args.out
    path = args.jsonl or out / "results.jsonl"
    done = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["setting"], r["recipe"], r["mode"], r["seed"]))
    jobs = []
    for setting in args.settings.split(","):
        modes = [m for m in settings()[setting]["modes"] if m in args.modes.split(",")]
        for seed in map(int, args.seeds.split(",")):
            for mode in modes:
                for recipe in args.recipes.split(","):
                    if (setting, recipe, mode, seed) not in done:
                        jobs.append({"out": str(out), "setting": setting, "recipe": recipe, "mode": mode, "seed": seed,
                                     "budgets": [float(b) for b in args.budgets.split(",")], "device": args.device,
                                     "threads": args.threads, "sep_n": args.sep_n, "grid_seed": 0})
    print(f"{len(jobs)} job(s), {len(done)} already done", flush=True)
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.procs, maxtasksperchild=None) as pool, path.open("a") as f:
        for rows in pool.imap_unordered(run_job, jobs):
            for r in rows:
                f.write(json.dumps(r) + "\n")
                print(f"{r['setting']} {r['recipe']:<13} {r['mode']:<6} seed {r['seed']} kimg {r['kimg']:>5.0f}: "
                      f"female {r['female_share']:.3f} (train {r['train_female_share']:.3f}) "
                      f"prec {r['precision_2k']:.2f}/{r['precision_real_2k']:.2f} "
                      f"cov {r['coverage_2k']:.2f}/{r['coverage_real_2k']:.2f} valid {r['valid_2k']:.0f} "
                      f"sep_w {r.get('sep_w_gender', float('nan')):.2f},{r.get('sep_w_Smiling', float('nan')):.2f} "
                      f"{r['train_img_per_s']:.0f} img/s", flush=True)
            f.flush()


# ---------------------------------------------------------------------------------------------------------------
# summarize: mean +- sd per (setting, recipe, mode, kimg), the goals, a grid figure


SUMMARY_KEYS = ["female_share", "train_female_share", "fairness_discrepancy_gender", "precision_2k",
                "precision_real_2k", "recall_2k", "density_2k", "coverage_2k", "coverage_real_2k", "valid_2k",
                "fd_attrclf_2k", "fd_attrclf_real_half", "train_img_per_s", "train_seconds",
                *[f"share_error_{a}" for a in ATTRS], *[f"sep_{s}_{a}" for s in "zw" for a in SEP_ATTRS]]


def dedupe(rows: list[dict]) -> list[dict]:
    """One row per (setting, recipe, mode, seed, kimg, device); a re-run of a job (same numbers: the loop is
    deterministic) that also measured separability replaces one that did not."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["setting"], r["recipe"], r["mode"], r["seed"], r["kimg"], r["device"])
        if key not in out or "sep_w_gender" in r:
            out[key] = out.get(key, {}) | r
    return list(out.values())


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["recipe"], r["mode"], r["kimg"], r["device"]), []).append(r)
    out = []
    for (setting, recipe, mode, kimg, device), rs in sorted(groups.items()):
        g = {"setting": setting, "recipe": recipe, "mode": mode, "kimg": kimg, "device": device, "seeds": len(rs)}
        for k in SUMMARY_KEYS:
            v = np.array([r[k] for r in rs if k in r], dtype=float)
            if len(v):
                g[k] = {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v)), "min": float(np.nanmin(v)),
                        "max": float(np.nanmax(v))}
        g["gender_within_3pt"] = int(sum(abs(r["female_share"] - r["train_female_share"]) <= 0.03 for r in rs))
        g["valid_runs"] = int(sum(r["valid_2k"] for r in rs))
        out.append(g)
    return out


def goals(rows: list[dict]) -> dict:
    """The issue's goals per recipe and budget, counted over seeds."""
    by = {}
    for r in rows:
        by.setdefault((r["setting"], r["recipe"], r["kimg"], r["device"]), {}).setdefault(r["mode"], {})[r["seed"]] = r
    res = {}
    for (setting, recipe, kimg, device), modes in sorted(by.items()):
        key = f"{setting}/{recipe}/{kimg:g}kimg/{device}"
        u = modes.get("none", {})
        g = {"seeds": len(u)}
        if setting.startswith("32"):
            g["unweighted_gender_within_3pt"] = sum(abs(r["female_share"] - r["train_female_share"]) <= 0.03
                                                    for r in u.values())
            g["unweighted_precision_within_20pct"] = sum(r["precision_2k"] >= 0.8 * r["precision_real_2k"]
                                                         for r in u.values())
            w = modes.get("weight", {})
            both = [s for s in u if s in w]
            g["reweighted_seeds"] = len(both)
            g["reweighted_cut_ge_50pct"] = sum(w[s]["fairness_discrepancy_gender"]
                                               <= 0.5 * u[s]["fairness_discrepancy_gender"] for s in both)
            g["reweighted_precision_within_20pct_of_unweighted"] = sum(
                w[s]["precision_2k"] >= 0.8 * u[s]["precision_2k"] for s in both)
        else:
            g["all_shares_within_3pt"] = sum(all(r[f"share_error_{a}"] <= 0.03 for a in ("gender", "tone4", "Young"))
                                             for r in u.values())
        measured = [r for r in u.values() if "sep_w_gender" in r]
        g["sep_w_ge_0.90_gender_and_smiling"] = (sum(min(r["sep_w_gender"], r["sep_w_Smiling"]) >= 0.9
                                                     for r in measured) if measured else None)
        g["valid"] = sum(r["valid_2k"] for r in u.values())
        res[key] = g
    return res


def table(summary: list[dict]) -> str:
    """The README table: mean +- sd over seeds per (setting, recipe, mode, budget)."""
    def ms(g: dict, k: str, f: str = ".2f") -> str:
        return f"{g[k]['mean']:{f}} ± {g[k]['sd']:{f}}" if k in g else "–"

    lines = ["| setting | recipe | GAN | kimg | seeds | female share (train) | precision (real) | coverage (real) "
             "| valid | fd_attrclf (real) | SVM w: gender / Smiling | SVM z: gender / Smiling |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    on_gpu = {(g["setting"], g["recipe"], g["mode"], g["kimg"]) for g in summary if g["device"] != "cpu"}
    for g in summary:  # a job run on both: the GPU row (same numbers, more seeds); CPU-only studies show theirs
        if g["device"] == "cpu" and (g["setting"], g["recipe"], g["mode"], g["kimg"]) in on_gpu:
            continue
        lines.append(
            f"| {g['setting']} | {g['recipe']} | {'unweighted' if g['mode'] == 'none' else 'reweighted'} "
            f"| {g['kimg']:g} | {g['seeds']} | {ms(g, 'female_share')} ({g['train_female_share']['mean']:.2f}) "
            f"| {ms(g, 'precision_2k')} ({g['precision_real_2k']['mean']:.2f}) "
            f"| {ms(g, 'coverage_2k')} ({g['coverage_real_2k']['mean']:.2f}) | {g['valid_runs']}/{g['seeds']} "
            f"| {ms(g, 'fd_attrclf_2k', '.1f')} ({g['fd_attrclf_real_half']['mean']:.1f}) "
            f"| {ms(g, 'sep_w_gender')} / {ms(g, 'sep_w_Smiling')} | {ms(g, 'sep_z_gender')} / {ms(g, 'sep_z_Smiling')} |")
    cpu = [g for g in summary if g["device"] == "cpu"]
    if cpu:
        lines += ["", "Training speed on 2 CPU cores (two runs side by side, one thread each, as the demo's two trials):",
                  "", "| recipe | GAN | img/s |", "|---|---|---|"]
        lines += [f"| {g['recipe']} | {'unweighted' if g['mode'] == 'none' else 'reweighted'} | "
                  f"{g['train_img_per_s']['mean']:.0f} |" for g in cpu]
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    """Seed-0 sample grids: one row per (setting, recipe, mode), one column per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    # a GPU run's grid where the same job also ran on CPU (the study's main table), else the CPU one
    grids = {(r["setting"], r["recipe"], r["mode"], r["kimg"]): r["grid_png"]
             for r in sorted(rows, key=lambda r: r["device"] != "cpu") if "grid_png" in r}
    keys = sorted({k[:3] for k in grids})
    kimgs = sorted({k[3] for k in grids})
    if not keys:
        return
    fig, axes = plt.subplots(len(keys), len(kimgs), figsize=(2.2 * len(kimgs), 2.3 * len(keys)), squeeze=False)
    for i, k in enumerate(keys):
        for j, kimg in enumerate(kimgs):
            ax = axes[i, j]
            ax.axis("off")
            if (*k, kimg) in grids:
                ax.imshow(Image.open(io.BytesIO(base64.b64decode(grids[(*k, kimg)]))))
            ax.set_title(f"{k[0]} {k[1]} {'' if k[2] == 'none' else k[2]} {kimg:g} kimg", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, default=Path("runs/gan-recipes"))
    p.add_argument("--settings", default=",".join(settings()))
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, default=Path("runs/gan-recipes"))
    r.add_argument("--settings", default=",".join(settings()))
    r.add_argument("--recipes", default=",".join(RECIPES))
    r.add_argument("--seeds", default="0,1,2,3,4")
    r.add_argument("--modes", default="none,weight", help="unweighted (none) and/or reweighted (weight) GANs")
    r.add_argument("--budgets", default="40,80,160", help="kimg at which each run's EMA generator is evaluated")
    r.add_argument("--device", default="cpu")
    r.add_argument("--procs", type=int, default=2)
    r.add_argument("--threads", type=int, default=1, help="torch threads per process")
    r.add_argument("--sep-n", type=int, default=20_000, help="samples for linear separability (0: skip)")
    r.add_argument("--jsonl", type=Path, default=None, help="results file (default <out>/results.jsonl)")
    s = sub.add_parser("summarize")
    s.add_argument("--out", type=Path, default=Path("runs/gan-recipes"))
    s.add_argument("--inputs", nargs="*", type=Path, default=[], help="more results.jsonl files (e.g. a GPU run)")
    s.add_argument("--results", type=Path, default=RESULTS / "gan_recipes.json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.cmd == "prepare":
        prepare(args.out, args.settings.split(","))
    elif args.cmd == "run":
        run(args)
    else:
        rows = dedupe([json.loads(line) for p in [args.out / "results.jsonl", *args.inputs] if p.is_file()
                       for line in p.read_text().splitlines()])
        report = {"recipes": RECIPES, "eval_n": EVAL_N, "summary": summarize(rows), "goals": goals(rows),
                  "runs": [{k: v for k, v in r.items() if k != "grid_png"} for r in rows]}
        write_json(args.results, report, indent=1)
        figure(rows, args.results.with_suffix(".png"))
        args.results.with_suffix(".md").write_text(table(report["summary"]))
        print(json.dumps(report["goals"], indent=1))


if __name__ == "__main__":
    main()
