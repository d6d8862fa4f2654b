"""Fair distillation on ground truth: a teacher DCGAN trained on SynthFaces 90_10 (it keeps the bias) distilled into
a student with <= 1/4 of its parameters through the balanced sampler and the differentiable fairness term. Claims:
the student's gender shares are within 0.05 of 50/50 while the teacher's stay near 90/10, and the student's
`fd_attrclf` is within 25% of the teacher's (both against the balanced reference set, same latents).

    python experiments/distill_effect.py --out runs/distill-effect          # labeler + teacher + student (~12 min)
    python experiments/distill_effect.py --teacher CKPT --labeler attrclf:DIR --reference DATASET

Writes experiments/results/distill_effect.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from results_io import write_json

from fairray.config import DistillConfig, GanConfig, SynthConfig, TrackingConfig, experiment_attrclf
from fairray.data import synth_dataset
from fairray.metrics.generated import count_tag
from fairray.stage import RunContext
from fairray.train import attrclf, distill, gan

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/distill-effect"))
    ap.add_argument("--teacher", default=None, help="teacher GAN checkpoint dir (default: train one on 90_10)")
    ap.add_argument("--labeler", default=None, help="attrclf:DIR (default: train one)")
    ap.add_argument("--reference", default=None, help="dataset with balanced reference rows (default: render one)")
    ap.add_argument("--n-pairs", type=int, default=10_000)
    ap.add_argument("--kimg", type=float, default=80, help="student schedule (20 kimg missed the fd claim, 80 met it)")
    ap.add_argument("--lambda-fair", type=float, default=1.0)
    ap.add_argument("--eval-n", type=int, default=4000)
    ap.add_argument("--results", type=Path, default=RESULTS / "distill_effect.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    labeler = args.labeler
    if labeler is None:
        if not (out / "attrclf" / "attrclf" / "metrics.json").is_file():
            attrclf.run(experiment_attrclf(), out / "attrclf", RunContext(progress=False))
        labeler = f"attrclf:{(out / 'attrclf' / 'attrclf').resolve()}"
    reference = args.reference
    if reference is None:
        data = out / "data"
        if not (data / "dataset.json").is_file():
            synth_dataset.build(SynthConfig(n=8_000, perc=0.25, bias="90_10"), data, progress=False)
        reference = str(data)
    teacher = args.teacher
    if teacher is None:
        teacher = str(gan.fit(GanConfig(name="teacher", kimg=96, tick_kimg=8, snapshot_ticks=4, reweight="none"),
                              Path(reference), out / "teacher"))
    cfg = DistillConfig(teacher=teacher, labeler=labeler, reference=reference, n_pairs=args.n_pairs, kimg=args.kimg,
                        lambda_fair=args.lambda_fair, eval_n=args.eval_n, name="student",
                        tracking=TrackingConfig(experiment="fairray-distill-effect"))
    m = distill.run(cfg, out / "distill", RunContext(progress=False))
    tag = count_tag(args.eval_n)
    s_share, t_share = m[f"share_gender_1_{tag}"], m[f"teacher_share_gender_1_{tag}"]
    s_fd, t_fd = m[f"fd_attrclf_{tag}"], m[f"teacher_fd_attrclf_{tag}"]
    report = {"config": vars(args),
              "teacher_share_gender_1": t_share, "student_share_gender_1": s_share,
              f"teacher_fairness_discrepancy_gender_{tag}": m[f"teacher_fairness_discrepancy_gender_{tag}"],
              f"student_fairness_discrepancy_gender_{tag}": m[f"fairness_discrepancy_gender_{tag}"],
              f"teacher_fd_attrclf_{tag}": t_fd, f"student_fd_attrclf_{tag}": s_fd,
              "teacher_params": m["teacher_params"], "student_params": m["student_params"],
              "claims": {"student_within_0.05_of_balanced": abs(s_share - 0.5) <= 0.05,
                         "teacher_stays_biased": abs(t_share - 0.5) > 0.25,
                         "student_fd_within_25pct": s_fd <= 1.25 * t_fd,
                         "student_quarter_params": m["student_params"] <= 0.25 * m["teacher_params"]},
              "metrics": {k: v for k, v in m.items() if isinstance(v, float)},
              "seconds_total": time.perf_counter() - t0}
    write_json(args.results, report)
    print(f"teacher female share {t_share:.3f}  student {s_share:.3f}; fd_attrclf teacher {t_fd:.2f} student {s_fd:.2f}")
    print("claims:", json.dumps(report["claims"]))
    print(f"wrote {args.results} in {report['seconds_total']:.0f} s")


if __name__ == "__main__":
    main()
