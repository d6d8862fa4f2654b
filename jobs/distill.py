"""Ray job: fair distillation of a teacher GAN into a small student; re-submitting resumes.

| inputs    | `teacher=` GAN checkpoint dir, `labeler=attrclf:DIR` (labels pairs, frozen L_fair classifier)       |
| outputs   | <out>/pairs_labeled (Ray Data), selection.parquet, ray_results/<name>/checkpoint_*, <name>_shares.png, |
|           | <name>_grids.png, <name>_metrics.json, MLflow run                                                     |
| resources | generator + labeler actor pools (Ray Data), `ray.workers` Train workers (1 GPU each on ray.device=cuda) |

    ray job submit --working-dir . -- python jobs/distill.py --set teacher=CKPT --set labeler=attrclf:DIR \\
        --set name=student --out /shared/runs/distill
Re-submitting the same command reuses the labeled pairs and continues from the newest complete checkpoint.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["distill", *sys.argv[1:]])
