"""fairgen on ground truth: unweighted vs importance-reweighted GANs on SynthFaces with an exact, known bias.

For each setting (bias preset x reference fraction perc) and seed: render the set, fit the calibrated and
clipped density-ratio classifier, train an unweighted GAN and reweighted GANs (fairgen's loss weighting and the
sampling variant) for the same kimg, label `eval_n` samples of each with fairray's attribute classifier and
report the fairness discrepancy over the bias attributes (joint cells for `multi`), `fd_attrclf` against the
balanced reference set and validity (precision/coverage against held-out rows of the GAN's data, beside their
real-vs-real values; `metrics.validity`). The labeler is checked on real data: its share on the biased train set vs the exact
share, and its held-out accuracy. At perc 0.1 an ablation runs fairgen's raw ratios (no calibration, no
clipping) to show what calibration and clipping prevent.

    python experiments/fairgen_effect.py --out runs/fairgen-effect          # ~35 min on 2 CPU cores
    python experiments/fairgen_effect.py --settings 90_10@0.25 --seeds 0   # one setting

Writes experiments/results/fairgen_effect.json (after every run, so partial results survive) and a figure. A run
already in the results file is not retrained; one measured before validity was recorded is scored again from its
checkpoint (same samples: the latent seed is fixed).
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import product
from pathlib import Path

import numpy as np
from results_io import write_json

from fairray.config import GanConfig, ReweightConfig, SynthConfig, experiment_attrclf
from fairray.data import synth_dataset
from fairray.data.loading import load_split
from fairray.data.reference import heldout_rows, reference_images
from fairray.data.table import read_manifest
from fairray.debias import reweight
from fairray.labelers.attrclf import AttrClfLabeler
from fairray.labelers.base import hard_labels
from fairray.metrics.fairness import fairness_discrepancy
from fairray.metrics.generated import count_tag, evaluate_samples
from fairray.models.generator_io import load_generator, sample
from fairray.stage import RunContext
from fairray.train import attrclf, gan

RESULTS = Path(__file__).parent / "results"
MODES = ("none", "weight", "sample")
RATIO_EPOCHS = 4  # density-ratio classifier epochs (the results were measured with 4)
VALIDITY = ("precision", "precision_real", "coverage", "coverage_real", "coverage_target", "coverage_target_real",
            "valid")


def joint_shares(labels: dict[str, np.ndarray], attrs: list[str], sizes: dict[str, int]) -> np.ndarray:
    """Shares of every cell of the attrs grid (row-major), from per-attribute integer labels."""
    cell = np.zeros(len(labels[attrs[0]]), dtype=np.int64)
    for a in attrs:
        cell = cell * sizes[a] + labels[a]
    return np.bincount(cell, minlength=int(np.prod([sizes[a] for a in attrs]))) / len(cell)


def measured(images: np.ndarray, labeler: AttrClfLabeler, attrs: list[str]) -> np.ndarray:
    """attrclf's joint shares over the bias attributes (Black_Hair is read off the `hair` head)."""
    heads = {"Black_Hair": "hair"}
    probs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), 500):
        for h, p in labeler.predict_proba(images[i:i + 500]).items():
            probs.setdefault(h, []).append(p)
    hard = hard_labels({h: np.concatenate(p) for h, p in probs.items()}, labeler.heads)
    labels = {a: (hard["hair"] == 0).astype(int) if a == "Black_Hair" else hard[heads.get(a, a)] for a in attrs}
    return joint_shares(labels, attrs, {a: 2 if a in ("Black_Hair", "gender") else 4 for a in attrs})


