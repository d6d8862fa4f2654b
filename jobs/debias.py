"""Ray job: a debiasing method (`ratio`, `latent` or `diga`), the subcommand given first.

| inputs    | ratio: a dataset with biased + reference rows (DATASET); latent / diga: `--set` config (`labeler=`, |
|           | `generator=` checkpoint or a GAN trained on the fly, `classifier.dataset=` or a synth set)          |
| outputs   | ratio: <out>/data/*.parquet with a `weight` column, reweight.json, ratio_calibration.png;           |
|           | latent: <out>/latent-seed<k>/ (pairs, metrics.json); diga: <out>/diga-seed<k>.json; MLflow runs     |
| resources | ratio: one density-ratio fit + a Ray Data pass (CPU); latent / diga: generator + labeler actors and |
|           | Ray Train classifier workers (1 GPU each with ray.device=cuda)                                        |

    ray job submit --working-dir . -- python jobs/debias.py ratio /shared/runs/synth --out /shared/runs/ratio
    ray job submit --working-dir . -- python jobs/debias.py latent --set labeler=attrclf:DIR --out /shared/runs/latent
The `ratio` output is the `dataset=` of `jobs/train_gan.py --set reweight=weight`.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["debias", *sys.argv[1:]])
