"""Fair distillation of a GAN into a small student (fair-distill / TinyGAN, done with Ray and a working fairness term).

One module per job: `fairness_loss` (the differentiable fairness term and the pixel-term schedule), `pairs`
(teacher samples labelled through Ray Data, the balanced sampler), `student_loop` (the Ray Train loop, on
`fairray.train.loop`), `evaluate` (teacher vs student on the same latents) and `driver` (`run`).
"""

from fairray.train.distill.driver import check, run, student_width
from fairray.train.distill.evaluate import (
           evaluate,
           hard_label_frame,
           share_tables,
           side_by_side,
           timed_sample,
)
from fairray.train.distill.fairness_loss import (
           FairnessLoss,
           cell_count,
           fairness_divergence,
           fairness_loss,
           k_at,
)
from fairray.train.distill.pairs import SELECTION, load_pairs, make_pairs, select_pairs, selection_summary
from fairray.train.distill.student_loop import DistillLoss, fit, load_student, train_loop

__all__ = ["SELECTION", "DistillLoss", "FairnessLoss", "cell_count", "check", "evaluate", "fairness_divergence",
           "fairness_loss", "fit", "hard_label_frame", "k_at", "load_pairs", "load_student", "make_pairs", "run",
           "select_pairs", "selection_summary", "share_tables", "side_by_side", "student_width", "timed_sample",
           "train_loop"]
