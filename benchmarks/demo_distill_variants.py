"""Would other distillation settings make the demo's student balanced and valid in every seed? Re-runs the demo's
distill stage (`demo.distill_config`: the unweighted GAN as teacher, the demo's attrclf and data) on the finished
demo runs of `benchmarks/demo_validity.py`, once per variant (`name:key=value+...` over `DemoConfig.distill`), per
seed. The GAN stages are not re-run, so a variant's row is what a demo with that setting would report.

    python benchmarks/demo_distill_variants.py --runs runs/demo-validity --seeds 0,1,2,3,4,5 \\
        --variants "demo:,lf2.5:lambda_fair=2.5,lf3:lambda_fair=3"

About 60 s per (seed, variant) on 2 cores. Writes benchmarks/results/demo_distill_variants.json after every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from demo_runs import demo_config, trial_checkpoint, variant

from fairray.config import parse_value
from fairray.demo import distill_config
from fairray.machine import cpu_description
from fairray.stage import RunContext
from fairray.train import distill

RESULTS = Path(__file__).parent / "results" / "demo_distill_variants.json"
TAG = "1k"  # the demo's distill eval_n (1,000 samples)
SHOWN = ("share_gender_1", "precision", "coverage", "precision_real", "coverage_real", "coverage_target",
         "coverage_target_real", "valid",
         "fairness_discrepancy_gender", "fd_attrclf")


def goals(row: dict) -> dict[str, bool]:
    """The demo's student goals (issue #23): balanced within 0.05, precision >= 80% of the teacher's, valid."""
    return {"student_balanced": abs(row["share_gender_1"] - 0.5) <= 0.05,
            "student_precision_80pct": row["precision"] >= 0.8 * row["teacher_precision"],
            "student_valid": row["valid"] == 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/demo-validity"), help="demo_validity.py's --out")
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--variants", default="demo:,lf2.5:lambda_fair=2.5",
                    help="comma-separated name:key=value+key=value, `--set` assignments under DemoConfig.distill")
    ap.add_argument("--out", type=Path, default=Path("runs/demo-distill-variants"))
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON written after every run")
    args = ap.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = args.runs / f"seed{seed}"
        teacher = trial_checkpoint(run, 0)  # the unweighted GAN
        data = next((run / "data").iterdir())
        for name, sets in (variant(v, "distill") for v in args.variants.split(",")):
            cfg = distill_config(demo_config(seed, sets), teacher, run / "attrclf_run" / "attrclf", data)
            out = args.out / f"seed{seed}-{name}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            m = distill.run(cfg, out.resolve(), RunContext(progress=False))
            row = {"seed": seed, "variant": name,
                   "set": {k.removeprefix("distill."): parse_value(v) for k, v in (a.split("=", 1) for a in sets)},
                   "seconds": time.perf_counter() - t0}
            for k in SHOWN:
                row[k], row[f"teacher_{k}"] = m.get(f"{k}_{TAG}"), m.get(f"teacher_{k}_{TAG}")
            row["goals"] = goals(row)
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)
            summary = {n: {"runs": sum(r["variant"] == n for r in rows)}
                       | {g: sum(r["goals"][g] for r in rows if r["variant"] == n) for g in row["goals"]}
                       for n in dict.fromkeys(r["variant"] for r in rows)}
            args.results.write_text(json.dumps({"runs": rows, "summary": summary, "machine": cpu_description(),
                                                "date": time.strftime("%Y-%m-%d")}, indent=2, default=float))


if __name__ == "__main__":
    main()
