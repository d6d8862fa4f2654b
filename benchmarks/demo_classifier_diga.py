"""Would DiGA lower DEO where the demo's latent debiasing does not? Runs the demo's classifier set with DiGA
(`debias.directions.run`: the alpha-1 GAN of a finished demo, its attrclf as the labeler) against the baseline, per
seed, on the runs of `benchmarks/demo_validity.py`:

    python benchmarks/demo_classifier_diga.py --runs runs/demo-validity --train-on real+edits --budget real_passes
    python benchmarks/demo_classifier_diga.py --runs runs/demo-validity --train-on real+edits --kimg 40 \\
        --baseline-kimg 40    # both trained for the same number of images

The DiGA preparation (encoder, inverted rows) is cached under --work/seed<N>, so further settings with the same
--work reuse it. About 25-65 s per seed on 2 cores. Appends one row per seed to --results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from demo_runs import trial_checkpoint

from fairray.config import DemoConfig
from fairray.config.debias import DigaConfig
from fairray.debias import directions
from fairray.errors import FairrayError
from fairray.machine import cpu_description
from fairray.metrics.downstream import metric_name
from fairray.stage import RunContext
from fairray.train import classifier

SHOWN = ("deo", "acc", "worst_group_acc", "dp_gap")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/demo-validity"), help="demo_validity.py's --out")
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--train-on", choices=["edits", "real+edits"], default="edits")
    ap.add_argument("--budget", choices=["images", "real_passes"], default="images",
                    help="DiGA's classifier budget (real_passes needs --train-on real+edits)")
    ap.add_argument("--kimg", type=float, default=None, help="DiGA's classifier kimg (default: the demo's)")
    ap.add_argument("--baseline-kimg", type=float, default=None, help="the baseline's kimg (default: the demo's)")
    ap.add_argument("--encoder-kimg", type=float, default=20.0)
    ap.add_argument("--work", type=Path, default=Path("runs/demo-classifier-diga"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/demo_classifier_diga.json"))
    args = ap.parse_args()
    report = json.loads(args.results.read_text()) if args.results.is_file() else {"runs": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = DemoConfig(seed=seed).seeded()
        run = args.runs / f"seed{seed}"
        generator = str(trial_checkpoint(run, -1))  # the alpha-1 GAN
        out = args.work / f"seed{seed}"
        clf = cfg.classifier.classifier.model_copy(update={
            "tracking": cfg.tracking.model_copy(update={"enabled": False})})
        clf = clf.model_copy(update={"dataset": str(classifier.dataset_path(clf, out))})
        t0 = time.perf_counter()
        bclf = clf if args.baseline_kimg is None else clf.model_copy(update={"kimg": args.baseline_kimg})
        base = classifier.run(bclf, out / f"base{args.baseline_kimg}", RunContext(progress=False,
                                                                                  name="classifier-baseline"))
        t_base = time.perf_counter() - t0
        dclf = clf.model_copy(update={"budget": args.budget} | ({"kimg": args.kimg} if args.kimg else {}))
        dcfg = DigaConfig(classifier=dclf, generator=generator, labeler=f"attrclf:{run / 'attrclf_run' / 'attrclf'}",
                          encoder_kimg=args.encoder_kimg, seed=cfg.classifier.seed, train_on=args.train_on)
        t0 = time.perf_counter()
        try:
            deb = directions.run(dcfg, out, RunContext(progress=False))
        except FairrayError as e:  # e.g. no edit passed the labeler: the seed's row says so, the others still run
            print(f"seed {seed}: DiGA did not run: {e}", flush=True)
            report["runs"].append({"seed": seed, "train_on": args.train_on, "budget": args.budget, "skipped": str(e)})
            continue
        row = {"seed": seed, "train_on": args.train_on, "budget": args.budget, "kimg": dclf.kimg,
               "baseline_kimg": bclf.kimg, "encoder_kimg": args.encoder_kimg, "seconds_baseline": t_base,
               "seconds_diga": time.perf_counter() - t0, "c": deb["c"], "edits_used": deb.get("edits_used"),
               "edits_target_kept": deb.get("edits_target_kept"),
               "edits_protected_flipped": deb.get("edits_protected_flipped")}
        for k in SHOWN:
            key = metric_name(k, clf.target, clf.protected)
            row[f"{k}_baseline"], row[f"{k}_diga"] = base.get(key), deb.get(key)
        row["deo_lower"] = row["deo_diga"] < row["deo_baseline"]
        report["runs"].append(row)
        print(json.dumps(row, default=float), flush=True)
        report |= {"machine": cpu_description(), "date": time.strftime("%Y-%m-%d")}
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
