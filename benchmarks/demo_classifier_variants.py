"""Would another way of adding the demo's complementary pairs lower DEO more reliably? Re-runs the demo's classifier
stage (`demo.classifier_runs`: baseline + latent debiasing with the alpha-1 GAN's pairs) on the finished demo runs
of `benchmarks/demo_validity.py`, once per variant (`name:key=value,...` over `DemoConfig.classifier`), per seed.

    python benchmarks/demo_classifier_variants.py --runs runs/demo-validity --seeds 0,1,2,3,4,5 \\
        --variants "demo:,weight0.5:synthetic_weight=0.5,weight0.25:synthetic_weight=0.25,pairs500:n_pairs=500"

The stage's baseline trains as long as the debiased classifier; --fixed adds one trained for the config's kimg.
About 17 s per (seed, variant) on 2 cores (+10 with --fixed). Writes benchmarks/results/demo_classifier_variants.json
after every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from demo_runs import demo_config, trial_checkpoint, variant

from fairray.config import FairClassifierConfig, parse_value
from fairray.demo import classifier_runs
from fairray.machine import cpu_description
from fairray.metrics.downstream import metric_name
from fairray.stage import RunContext
from fairray.train import classifier

RESULTS = Path(__file__).parent / "results" / "demo_classifier_variants.json"
SHOWN = ("deo", "acc", "worst_group_acc", "dp_gap")


def fixed_baseline(clf: FairClassifierConfig, out: Path, keys: dict[str, str]) -> dict:
    """The baseline trained for the config's kimg, the demo's baseline before 2026-12-06 (the debiased classifier
    trains longer under budget real_passes), scored on the same test rows: {<metric>_fixed}."""
    m = classifier.run(clf, out / "baseline-fixed", RunContext(progress=False, name="classifier-baseline-fixed"))
    return {f"{k}_fixed": m.get(key) for k, key in keys.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/demo-validity"), help="demo_validity.py's --out")
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--variants", default="demo:,weight0.5:synthetic_weight=0.5,weight0.25:synthetic_weight=0.25,"
                    "pairs500:n_pairs=500", help="comma-separated name:key=value+key=value, `--set` assignments "
                    "under DemoConfig.classifier (classifier.budget=real_passes reaches its nested classifier)")
    ap.add_argument("--out", type=Path, default=Path("runs/demo-classifier-variants"))
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON written after every run")
    ap.add_argument("--fixed", action="store_true",
                    help="also train a baseline for the config's kimg (the stage's baseline trains as long as the "
                         "debiased classifier): how much of a change do the extra steps make?")
    args = ap.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = args.runs / f"seed{seed}"
        generator = trial_checkpoint(run, -1)  # the alpha-1 GAN
        for name, sets in (variant(v) for v in args.variants.split(",")):
            cfg = demo_config(seed, sets)
            out = args.out / f"seed{seed}-{name}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            clf, base, deb, skipped = classifier_runs(cfg, generator, run / "attrclf_run" / "attrclf", out,
                                                      RunContext(progress=False))
            row = {"seed": seed, "variant": name,
                   "set": {k.removeprefix("classifier."): parse_value(v) for k, v in (a.split("=", 1) for a in sets)},
                   "seconds": time.perf_counter() - t0,
                   "skipped": skipped.strip()}
            for k in SHOWN:
                key = metric_name(k, clf.target, clf.protected)
                row[f"{k}_baseline"], row[f"{k}_debiased"] = base.get(key), deb.get(key)
            row["deo_lower"] = None not in (row["deo_baseline"], row["deo_debiased"]) and \
                row["deo_debiased"] < row["deo_baseline"]
            row["kimg_trained"] = base.get("kimg_trained")
            if args.fixed:
                row |= fixed_baseline(clf, out, {k: metric_name(k, clf.target, clf.protected) for k in SHOWN})
                row["deo_lower_than_fixed"] = row["deo_debiased"] is not None and row["deo_debiased"] < row["deo_fixed"]
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
            summary = {n: {"runs": sum(r["variant"] == n for r in rows),
                           "deo_lower": sum(r["deo_lower"] for r in rows if r["variant"] == n)}
                       | ({"deo_lower_than_fixed": sum(r.get("deo_lower_than_fixed", False) for r in rows
                                                       if r["variant"] == n)} if args.fixed else {})
                       for n in dict.fromkeys(r["variant"] for r in rows)}
            args.results.write_text(json.dumps({"runs": rows, "summary": summary, "machine": cpu_description(),
                                                "date": time.strftime("%Y-%m-%d")}, indent=2, default=float))


if __name__ == "__main__":
    main()
