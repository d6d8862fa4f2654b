"""Ray job: label a dataset with a labeler actor pool.

| inputs    | a canonical dataset dir (`dataset=`), a labeler spec (`labeler=attrclf:DIR`), optional `reference=` |
| outputs   | <out>/data/*.parquet (<head>, <head>_prob, labeler), errors.parquet, summary.json, distributions.png |
| resources | one decode task per block (0.5 CPU), `actors` labeler actors (1 GPU each when the cluster has GPUs) |

    ray job submit --working-dir . -- python jobs/label.py DATASET --labeler attrclf:DIR --out runs/label
Runs locally too (a local Ray starts); RAY_ADDRESS or --set ray.address=... joins a cluster.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["label", *sys.argv[1:]])
