"""Ray job: sample N faces from a GAN checkpoint through Ray Data generator actors into the canonical table.

| inputs    | CHECKPOINT: a complete fairray GAN checkpoint dir (ray_results/<name>/checkpoint_*) |
| outputs   | <out>/data/*.parquet (image, latent, seed, checkpoint, generator columns) + dataset.json |
| resources | `--actors` generator actors (1 GPU each with --device cuda, else 0.5 CPU), CPU decode-free |

    ray job submit --working-dir . -- python jobs/generate.py /shared/runs/gan/ray_results/fair/checkpoint_X \\
        --n 100000 --device cuda --actors 4 --out /shared/runs/samples
Re-submitting the same command reuses the finished output; an interrupted write is redone.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["generate", *sys.argv[1:]])
