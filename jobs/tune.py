"""Ray job: a Ray Tune campaign over a search space, tracked as one MLflow parent run + a child per trial.

| inputs    | a space (tune_spaces/*.yaml), optional `--config` (fairray.config.TuneCampaignConfig), `--set k=v`    |
| outputs   | <out>/tune/<name> (Tune experiment), <out>/trials/<trial id>/ (Train runs, events), <name>.trials.csv, |
|           | MLflow: parent run `<name>` + one child per trial (params, metric history, sample grid, share chart) |
| resources | trials at once = cluster CPUs (GPUs) / (trial_cpus + Train workers' share), capped by the budget      |

    ray job submit --working-dir . -- python jobs/tune.py tune_spaces/reweight_alpha.yaml \\
        --set tracking.uri=http://mlflow:5000 --out /shared/runs/alpha
Re-submitting the same command after the driver died continues the campaign (Tuner.restore, resume_errored):
finished trials are kept, running ones resume from their checkpoints, no MLflow child is duplicated.
"""

import sys

from fairray.cli import app

if __name__ == "__main__":
    app(["tune", *sys.argv[1:]])
