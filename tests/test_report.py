"""`fairray report`: the HTML is built from MLflow (numbers and images read back), renders in Chromium."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fairray.cli import app
from fairray.report import Section, fig_png, grid_figure
from fairray.report_runs import build, log_section, pareto_mask, render, summary_table
from fairray.tracking import Tracker

runner = CliRunner()


def _store(out):
    """A parent with two generator children (one with a logged section) and a separate single run."""
    tracker = Tracker(out, "exp-a")
    rng = np.random.default_rng(0)
    png = fig_png(grid_figure(rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8), 4, "grid"))
    with tracker.run("campaign") as parent:
        for name, fd, q in (("unweighted", 0.5871, 12.25), ("reweighted", 0.2012, 13.5)):
            with tracker.run(name, parent=parent) as run:
                run.log_metrics({"fairness_discrepancy_gender_2k": fd, "share_gender_1_2k": 0.5 - fd / 2**1.5,
                                 "share_gender_1_2k_lo": 0.1, "share_gender_1_2k_hi": 0.4, "fd_attrclf_2k": q})
        log_section(parent, Section("Hand-written section", "The reweighted GAN is fairer.", [("a grid", png)],
                                    pd.DataFrame({"x": [1.5]}, index=["row"])), 1)
    tracker2 = Tracker(out, "exp-b")
    with tracker2.run("single") as run:
        run.log_metrics({"fairness_discrepancy_gender_1k": 0.333, "fd_attrclf_1k": 9.0})
        path = out / "chart.png"
        path.write_bytes(png)
        run.log_artifact(path, "charts")
    return tracker.uri


def test_report_reads_numbers_and_sections_back_from_mlflow(tmp_path):
    uri = _store(tmp_path)
    html = build(uri, tmp_path / "r.html").read_text()
    for number in ("0.587", "0.201", "12.250", "13.500", "0.333", "9.000", "[0.100, 0.400]"):
        assert number in html
    assert "Hand-written section" in html and "The reweighted GAN is fairer." in html
    assert "single (exp-b)" in html and "charts/chart.png" in html  # generic section for an unsectioned run
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 3  # pareto + section grid + chart
    only_b = build(uri, tmp_path / "b.html", experiment="exp-b").read_text()
    assert "0.333" in only_b and "0.587" not in only_b


def test_report_cli_and_user_errors(tmp_path):
    _store(tmp_path)
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.html").is_file()
    for args, msg in ((["report", str(tmp_path / "nope")], "not a directory"),
                      (["report", str(tmp_path), "--experiment", "missing"], "no experiment 'missing'"),
                      (["report"], "give a RUN_DIR")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["report", str(empty)])
    assert res.exit_code == 2 and "has no mlflow.db" in res.output


def test_summary_table_one_column_per_concept_with_validity_and_pareto_front():
    runs = pd.DataFrame({"name": ["a", "b", "c", "clf", "data"], "metrics": [
        {"fairness_discrepancy_gender_1k": 0.1, "fd_attrclf_1k": 5.0, "valid_1k": 1.0, "precision_1k": 0.93,
         "coverage_1k": 0.46},
        {"fairness_discrepancy_gender_1k": 0.2, "fd_attrclf_1k": 4.0, "share_gender_1_1k": 0.4,
         "share_gender_1_1k_lo": 0.35, "share_gender_1_1k_hi": 0.45, "valid_1k": 0.0, "precision_1k": 0.2,
         "coverage_1k": 0.05},
        {"fairness_discrepancy_gender_1k": 0.3, "fd_attrclf_1k": 6.0, "fairness_discrepancy_tone4_exact": 0.9},
        {"deo_Smiling_gender": 0.31, "deo_Smiling_gender_lo": 0.2, "deo_Smiling_gender_hi": 0.4, "acc": 0.9},
        {"rows": 10.0}]})
    t = summary_table(runs)
    assert list(t.columns) == ["fairness", "female share", "quality", "validity"]
    assert t.loc["b", "female share"] == "0.400 [0.350, 0.450]"
    assert t.loc["b", "fairness"] == "discrepancy gender 0.200" and t.loc["b", "quality"] == "fd attrclf 4.000"
    assert t.loc["b", "validity"].startswith("NOT valid (precision 0.20, coverage 0.05): fairness not meaningful")
    assert t.loc["a", "validity"] == "valid (precision 0.93, coverage 0.46)"
    assert t.loc["c", "fairness"] == "discrepancy gender 0.300"  # a sampled number before a ground-truth one
    assert t.loc["clf", "fairness"] == "deo Smiling gender 0.310 [0.200, 0.400]" and t.loc["clf", "validity"] == ""
    assert "data" not in t.index  # nothing to show
    assert pareto_mask(np.array([0.1, 0.2, 0.3]), np.array([5.0, 4.0, 6.0])).tolist() == [True, True, False]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    _store(tmp_path)
    html = build(f"sqlite:///{tmp_path.resolve()}/mlflow.db", tmp_path / "r.html")
    dom = render(html, tmp_path / "shot.png", height=1800)
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 3
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("L"))
    assert shot.std() > 10 and (shot < 128).mean() > 0.005  # text and figures, not a blank page
