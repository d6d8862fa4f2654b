"""Tune campaigns: space validation (no Ray), and a 4-trial campaign whose driver is SIGKILLed after a finished
trial and re-run: every trial finishes exactly once, the running one resumes from its checkpoint, and the MLflow
parent ends with exactly 4 children whose metrics equal Tune's results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fairray.errors import FairrayError
from fairray.tune.spaces import load_space

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
trainable: gan
fixed: {reweight: weight, width: 16}
params:
  alpha: {type: grid, values: [0.0, 0.5, 1.0]}
  seed: {type: grid, values: [0, 1]}
"""


@pytest.mark.parametrize("path", sorted((ROOT / "tune_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_validate(path):
    space = load_space(path)
    assert space.n_trials() >= 1 and space.params


def test_good_space_expands_and_converts(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    assert space.n_trials() == 6
    ps = space.param_space()
    assert ps["alpha"] == {"grid_search": [0.0, 0.5, 1.0]}


@pytest.mark.parametrize(("text", "key"), [
    ("trainable: gan\nparams:\n  alfa: {type: grid, values: [0, 1]}\n", "params.alfa"),
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: [-1, 1]}\n", "params.alpha=-1"),
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: []}\n", "params.alpha"),
    ("trainable: gan\nparams:\n  lr_g: {type: loguniform, low: 0, high: 1}\nsearch: {searcher: random}\n",
     "params.lr_g"),
    ("trainable: gan\nparams:\n  alpha: {type: uniform, low: 1, high: 0.5}\nsearch: {searcher: random}\n",
     "params.alpha"),
    ("trainable: gan\nparams:\n  alpha: {type: uniform, low: 0, high: 1}\n", "params.alpha"),  # grid searcher
    ("trainable: gan\nparams:\n  alpha: {type: gaussian, low: 0, high: 1}\n", "params.alpha.type"),
    ("trainable: gan\nparams:\n  perc: {type: uniform, low: 0.1, high: 0.5}\nsearch: {searcher: random}\n",
     "params.perc"),
    ("trainable: gan\nparams:\n  perc: {type: grid, values: [0, 0.5]}\n", "params.perc"),
    ("trainable: gan\nfixed: {kimgs: 3}\nparams:\n  alpha: {type: grid, values: [0, 1]}\n", "fixed.kimgs"),
    ("trainable: gan\nfixed: {width: 2}\nparams:\n  alpha: {type: grid, values: [0, 1]}\n", "width"),
    ("trainable: gans\nparams:\n  alpha: {type: grid, values: [0, 1]}\n", "trainable"),
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: [0, 1]}\nsearch: {scheduler: hyperband}\n",
     "search.scheduler"),
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: [0, 1]}\nsearch: {scheduler: asha}\n",
     "search.scheduler"),  # asha needs several evaluations
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: [0, 1]}\nobjective: {metric: quality, mode: max}\n",
     "objective.mode"),
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: [0, 0.5, 1]}\nbudget: {max_trials: 2}\n",
     "budget.max_trials"),
    ("trainable: gan\nparams:\n  alpha: {type: grid, values: [0, 1]}\nbudgets: {max_trials: 2}\n", "budgets"),
    ("trainable: classifier\nparams:\n  lr: {type: grid, values: [0.1, -1]}\n", "params.lr=-1"),
    ("trainable: distill\nparams:\n  lambda_advv: {type: grid, values: [0.1, 1]}\n", "params.lambda_advv"),
])
def test_invalid_space_names_the_key(tmp_path, text, key):
    with pytest.raises(FairrayError) as e:
        load_space(write(tmp_path, text))
    assert key in str(e.value), str(e.value)


