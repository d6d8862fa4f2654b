"""Fair downstream classifiers on SynthFaces: baseline vs GAN Data Debiasing (complementary latent pairs) vs DiGA
(direction edits) vs an oracle (as many balanced faces, rendered with their true labels: the upper bound of any
augmentation), on target x protected cuts biased 1k/9k/9k/1k, scored on the balanced reference test split. With
`--ambiguity 0.3` every set is rendered in the biased regime of experiments/biased_regime.py.

Per run: one attribute classifier (the labeler that hallucinates labels and judges edits) and one generic face
GAN trained on an unbiased SynthFaces set (Ramaswamy's GAN is trained on all of CelebA and DiGA's generator is
FFHQ StyleGAN, neither on the biased cut), both reused across pairs and seeds. Per pair: the biased set, the
DiGA encoder + inversions and the labeler's choice of c (on biased val rows). Per pair and seed: three
classifiers trained for the same number of images. Nothing is selected on the test split.

    python experiments/fair_classifier.py                     # both pairs, seeds 0,1,2
    python experiments/fair_classifier.py --pairs Smiling/gender --seeds 0 --labeler attrclf:DIR --generator CKPT
    python experiments/fair_classifier.py --ambiguity 0.3 --n 10000 --width 16 --blocks 1,1,1,1 --kimg 20 \
        --out runs/fair-classifier-regime --results experiments/results/fair_classifier_regime.json

Writes the results JSON after every classifier; a re-run with the same --results skips the runs it holds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from results_io import mean_sd, pm, write_json

from fairray.config import (
    DigaConfig,
    FairClassifierConfig,
    GanConfig,
    LatentDebiasConfig,
    SynthConfig,
    experiment_attrclf,
)
from fairray.data import synth_dataset
from fairray.debias import directions, latent
from fairray.labelers.registry import load_labeler
from fairray.metrics.downstream import metric_name
from fairray.ray_env import init_ray
from fairray.stage import RunContext
from fairray.train import attrclf, classifier, gan

RESULTS = Path(__file__).parent / "results"
METHODS = ("baseline", "latent", "diga", "oracle", "oracle-labelled")
DIAGNOSTICS = ("svm_acc_target", "svm_acc_protected", "pairs_target_kept", "pairs_protected_flipped",
               "pairs_verified", "edits_target_kept", "edits_protected_flipped", "edits_verified", "edits_used")
SHOWN = ("acc", "worst_group_acc", "ap", "deo", "ba", "kl", "dp_gap", "eo_gap")


def bias_for(target: str, protected: str, n: int, corr: float) -> str:
    """corr of the n rows on the diagonal: at 0.9 and 20k DiGA's cut 9k (t=0, p=0), 1k (0, 1), 1k (1, 0), 9k (1, 1)."""
    major = round(n * corr / 2)
    minor = n // 2 - major
    return f"{target} x {protected}={major},{minor},{minor},{major}"


def world(ambiguity: float) -> dict[str, float]:
    """The rendering every set of a run shares: the targets' cue noise (experiments/biased_regime.py)."""
    return {"Smiling": ambiguity, "Eyeglasses": ambiguity} if ambiguity > 0 else {}


