"""The experiment scripts' results writer: no machine path in a results file, mean +- sd over seeds."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from results_io import ROOT, mean_sd, portable, write_json  # noqa: E402


def test_paths_under_the_repository_are_written_relative(tmp_path):
    report = {"config": {"results": ROOT / "experiments" / "results" / "x.json", "labeler": f"attrclf:{ROOT}/runs/a",
                         "out": "/elsewhere/run", "n": 3}, "runs": [{"generator": f"{ROOT}/runs/g/ckpt"}]}
    write_json(tmp_path / "r" / "x.json", report)
    back = json.loads((tmp_path / "r" / "x.json").read_text())
    assert back["config"] == {"results": "experiments/results/x.json", "labeler": "attrclf:runs/a",
                              "out": "/elsewhere/run", "n": 3}
    assert back["runs"][0]["generator"] == "runs/g/ckpt"
    assert str(ROOT) not in json.dumps(portable(report))


def test_mean_sd_over_rows_by_name():
    rows = [{"deo_Smiling_gender": 0.1, "acc": 0.8}, {"deo_Smiling_gender": 0.3, "acc": 0.9}]
    m = mean_sd(rows, ["deo", "acc"], {"deo": "deo_Smiling_gender"})
    assert m["deo"] == pytest.approx(0.2) and m["deo_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert mean_sd(rows[:1], ["acc"]) == {"acc": 0.8, "acc_sd": 0.0}
