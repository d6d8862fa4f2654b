import re
import socket

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fairray.cli import app

runner = CliRunner()


def test_demo_end_to_end_logs_runs_and_writes_report(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--set", "steps=[data]", "--set", "synth.n=600", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and "mlflow ui --backend-store-uri" in res.output
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # shares chart + two grids, embedded
    client = MlflowClient(f"sqlite:///{out.resolve()}/mlflow.db")
    exp = client.get_experiment_by_name("fairray-demo")
    runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"demo", "data-biased", "data-reference"}
    biased, ref = runs["data-biased"].data.metrics, runs["data-reference"].data.metrics
    assert biased["rows"] == 600 and ref["rows"] == 150
    assert biased["share_gender_1_exact"] == 0.1 and ref["share_gender_1_exact"] == 0.5
    assert ref["fairness_discrepancy_gender_exact"] == 0.0
    # the number the report prints is the one MLflow holds
    shown = re.search(r"is ([0-9.]+) in the biased set", html).group(1)
    assert float(shown) == round(biased["fairness_discrepancy_gender_exact"], 3)


def test_relative_out_is_made_absolute(tmp_path, monkeypatch):
    # Tune trials and Train workers run in other working directories: every path the demo hands them is absolute
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["demo", "--set", "steps=[data]", "--set", "synth.n=100", "--out", "rel"])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / "rel" / "report.html") in res.output.replace("\n", "")


def test_dead_tracking_server_does_not_stop_the_demo(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--set", "steps=[data]", "--set", "synth.n=100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()
    assert not (out / "mlflow.db").exists()


def test_quick_demo_runs_every_stage(tmp_path, ray_local):
    out = tmp_path / "demo"
    # --quick plus smaller stages: every stage runs for real, the 5-minute default is timed by benchmarks/demo_time.py
    tiny = ["synth.n=1500", "attrclf.synth.n=1500", "attrclf.epochs=1", "ratio_epochs=1", "gan.kimg=6", "gan.width=16",
            "gan.tick_kimg=3", "distill.n_pairs=400", "distill.kimg=1", "distill.tick_kimg=0.5",
            "distill.eval_n=200", "classifier.classifier.synth.n=800", "classifier.classifier.kimg=1",
            "classifier.classifier.n_boot=20", "classifier.n_svm=300", "classifier.n_pairs=200"]
    res = runner.invoke(app, ["demo", "--quick", "--out", str(out), *[x for kv in tiny for x in ("--set", kv)]])
    assert res.exit_code == 0, (res.output[-3000:], res.exception)
    html = (out / "report.html").read_text()
    for title in ("Attribute classifier", "Labeling with Ray Data", "Balancing", "fairgen density ratio",
                  "GANs: unweighted vs fairgen-reweighted (Ray Tune alpha campaign)", "Fair distillation",
                  "Fair downstream classifier"):
        assert title in html
    client = MlflowClient(f"sqlite:///{out.resolve()}/mlflow.db")
    exp = client.get_experiment_by_name("fairray-demo")
    runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}
    assert {"demo", "label", "density-ratio", "alpha", "alpha alpha=0", "alpha alpha=1", "train-attrclf",
            "distill", "classifier-baseline"} <= set(runs)
    demo_id = runs["demo"].info.run_id
    assert runs["alpha"].data.tags["mlflow.parentRunId"] == demo_id  # the campaign sits in the demo's run tree
    for name in ("alpha alpha=0", "alpha alpha=1"):
        assert runs[name].data.tags["mlflow.parentRunId"] == runs["alpha"].info.run_id
        share = runs[name].data.metrics["share_gender_1_1k"]
        assert f"{share:.1%}" in html  # the report quotes MLflow's numbers
    d = runs["distill"].data.metrics
    assert f"{d['share_gender_1_200']:.1%}" in html and d["student_params"] <= 0.25 * d["teacher_params"]
    deo = runs["classifier-baseline"].data.metrics["deo_Smiling_gender"]
    assert f"DEO is {deo:.3f} at accuracy" in html
    # a 6-kimg GAN may make one gender only: then the report says why latent debiasing did not run
    assert "latent-seed0" in runs or "Latent debiasing did not run: a hyperplane needs both classes" in html
    if "latent-seed0" in runs:  # the baseline trains as long as the debiased classifier (real rows + pairs)
        k = runs["latent-seed0"].data.metrics["kimg_trained"]
        assert k > 1 and runs["classifier-baseline"].data.metrics["kimg_trained"] == pytest.approx(k)
    # every figure is a picture, not a blank canvas
    import base64
    import io

    import numpy as np
    from PIL import Image
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(pngs) >= 8
    for b64 in pngs:
        px = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"), dtype=float)
        assert px.std() > 5, "a blank figure in the report"
    # every decimal the narrative states is a number MLflow holds (a metric or param of the demo's run tree)
    known: set[str] = set()
    for r in runs.values():
        for v in r.data.metrics.values():
            known |= {f"{v:.3f}", f"{v:.2f}", f"{v:.1%}", f"{v:.0%}", f"{v:.1f}", f"{v:g}"}
        known |= set(r.data.params.values())
    texts = re.findall(r'<p class="what">(.*?)</p>', html, flags=re.S)
    stated = [t for text in texts for t in re.findall(r"(?<![\w.])\d+\.\d+%?", text)]
    assert stated and not [t for t in stated if t not in known], [t for t in stated if t not in known]


def test_demo_console_is_quiet_and_the_rest_goes_to_logs(tmp_path):
    """As a user runs it (its own process, a terminal's fds): fairray's lines only; everything else in logs/."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "fairray.cli", "demo", "--set", "steps=[data]", "--set", "synth.n=300",
                        "--out", str(tmp_path / "d")], capture_output=True, text=True,
                       env=os.environ | {"RAY_AUTH_MODE": "disabled"})
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    done = [line.strip() for line in lines if line.strip().startswith("data done in")]
    assert done and re.search(r"female 10\.0% biased, \d+\.\d% reference", done[0]), lines  # numbers, not "?"
    assert len(lines) <= 12, lines
    assert (tmp_path / "d" / "logs" / "console.log").is_file()


def test_one_demo_seed_derives_every_stage_seed():
    from fairray.config import DemoConfig

    default, zero = DemoConfig().model_dump(), DemoConfig(seed=0).seeded().model_dump()
    assert zero.pop("seed") == 0 and default.pop("seed") is None
    assert zero == default  # seed=0 is the default demo
    c = DemoConfig(seed=3).seeded()
    assert (c.synth.seed, c.attrclf.seed, c.gan.seed, c.distill.seed, c.classifier.seed,
            c.classifier.classifier.seed, c.classifier.classifier.synth.seed) == (3,) * 7
    assert c.attrclf.synth.seed == 4  # the labeler's own data stays a different stream from the biased set