def summarise(runs: list[dict]) -> list[dict]:
    """Mean +- sd over seeds per (pair, method), and the cuts vs the baseline of the same pair."""
    out = []
    pairs = sorted({(r["target"], r["protected"]) for r in runs})
    for t, p in pairs:
        base = None
        for method in METHODS:
            rs = [r for r in runs if (r["target"], r["protected"], r["method"]) == (t, p, method)]
            if not rs:
                continue
            row = {"target": t, "protected": p, "method": method, "seeds": len(rs)}
            row |= mean_sd(rs, SHOWN, {k: metric_name(k, t, p) for k in SHOWN})
            if method == "baseline":
                base = row
            elif base is not None:
                row["deo_cut"] = 1 - row["deo"] / base["deo"] if base["deo"] > 0 else float("nan")
                row["dp_gap_cut"] = 1 - row["dp_gap"] / base["dp_gap"] if base["dp_gap"] > 0 else float("nan")
                row["acc_cost_points"] = 100 * (base["acc"] - row["acc"])
                row["meets_issue_bar"] = bool(row["deo_cut"] >= 0.3 and row["dp_gap_cut"] >= 0.3
                                              and row["acc_cost_points"] <= 2.0)
            out.append(row)
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| target / protected | method | acc | worst-group acc | AP | DEO | DP gap | EO gap | BA | KL |"
             " DEO cut | DP cut | acc cost (pts) |", "|" + "---|" * 13]
    for r in summary:
        cuts = ([f"{100 * r['deo_cut']:.0f}%", f"{100 * r['dp_gap_cut']:.0f}%", f"{r['acc_cost_points']:+.1f}"]
                if "deo_cut" in r else ["", "", ""])
        lines.append(f"| {r['target']} / {r['protected']} | {r['method']} | " + " | ".join(
            pm(r, k) for k in ("acc", "worst_group_acc", "ap", "deo", "dp_gap", "eo_gap", "ba", "kl")) + " | "
            + " | ".join(cuts) + " |")
    return "\n".join(lines)


