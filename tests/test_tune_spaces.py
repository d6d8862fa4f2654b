"""Every shipped search space (tune_spaces/*.yaml) runs end to end: the space shrunk to one tiny trial goes through
the campaign API (Ray Tune, MLflow parent + child runs), and that trial finishes and reports a finite fairness and
quality metric. A new space is covered by being in the folder; a new trainable needs its tiny settings in
`tiny_base`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fairray.config import SynthConfig, TrackingConfig, TuneCampaignConfig, read_yaml
from fairray.tune.campaign import run_campaign
from fairray.tune.spaces import load_space
from fairray.tune.trainables import get_trainable

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "tune_spaces").glob("*.yaml"))


def shrink(path: Path) -> list[str]:
    """Space overrides that leave one trial with one evaluation: the first value of every grid or choice, one
    draw of every sampled param."""
    sets = ["search.num_samples=1", "search.scheduler=fifo", "budget.evaluations=1", "budget.max_concurrent_trials=1"]
    for key, p in read_yaml(path)["params"].items():
        if p["type"] in ("grid", "choice"):
            sets.append(f"params.{key}.values=[{json.dumps(p['values'][0])}]")
    return sets


def tiny_base(trainable: str, request) -> dict:
    """Settings of the trainable's config (over the space's `fixed`) that make its one trial take seconds. The GAN
    teacher and labeler come from the session fixtures, so only the spaces that need them train them."""
    if trainable == "classifier":
        return {"synth": {"n": 600}, "kimg": 1, "batch_size": 64, "width": 8, "blocks": [1, 1], "n_boot": 0}
    if trainable == "gan":
        return {"kimg": 0.32, "tick_kimg": 0.16, "snapshot_ticks": 1, "width": 8, "z_dim": 16, "batch_size": 32}
    labeler = f"attrclf:{request.getfixturevalue('attrclf_trained')[0]}"
    teacher, data = str(request.getfixturevalue("gan_trained")), str(request.getfixturevalue("synth_90_10"))
    if trainable == "diga":
        return {"generator": teacher, "encoder_kimg": 2, "encoder_width": 8, "refine_steps": 2, "choose_n": 64,
                "classifier": {"dataset": data, "target": "Smiling", "protected": "gender", "width": 8,
                               "blocks": [1, 1], "kimg": 0.5, "batch_size": 64, "n_boot": 0, "backend": "local"}}
    if trainable == "latent":
        return {"generator": teacher, "labeler": labeler, "n_svm": 300, "n_pairs": 100,
                "classifier": {"dataset": data, "target": "Smiling", "protected": "gender", "width": 8,
                               "blocks": [1, 1], "kimg": 0.5, "batch_size": 64, "n_boot": 0, "backend": "local"}}
    if trainable == "distill":
        return {"teacher": teacher, "labeler": labeler, "reference": data, "n_pairs": 400, "kimg": 0.32,
                "tick_kimg": 0.16, "snapshot_ticks": 1, "batch_size": 32, "eval_n": 200,
                "report_attributes": ["gender"], "intersections": []}
    raise AssertionError(f"no tiny settings for trainable {trainable!r}: add them to tiny_base")


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_runs_one_trial(path, tmp_path, ray_local, request):
    sets = shrink(path)
    space = load_space(path, sets)
    assert space.n_trials() == 1
    trainable = get_trainable(space.spec.trainable)
    campaign = {"name": path.stem, "base": tiny_base(trainable.name, request), "eval_n": 200, "ratio_epochs": 1,
                "synth": SynthConfig(n=800, perc=0.25), "tracking": TrackingConfig(experiment="spaces")}
    if trainable.kind == "gan":
        campaign["labeler"] = f"attrclf:{request.getfixturevalue('attrclf_trained')[0]}"
    res = run_campaign(space, TuneCampaignConfig(**campaign), tmp_path, space_sets=sets)

    (f_name, _), (q_name, _) = res.metrics["fairness"], res.metrics["quality"]
    assert len(res.table) == 1
    trial = res.table.iloc[0]
    assert trial.error is None, trial.error
    assert trial.iterations >= 1
    for name in (f_name, q_name, "objective"):
        assert math.isfinite(trial[name]), (name, trial[name])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(res.tracking_uri)
    child = client.get_run(trial.run_id)
    assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == res.parent_run_id
    assert child.data.metrics[f_name] == pytest.approx(trial[f_name])
    if trainable.kind == "point":  # the stage got the trial's RunContext: its runs hang under the trial's child
        exp = client.get_experiment_by_name("spaces")
        nested = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{trial.run_id}'")
        assert nested, "the stage logged outside the trial's run"
