"""`fairray compare` on a real MLflow store holding a campaign (parent + tagged children), single GAN runs and a
classifier run in another experiment."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairray.compare import compare, pareto_front
from fairray.errors import FairrayError
from fairray.tracking import Tracker

F, Q = "fairness_discrepancy_gender_2k", "fd_attrclf_2k"


def _store(out: Path) -> str:
    t = Tracker(out, "fairray-alpha")
    with t.run("alpha", tags={"fairray.campaign_root": "alpha"}) as parent:
        parent.log_metrics({"campaign_trials": 3.0})
        for alpha, f, q in [(0.0, 0.60, 10.0), (0.5, 0.30, 11.0), (1.0, 0.20, 14.0)]:
            tags = {"fairray.trial_id": f"t{alpha}", "fairray.searched": "alpha", "fairray.fairness_metric": F,
                    "fairray.fairness_mode": "min", "fairray.quality_metric": Q, "fairray.quality_mode": "min",
                    "fairray.reproduce": f"fairray tune reweight_alpha.yaml --space-set 'params.alpha.values=[{alpha}]'"}
            with t.run(f"alpha alpha={alpha}", parent=parent, tags=tags) as c:
                c.log_params({"alpha": alpha, "kimg": 48})
                c.log_metrics({F: f, Q: q, "trial_seconds": 60.0, "objective": f})
    with t.run("single", tags={"fairray.command": "train-gan"}) as r:  # a plain `fairray train-gan` run
        r.log_params({"alpha": 0.5, "reweight": "weight", "kimg": 64.0, "width": 32})
        r.log_metrics({F: 0.50, f"{F}_lo": 0.4, f"{F}_hi": 0.6, Q: 12.0})  # dominated by alpha=0.5
    c = Tracker(out, "fairray-classifier")
    with c.run("clf", tags={"fairray.command": "train-classifier"}) as r:
        r.log_metrics({"eo_gap": 0.1, "acc": 0.9})
    return t.uri


def test_pareto_front_respects_modes():
    f = [0.6, 0.3, 0.2, 0.5]
    assert pareto_front(f, [10, 11, 14, 12]).tolist() == [True, True, True, False]
    # quality that is better when higher (accuracy): the 0.5 run now has the best quality
    assert pareto_front(f, [0.80, 0.81, 0.70, 0.90], "min", "max").tolist() == [False, True, True, True]


def test_compare_table_front_files_and_best(tmp_path):
    uri = _store(tmp_path / "store")
    c = compare(uri, tmp_path / "cmp", experiment="fairray-alpha", quality_limit=12.5)
    t = c.table
    assert c.fairness == (F, "min") and c.quality == (Q, "min")
    assert len(t) == 4 and c.skipped == 0  # the campaign parent is no run of its own
    assert list(t[F]) == sorted(t[F])
    front = dict(zip(t.run, t.pareto, strict=True))
    assert front == {"alpha alpha=1.0": True, "alpha alpha=0.5": True, "single": False, "alpha alpha=0.0": True}
    assert set(t.campaign) == {"alpha", ""}
    assert (t[t.campaign == "alpha"]["param.alpha"].astype(float).tolist()) == [1.0, 0.5, 0.0]
    assert c.best is not None and c.best.run == "alpha alpha=0.5"  # fairest with fd_attrclf <= 12.5
    assert "params.alpha.values=[0.5]" in c.best.command
    single = t[t.run == "single"].iloc[0]
    assert single.command.startswith("fairray train-gan") and "alpha=0.5" in single.command
    assert "reweight=weight" in single.command and "kimg=64.0" in single.command and "width" not in single.command
    csv = pd.read_csv(c.csv)
    assert len(csv) == 4 and {"pareto", "cost_s", "command"} <= set(csv.columns)
    assert c.png.stat().st_size > 10_000


def test_compare_other_experiment_and_errors(tmp_path):
    uri = _store(tmp_path / "store")
    c = compare(uri, tmp_path / "cmp2", experiment="fairray-classifier", quality_limit=0.95)
    assert c.fairness == ("eo_gap", "min") and c.quality == ("acc", "max") and c.best is None
    with pytest.raises(FairrayError, match="no experiment 'nope'"):
        compare(uri, tmp_path / "cmp3", experiment="nope")


def test_cli_compare(tmp_path):
    from fairray.cli import app

    store = tmp_path / "store"
    _store(store)
    r = CliRunner().invoke(app, ["compare", str(store), "--experiment", "fairray-alpha", "--quality-limit", "12.5"])
    assert r.exit_code == 0, r.output
    assert "Pareto front: 3 run(s)" in r.output and "reproduce: fairray tune" in r.output
    assert (store / "compare.png").is_file() and (store / "compare.csv").is_file()
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "missing")])
    assert r.exit_code == 2


def test_invalid_generator_is_shown_but_never_on_the_front_or_chosen(tmp_path):
    """A run whose samples fail the validity rule has no fairness to trade: the fairest-looking run here is noise."""
    t = Tracker(tmp_path / "store", "fairray-gan")
    for name, f, q, valid in [("noise", 0.01, 9.0, 0.0), ("ok-a", 0.30, 11.0, 1.0), ("ok-b", 0.20, 14.0, 1.0),
                              ("unmeasured", 0.40, 10.5, None)]:
        with t.run(name, tags={"fairray.command": "train-gan"}) as r:
            r.log_metrics({F: f, Q: q} | ({"valid_2k": valid} if valid is not None else {}))
    c = compare(t.uri, tmp_path / "cmp", experiment="fairray-gan", quality_limit=12.0)
    rows = c.table.set_index("run")
    assert rows.loc["noise", "valid"] == 0 and not rows.loc["noise", "pareto"]  # it would dominate everything
    assert rows.loc[["ok-a", "ok-b", "unmeasured"], "pareto"].tolist() == [True, True, True]
    assert pd.isna(rows.loc["unmeasured", "valid"])
    assert c.best is not None and c.best.run == "ok-a"  # not the invalid run, though it is fairest and in bound