def oracle_set(out: Path, args: argparse.Namespace, labeler=None) -> Path:
    """2 x pairs-n unbiased faces rendered in the same world with their true labels (what a perfect generator and
    labeler would add: how far augmentation can move this classifier at all), or with the labeler's labels of
    Smiling and Eyeglasses (a perfect generator, fairray's labeler)."""
    from fairray.data.decode import decode_column
    from fairray.data.table import ShardWriter, read_manifest, read_table, write_manifest

    path = out / "oracle-data"
    if not (path / "dataset.json").is_file():
        synth_dataset.build(SynthConfig(n=2 * args.pairs_n, bias="none", perc=0.0, val_frac=0, test_frac=0, seed=11,
                                        ambiguity=world(args.ambiguity)), path, progress=False)
    if labeler is None:
        return path
    relabelled = out / "oracle-data-labelled"
    if not (relabelled / "dataset.json").is_file():
        df = read_table(path)
        targets = ["Smiling", "Eyeglasses"]
        hallucinated = latent.label_images(decode_column(df.image)[0], labeler, targets)
        agreement = {t: float((hallucinated[t] == df[t].to_numpy()).mean()) for t in targets}
        for t in targets:
            df[t] = hallucinated[t]
        ShardWriter(relabelled).write(df)
        write_manifest(relabelled, read_manifest(path) | {"labels": "attrclf", "label_agreement": agreement})
    return relabelled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/fair-classifier"))
    ap.add_argument("--pairs", default="Smiling/gender,Eyeglasses/Young")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=20_000, help="biased training rows (1k/9k/9k/1k at 20k)")
    ap.add_argument("--corr", type=float, default=0.9, help="share of training rows where target == protected")
    ap.add_argument("--ambiguity", type=float, default=0.0,
                    help="cue noise sd of Smiling and Eyeglasses in every set (the biased regime: 0.35)")
    ap.add_argument("--svm-confident", type=float, default=0.5, help="latent: hyperplanes on this confident share")
    ap.add_argument("--verified-only", action="store_true", help="latent: add only the labeler-verified pairs")
    ap.add_argument("--encoder", default=None, help="reuse a DiGA encoder.pt trained for --generator")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--kimg", type=float, default=10.0, help="images per classifier, thousands (every method)")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--blocks", default="1,1,1")
    ap.add_argument("--gan-kimg", type=float, default=96.0)
    ap.add_argument("--gan-seed", type=int, default=0, help="seed of the generic GAN trained when no --generator")
    ap.add_argument("--labeler", default=None, help="reuse an attrclf (attrclf:DIR) instead of training one")
    ap.add_argument("--generator", default=None, help="reuse a GAN checkpoint instead of training one")
    ap.add_argument("--pairs-n", type=int, default=5000, help="complementary pairs per seed (latent method)")
    ap.add_argument("--strength", type=float, default=4.0, help="DiGA edit strength s (the most, with uniform)")
    ap.add_argument("--refine-steps", type=int, default=5)
    ap.add_argument("--diga-verify", default=None, choices=["none", "target", "flip"],
                    help="DiGA: add only the edits the labeler confirms (DigaConfig.verify; default target)")
    ap.add_argument("--edits-per-row", type=int, default=None, help="DiGA: edits of each row (default 4, 1 fixed)")
    ap.add_argument("--diga-edit", default="residual", choices=["residual", "generate"],
                    help="DiGA: x + G(z+sn) - G(z) or G(z+sn) itself (DigaConfig.edit)")
    ap.add_argument("--fixed-strength", action="store_true",
                    help="DiGA: every edit at --strength (default: each from U(0, --strength))")
    ap.add_argument("--budget", default="images", choices=["images", "real_passes"],
                    help="classifier budget (FairClassifierConfig.budget): every method --kimg images, or each "
                         "real row seen as often as in the baseline")
    ap.add_argument("--diga-train-on", default="edits", choices=["edits", "real+edits"],
                    help="DiGA's classifier trains on the edits alone (DigaConfig.train_on) or on real + edits")
    ap.add_argument("--target-direction", default="rows", choices=["rows", "labeler"],
                    help="DiGA's w_b: the inverted rows' target fit (DiGA) or the labeler's on generated samples")
    ap.add_argument("--coefficients", default=None, help="DiGA: the c grid, comma-separated (default DigaConfig's)")
    ap.add_argument("--backend", default="local", choices=["local", "ray"])
    ap.add_argument("--results", type=Path, default=RESULTS / "fair_classifier.json")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    init_ray(num_cpus=None)
    timings: dict[str, float] = {}

    labeler = args.labeler
    if labeler is None:
        if not (out / "attrclf" / "attrclf" / "model.pt").is_file():
            acfg = experiment_attrclf()
            acfg = acfg.model_copy(update={"synth": acfg.synth.model_copy(update={"ambiguity": world(args.ambiguity)})})
            attrclf.run(acfg, out / "attrclf", RunContext(progress=False))
        labeler = f"attrclf:{out / 'attrclf' / 'attrclf'}"
    timings["attrclf"] = time.perf_counter() - t0
    generator = args.generator
    if generator is None:
        data = out / "gan-data"
        if not (data / "dataset.json").is_file():  # unbiased faces: a generic generator, like the seeds'
            synth_dataset.build(SynthConfig(n=10_000, bias="none", perc=0.0, val_frac=0, test_frac=0, seed=7,
                                            ambiguity=world(args.ambiguity)), data, progress=False)
        gcfg = GanConfig(dataset=str(data), name="generic-gan", width=32, z_dim=64, kimg=args.gan_kimg,
                         tick_kimg=16, snapshot_ticks=6, seed=args.gan_seed)
        generator = str(gan.fit(gcfg, data, out / "gan"))
    timings["gan"] = time.perf_counter() - t0 - timings["attrclf"]
    lab = load_labeler(labeler)
    report: dict = {"config": vars(args) | {"out": str(out), "labeler": labeler,
                                            "generator": generator}, "runs": [], "diga_choice": {}}
    if args.results.is_file():  # resume: keep the runs (and DiGA choices) already written
        old = json.loads(args.results.read_text())
        report["runs"], report["diga_choice"] = old.get("runs", []), old.get("diga_choice", {})
    blocks = [int(b) for b in args.blocks.split(",")]
    for pair in args.pairs.split(","):
        t, p = pair.split("/")
        pdir = out / f"{t}-{p}"
        synth = SynthConfig(n=args.n, bias=bias_for(t, p, args.n, args.corr), perc=0.5, test_frac=0.2,
                            ambiguity=world(args.ambiguity))
        clf = FairClassifierConfig(synth=synth,
                                   target=t, protected=p, width=args.width, blocks=blocks, kimg=args.kimg,
                                   backend=args.backend, n_boot=200, budget=args.budget)
        dataset = classifier.dataset_path(clf, pdir)
        clf = clf.model_copy(update={"dataset": str(dataset)})
        dcfg = DigaConfig(classifier=clf, labeler=labeler,
                          generator=generator, strength=args.strength, target_direction=args.target_direction,
                          train_on=args.diga_train_on,
                          refine_steps=args.refine_steps, encoder_kimg=40, verify=args.diga_verify,
                          edits_per_row=args.edits_per_row, edit=args.diga_edit,
                          strength_sampling="fixed" if args.fixed_strength else "uniform",
                          **({"coefficients": [float(c) for c in args.coefficients.split(",")]}
                             if args.coefficients else {}))
        prep, c = None, None
        diga_left = [sd for sd in args.seeds.split(",") if "diga" in args.methods.split(",") and not any(
            (r["target"], r["protected"], r["method"], r["seed"]) == (t, p, "diga", int(sd)) for r in report["runs"])]
        if diga_left:
            # the encoder belongs to the generator: train it once, share it
            first = Path(args.encoder) if args.encoder else out / "encoder.pt"
            (pdir / "diga-prep").mkdir(parents=True, exist_ok=True)
            if first.is_file() and not (pdir / "diga-prep" / "encoder.pt").is_file():
                shutil.copy(first, pdir / "diga-prep" / "encoder.pt")
                if first.with_name(first.name + ".json").is_file():  # what made it (directions.made_from)
                    shutil.copy(first.with_name(first.name + ".json"), pdir / "diga-prep" / "encoder.pt.json")
            t_prep = time.perf_counter()
            prep = directions.prepare(dcfg, pdir, progress=True, labeler=lab)
            if not first.is_file():
                shutil.copy(pdir / "diga-prep" / "encoder.pt", first)
                shutil.copy(pdir / "diga-prep" / "encoder.pt.json", first.with_name(first.name + ".json"))
            c, choice = directions.choose_coefficient(dcfg, prep, lab, args.strength)
            report["diga_choice"][pair] = {"c": c, "grid": choice, "cos_w_a_w_b": float(prep.w_a @ prep.w_b),
                                           "seconds": time.perf_counter() - t_prep}
            print(f"{pair}: DiGA c = {c} (edits keep the target on "
                  f"{next(r for r in choice if r['c'] == c)['edit_target_kept']:.3f} of val rows)", flush=True)
        for seed in [int(s) for s in args.seeds.split(",")]:
            cs = clf.model_copy(update={"seed": seed})
            for method in args.methods.split(","):
                if any((r["target"], r["protected"], r["method"], r["seed"]) == (t, p, method, seed)
                       for r in report["runs"]):
                    continue  # resumed: this run is in the results file already
                t_run = time.perf_counter()
                if method == "baseline":
                    m = classifier.run(cs, pdir / f"baseline-seed{seed}", RunContext(name=f"baseline-seed{seed}",
                                                                                      progress=False))
                elif method == "latent":
                    m = latent.run(LatentDebiasConfig(classifier=cs, labeler=labeler, generator=generator,
                                                      n_svm=5000, n_pairs=args.pairs_n, seed=seed,
                                                      svm_confident=args.svm_confident,
                                                      verified_only=args.verified_only), pdir)
                elif method == "diga":
                    m = directions.diga_point(dcfg.model_copy(update={"classifier": cs}), c, args.strength, pdir,
                                              prep, labeler=lab)
                else:  # the ceiling: as many balanced faces as the pairs add, true labels or the labeler's
                    aug = oracle_set(out, args, lab if method == "oracle-labelled" else None)
                    m = classifier.run(cs.model_copy(update={"augment_data": [str(aug)]}),
                                       pdir / f"{method}-seed{seed}", RunContext(name=f"{method}-seed{seed}",
                                                                                 progress=False))
                row = {"target": t, "protected": p, "method": method, "seed": seed,
                       "seconds": time.perf_counter() - t_run} | m
                report["runs"].append(row)
                print(f"{pair} seed {seed} {method:<8s} acc {m['acc']:.3f} wga {m['worst_group_acc']:.3f} "
                      f"DEO {m[metric_name('deo', t, p)]:.3f} DP {m['dp_gap']:.3f} EO {m['eo_gap']:.3f} "
                      f"({row['seconds']:.0f} s)" + "".join(f" {k} {m[k]:.3f}" for k in DIAGNOSTICS if k in m),
                      flush=True)
                report["summary"] = summarise(report["runs"])
                report["seconds_total"] = time.perf_counter() - t0
                report["timings"] = timings
                write_json(args.results, report)
    table = markdown(report["summary"])
    args.results.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
