"""Ray job: Ray Train DDP GAN training (fairgen reweighting optional); re-submitting resumes.

| inputs    | `dataset=` canonical dir with a `weight` column (fairray debias ratio) or without (unweighted) |
| outputs   | <out>/ray_results/<name>/checkpoint_* (atomic), <name>_grid.png, MLflow run with tick metrics |
| resources | `ray.workers` Train workers (1 GPU each with ray.device=cuda), CPU share set by fairray.ray_env |

    ray job submit --working-dir . -- python jobs/train_gan.py --set dataset=DIR --set reweight=weight \\
        --set name=fair --out /shared/runs/gan
Re-submitting the same command (same --out and name) continues from the newest complete checkpoint.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["train-gan", *sys.argv[1:]])
