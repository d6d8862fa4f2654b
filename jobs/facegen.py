"""Ray job: the FairFace-Generator workflow (train DCGAN-64, generate, annotate, compare demographics).

| inputs    | `dataset=` labeled canonical face set (default: render SynthFaces), `labeler=` (default: train attrclf) |
| outputs   | <out>/ray_results/facegen/checkpoint_*, generated/, training_labeled/, generated_labeled/,            |
|           | facegen_shares.png, facegen_skin_tone.png, facegen_intersections.png, facegen.json, MLflow runs        |
| resources | `gan.ray.workers` Train workers (1 GPU each on gan.ray.device=cuda), generator + labeler actor pools   |

    ray job submit --working-dir . -- python jobs/facegen.py --set dataset=DIR --set n=10000 --out /shared/runs/fg
Re-submitting the same command reuses every finished stage and continues the GAN from its newest checkpoint.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["facegen", *sys.argv[1:]])