def parse_settings(text: str) -> list[tuple[str, float]]:
    out = []
    for item in text.split(","):
        preset, _, perc = item.partition("@")
        out.append((preset, float(perc or 0.25)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/fairgen-effect"))
    ap.add_argument("--settings", default="90_10@0.25,80_20@0.25,multi@0.25,90_10@0.1")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--n", type=int, default=8000, help="biased rows per set")
    ap.add_argument("--kimg", type=float, default=96)
    ap.add_argument("--eval-n", type=int, default=4000)
    ap.add_argument("--ratios", default="calibrated", help="calibrated: fairgen's CNN on pixels; features: a "
                    "logistic regression on the attrclf's features (ReweightConfig.encoder); comma-separated")
    ap.add_argument("--ablate-raw", default="90_10@0.1", help="settings that also run uncalibrated, unclipped ratios")
    ap.add_argument("--results", type=Path, default=RESULTS / "fairgen_effect.json")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    clf_dir = out / "attrclf"
    if not (clf_dir / "attrclf" / "metrics.json").is_file():
        attrclf.run(experiment_attrclf(), clf_dir, RunContext(progress=False))
    clf_metrics = json.loads((clf_dir / "attrclf" / "metrics.json").read_text())
    labeler = AttrClfLabeler(clf_dir / "attrclf")
    report: dict = {"config": vars(args) | {"out": str(out)},
                    "attrclf_heldout": {k: v for k, v in clf_metrics.items() if k.startswith("acc_")}, "runs": []}
    if args.results.is_file():  # resume / extend: runs already measured with the same kimg are kept, not redone
        report["runs"] = [r for r in json.loads(args.results.read_text())["runs"] if r["kimg"] == args.kimg]
    tag = count_tag(args.eval_n)
    ablate = set(parse_settings(args.ablate_raw)) if args.ablate_raw else set()
    for (preset, perc), seed in product(parse_settings(args.settings), [int(s) for s in args.seeds.split(",")]):
        key = f"{preset}-perc{perc:g}-seed{seed}"
        data = out / key / "data"
        if not (data / "dataset.json").is_file():
            synth_dataset.build(SynthConfig(n=args.n, bias=preset, perc=perc, seed=seed), data, progress=False)
        attrs = read_manifest(data)["bias_attributes"]
        ref = reference_images(data, 32, args.eval_n)
        # The labeler on real data: attrclf's share on the biased train rows vs the exact share.
        real, df = load_split(data, "train", attrs, subset="biased")
        exact = joint_shares({a: df[a].to_numpy() for a in attrs}, attrs,
                             {a: 2 if a in ("Black_Hair", "gender") else 4 for a in attrs})
        labeled = measured(real, labeler, attrs)
        variants = [(v, {"calibration": "temperature", "clip_quantile": 0.99} if v == "calibrated"
                     else {"encoder": f"attrclf:{clf_dir / 'attrclf'}", "clip_quantile": 0.99})
                    for v in ("calibrated", "features") if v in args.ratios.split(",")]
        if (preset, perc) in ablate:
            variants.append(("raw", dict(calibration="none", clip_quantile=1.0)))
        for vname, rw in variants:
            wdir = out / key / f"weights-{vname}"
            rcfg = ReweightConfig(dataset=str(data), epochs=RATIO_EPOCHS, seed=seed, report_attributes=attrs, **rw)
            rw_report = (json.loads((wdir / "reweight.json").read_text()) if (wdir / "reweight.json").is_file()
                         else reweight.run(rcfg, wdir))
            for mode in MODES if vname in ("calibrated", "features") else ("weight",):
                if mode not in args.modes.split(",") or (mode == "none" and vname != variants[0][0]):
                    continue  # one unweighted GAN per seed, whatever the ratio variants
                run_key = (preset, perc, seed, "calibrated" if mode == "none" else vname, mode)
                name = f"{key}-{run_key[3]}-{mode}"
                old = next((r for r in report["runs"] if run_key == (r["setting"], r["perc"], r["seed"], r["ratio"],
                                                                      r["mode"])), None)
                if old is not None and f"valid_{tag}" in old:
                    continue
                cfg = GanConfig(tick_kimg=8, snapshot_ticks=4).model_copy(update={"dataset": str(wdir), "name": name, "reweight": mode, "seed": seed,
                                                  "kimg": args.kimg, "eval_attributes": ["gender"]})
                t_run = time.perf_counter()
                ckpt = gan.fit(cfg, wdir, out / "gans")  # a finished run is found, not retrained
                G, _ = load_generator(ckpt)
                images, _ = sample(G, args.eval_n, cfg.z_dim, seed=7)
                # validity against the GAN's target: held-out rows, weighted by w^alpha for a reweighted GAN
                heldout, held_w = heldout_rows(wdir, 32, args.eval_n, gan.target_alpha(cfg))
                m = evaluate_samples(images, labeler, ["gender"], reference=ref, heldout=heldout,
                                     heldout_weights=held_w)
                p = measured(images, labeler, attrs)
                row = {"setting": preset, "perc": perc, "seed": seed, "ratio": vname, "mode": mode,
                       "bias_attributes": attrs, "kimg": args.kimg,
                       f"fairness_discrepancy_joint_{tag}": fairness_discrepancy(p),
                       "shares_joint": p.round(4).tolist(), f"fd_attrclf_{tag}": m[f"fd_attrclf_{tag}"],
                       "data_fairness_discrepancy_exact": fairness_discrepancy(exact),
                       "data_shares_exact": exact.round(4).tolist(), "data_shares_attrclf": labeled.round(4).tolist(),
                       "ratio_clip_max": rw_report.get("clip_max"),
                       "weighted_share": rw_report["weights"].get(f"weighted_share_{attrs[-1]}"),
                       **{f"{k}_{tag}": m[f"{k}_{tag}"] for k in VALIDITY if f"{k}_{tag}" in m},
                       "seconds": time.perf_counter() - t_run}
                if old is not None:  # rescored: keep the training time it was measured with
                    old.update({k: v for k, v in row.items() if k != "seconds"})
                else:
                    report["runs"].append(row)
                print(f"{name}: discrepancy {row[f'fairness_discrepancy_joint_{tag}']:.3f} shares {row['shares_joint']} "
                      f"fd_attrclf {row[f'fd_attrclf_{tag}']:.2f}", flush=True)
                report["summary"] = summarise(report["runs"], tag)
                report["seconds_total"] = time.perf_counter() - t0
                write_json(args.results, report)
    figure(report, tag, args.results.with_suffix(".png"))
    print(json.dumps(report["summary"], indent=2, default=float))


def summarise(runs: list[dict], tag: str) -> list[dict]:
    """Per setting and reweighting variant: mean over seeds of the cut in discrepancy vs the unweighted GAN, the
    relative change of fd_attrclf, and (rows that have it) validity and precision of both GANs."""
    fdk, qk = f"fairness_discrepancy_joint_{tag}", f"fd_attrclf_{tag}"
    rows = []
    for (setting, perc) in dict.fromkeys((r["setting"], r["perc"]) for r in runs):
        base = {r["seed"]: r for r in runs if (r["setting"], r["perc"], r["mode"]) == (setting, perc, "none")}
        for variant in dict.fromkeys((r["ratio"], r["mode"]) for r in runs
                                     if (r["setting"], r["perc"]) == (setting, perc) and r["mode"] != "none"):
            pairs = [(base[r["seed"]], r) for r in runs if (r["setting"], r["perc"], r["ratio"], r["mode"])
                     == (setting, perc, *variant) and r["seed"] in base]
            if not pairs:
                continue
            cut = [1 - r[fdk] / max(b[fdk], 1e-9) for b, r in pairs]
            dq = [r[qk] / max(b[qk], 1e-9) - 1 for b, r in pairs]
            rows.append({"setting": setting, "perc": perc, "ratio": variant[0], "mode": variant[1], "seeds": len(pairs),
                         f"unweighted_{fdk}": float(np.mean([b[fdk] for b, _ in pairs])),
                         f"reweighted_{fdk}": float(np.mean([r[fdk] for _, r in pairs])),
                         "discrepancy_cut_mean": float(np.mean(cut)), "discrepancy_cut_sd": float(np.std(cut)),
                         "fd_attrclf_change_mean": float(np.mean(dq)), "fd_attrclf_change_sd": float(np.std(dq)),
                         "cut_ge_50pct": int(sum(c >= 0.5 for c in cut))})
            pk, vk = f"precision_{tag}", f"valid_{tag}"
            if all(pk in b and pk in r for b, r in pairs):
                rows[-1] |= {"unweighted_valid": int(sum(b[vk] for b, _ in pairs)),
                             "reweighted_valid": int(sum(r[vk] for _, r in pairs)),
                             f"unweighted_{pk}": float(np.mean([b[pk] for b, _ in pairs])),
                             f"reweighted_{pk}": float(np.mean([r[pk] for _, r in pairs])),
                             f"precision_real_{tag}": float(np.mean([b[f"precision_real_{tag}"] for b, _ in pairs])),
                             "precision_within_20pct_of_unweighted": int(sum(r[pk] >= 0.8 * b[pk] for b, r in pairs))}
    return rows


def figure(report: dict, tag: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    keys = list(dict.fromkeys((r["setting"], r["perc"]) for r in runs))
    variants = list(dict.fromkeys((r["ratio"], r["mode"]) for r in runs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(variants)
    for j, v in enumerate(variants):
        for ax, k in zip(axes, (f"fairness_discrepancy_joint_{tag}", f"fd_attrclf_{tag}"), strict=True):
            vals = [np.mean([r[k] for r in runs if (r["setting"], r["perc"]) == s and (r["ratio"], r["mode"]) == v]
                            or [np.nan]) for s in keys]
            label = "unweighted" if v[1] == "none" else f"{v[1]} ({v[0]} ratios)"
            ax.bar(np.arange(len(keys)) + j * width, vals, width, label=label)
            ax.set_title(k)
    for ax in axes:
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [f"{s} perc {p:g}" for s, p in keys], fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle("fairgen on SynthFaces: lower discrepancy is fairer; fd_attrclf is quality (lower is better)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
