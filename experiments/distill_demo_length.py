"""Distillation at the demo's length: does the student draw faces, and is it balanced?

For each seed: a teacher trained like the demo's unweighted GAN (`DemoConfig().gan`, the default recipe) on
SynthFaces 90_10 (it keeps the bias), then the demo's distillation settings (`DemoConfig().distill`: 1,000
labelled pairs, 4 kimg, lambda_fair 4) with each student: `thinned` (the teacher's architecture at <= 1/4 of its
parameters, initialised from the teacher's strongest channels, adversarial and fairness terms phased in after a
pixel/feature warm-up) and `separable` (TinyGAN's depthwise-separable block from scratch, the former default).
Goals (issue "Generators that learn their data in minutes"): the student's female share within 0.05 of 0.5 and its
precision >= 80% of the teacher's.

    python experiments/distill_demo_length.py --data runs/gan-recipes/32px-90_10/data \\
        --labeler attrclf:runs/gan-recipes/32px-90_10/attrclf/attrclf --seeds 0,1,2     # ~4 min per seed

Writes experiments/results/distill_demo_length.json after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from results_io import write_json

from fairray.config import DemoConfig
from fairray.metrics.names import count_tag
from fairray.stage import RunContext
from fairray.train import distill, gan

RESULTS = Path(__file__).parent / "results"
KEYS = ("female_share", "precision", "coverage", "valid", "fd_attrclf")


def picked(m: dict, prefix: str, tag: str) -> dict:
    return {"female_share": m[f"{prefix}share_gender_1_{tag}"], "precision": m[f"{prefix}precision_{tag}"],
            "coverage": m[f"{prefix}coverage_{tag}"], "valid": m[f"{prefix}valid_{tag}"],
            "fd_attrclf": m[f"{prefix}fd_attrclf_{tag}"], "precision_real": m[f"{prefix}precision_real_{tag}"]}


def summary(runs: list[dict]) -> dict:
    out = {}
    for arch in dict.fromkeys(r["arch"] for r in runs):
        rs = [r for r in runs if r["arch"] == arch]
        s = {"seeds": len(rs)}
        for who in ("teacher", "student"):
            for k in KEYS:
                v = np.array([r[who][k] for r in rs], dtype=float)
                s[f"{who}_{k}"] = {"mean": float(v.mean()), "sd": float(v.std())}
        s["balanced_within_0.05"] = int(sum(abs(r["student"]["female_share"] - 0.5) <= 0.05 for r in rs))
        s["precision_ge_0.8_teacher"] = int(sum(r["student"]["precision"] >= 0.8 * r["teacher"]["precision"]
                                                for r in rs))
        out[arch] = s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="SynthFaces 90_10 dataset (fairray synth)")
    ap.add_argument("--labeler", required=True, help="attrclf:DIR")
    ap.add_argument("--out", type=Path, default=Path("runs/distill-demo-length"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--archs", default="thinned,separable")
    ap.add_argument("--results", type=Path, default=RESULTS / "distill_demo_length.json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    demo = DemoConfig()
    report: dict = {"config": {"teacher": demo.gan.model_dump(mode="json", include={"kimg", "width", "batch_size",
                                                                                     "loss", "r1_gamma"}),
                               "distill": demo.distill.model_dump(mode="json", include={"n_pairs", "kimg",
                                                                                         "lambda_fair", "warmup"}),
                               "seeds": args.seeds}, "runs": []}
    for seed in map(int, args.seeds.split(",")):
        tcfg = demo.gan.model_copy(update={"dataset": str(args.data.resolve()), "name": f"teacher-{seed}",
                                           "seed": seed, "eval_labeler": None})
        t0 = time.perf_counter()
        teacher = gan.fit(tcfg, args.data, args.out / "teachers")
        t_teacher = time.perf_counter() - t0
        for arch in args.archs.split(","):
            cfg = demo.distill.model_copy(update={"teacher": str(teacher), "labeler": args.labeler,
                                                  "student_arch": arch, "seed": seed, "name": f"{arch}-{seed}"})
            t1 = time.perf_counter()
            m = distill.run(cfg, args.out / f"{arch}-{seed}", RunContext(progress=False))
            tag = count_tag(cfg.eval_n)
            report["runs"].append({"seed": seed, "arch": arch, "teacher": picked(m, "teacher_", tag),
                                   "student": picked(m, "", tag), "student_params": m["student_params"],
                                   "teacher_params": m["teacher_params"], "teacher_seconds": t_teacher,
                                   "distill_seconds": time.perf_counter() - t1})
            r = report["runs"][-1]
            print(f"seed {seed} {arch}: female teacher {r['teacher']['female_share']:.3f} student "
                  f"{r['student']['female_share']:.3f}; precision {r['teacher']['precision']:.2f} -> "
                  f"{r['student']['precision']:.2f}; valid {r['teacher']['valid']:.0f} -> {r['student']['valid']:.0f}",
                  flush=True)
            report["summary"] = summary(report["runs"])
            write_json(args.results, report, indent=1)
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