def test_cli_rejects_bad_space_before_any_trial(tmp_path):
    from fairray.cli import app

    bad = write(tmp_path, "trainable: gan\nparams:\n  alfa: {type: grid, values: [0, 1]}\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["tune", str(bad), "--out", str(out)])
    assert r.exit_code == 2 and "params.alfa" in r.output
    assert not out.exists()  # nothing started: no data, no Ray experiment, no MLflow store


def test_space_overrides_pin_one_trial(tmp_path):
    from fairray.tune.trainables import reproduce_command

    ctx = {"space_path": str(write(tmp_path, GOOD)), "campaign": "c", "config_sets": ["synth.n=600"],
           "space_sets": ["fixed.kimg=2"]}
    cmd = reproduce_command(ctx, {"alpha": 0.5, "seed": 1})
    import shlex

    argv = shlex.split(cmd)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--space-set"]
    space = load_space(Path(argv[2]), sets)
    assert space.n_trials() == 1
    assert space.params["alpha"].values == [0.5] and space.params["seed"].values == [1]
    assert space.spec.fixed["kimg"] == 2  # the campaign's own space overrides are part of the command
    assert argv[argv.index("--set") + 1] == "synth.n=600"


# ------------------------------------------------------------------------------------------------------------
# kill -9 the driver, re-run, check Tune and MLflow agree

CAMPAIGN = """
trainable: classifier
fixed:
  synth: {n: 600, bias: diga, perc: 0.5, test_frac: 0.2}
  kimg: 2
  batch_size: 64
  n_boot: 0
  width: 8
  blocks: [1, 1]
params:
  lr: {type: grid, values: [0.001, 0.002, 0.004, 0.008]}
search: {searcher: grid}
objective:
  metric: combined
  weights: {fairness: 1.0, quality: 1.0}
budget: {max_concurrent_trials: 1}
"""


def _events(out: Path) -> dict[str, list[dict]]:
    res = {}
    for f in sorted((out / "trials").glob("*/events.jsonl")):
        res[f.parent.name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return res


def _command(space: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fairray.cli", "tune", str(space), "--out", str(out), "--set", "name=kill",
            "--set", "trial_cpus=1", "--set", "tracking.experiment=kill-test"]


def test_campaign_survives_driver_sigkill(tmp_path):
    space = write(tmp_path, CAMPAIGN, "kill.yaml")
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log1 = open(tmp_path / "run1.log", "w")
    proc = subprocess.Popen(_command(space, out), cwd=tmp_path, env=env, stdout=log1, stderr=subprocess.STDOUT,
                            start_new_session=True)
    running_at_kill, status = None, out / "kill.status.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            # the driver's status file: each trial as Tune's snapshot in storage has it (what a restore reads)
            st = json.loads(status.read_text()) if status.is_file() else {}
            done = [t for t, v in st.items() if v["status"] == "TERMINATED"]
            mid = [t for t, v in st.items() if v["status"] == "RUNNING" and v["checkpoint"] and v["iteration"] < 5]
            if done and mid:
                running_at_kill = mid[0]
                checkpointed = st[mid[0]]["iteration"]
                break
            assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
            time.sleep(0.02)
        assert running_at_kill, "no trial finished while another was running"
    finally:
        kill_time = time.time()
        os.kill(proc.pid, signal.SIGKILL)  # the driver, with no chance to clean up
        proc.wait()
        try:  # then what it started (its local Ray): a dead head node, not lingering workers
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log1.close()
    before = _events(out)
    finished_before = {t for t, e in before.items() if any(x["event"] == "finished" for x in e)}
    assert finished_before and len(finished_before) < 4

    run2 = subprocess.run(_command(space, out), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-3000:]
    assert "continuing campaign" in run2.stdout + run2.stderr

    events = _events(out)
    assert len(events) == 4
    for trial, ev in events.items():
        assert sum(x["event"] == "finished" for x in ev) == 1, (trial, ev)  # finished exactly once
        reports = [x["iteration"] for x in ev if x["event"] == "report"]
        assert sorted(set(reports)) == list(range(1, max(reports) + 1))
        assert reports.count(max(reports)) == 1
        if trial in finished_before:  # not re-run
            assert all(x["time"] < kill_time for x in ev), (trial, ev)
    resumed = [x for x in events[running_at_kill] if x["event"] == "start" and x["time"] > kill_time]
    # from its checkpoint, not from 0
    assert resumed and resumed[0]["iteration"] >= checkpointed >= 1, (checkpointed, events[running_at_kill])

    from mlflow.tracking import MlflowClient
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(out / "tune" / "kill"))
    tune_results = {t.trial_id: t.last_result for t in analysis.trials}
    assert len(tune_results) == 4 and all(r["training_iteration"] == 5 for r in tune_results.values())
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kill-test")
    parents = client.search_runs([exp.experiment_id], "tags.`fairray.campaign_root` = 'kill'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["fairray.git_commit"] and parent.data.tags["fairray.dataset_fingerprint"]
    assert "space" in parent.data.params and "search" in "".join(parent.data.params)
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4
    assert {c.data.tags["fairray.trial_id"] for c in children} == set(tune_results) == set(events)
    for c in children:
        r = tune_results[c.data.tags["fairray.trial_id"]]
        assert c.info.status == "FINISHED"
        for k in ("eo_gap", "acc", "objective"):
            assert c.data.metrics[k] == pytest.approx(r[k], abs=1e-9), (k, c.data.metrics[k], r[k])
        assert float(c.data.params["lr"]) == pytest.approx(r["config"]["lr"])
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "objective")]
        assert sorted(set(steps)) == [1, 2, 3, 4, 5]
    table = yaml.safe_load((out / "kill.campaign.json").read_text())
    assert table["space_digest"]
