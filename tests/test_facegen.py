"""FairFace-Generator workflow: shift tables and divergences by hand; a tiny run end to end through the CLI."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fairray import facegen
from fairray.cli import app


def test_shift_tables_and_divergence_by_hand():
    train = pd.DataFrame({"gender": [0] * 80 + [1] * 20})
    gen = pd.DataFrame({"gender": [0] * 90 + [1] * 10})
    t = facegen.shift_tables(train, gen, ["gender"], [])["gender"]
    assert t.training.tolist() == [0.8, 0.2] and t.generated.tolist() == [0.9, 0.1]
    assert t.shift_pts.tolist() == pytest.approx([10.0, -10.0])
    d = facegen.divergence(t)
    # chi-square of (90, 10) against expected (80, 20): 100/80 + 100/20
    assert d["tv"] == pytest.approx(0.1) and d["chi2"] == pytest.approx(100 / 80 + 100 / 20)
    assert 0 < d["chi2_p"] < 0.05


def test_facegen_end_to_end(tmp_path, ray_local, attrclf_trained, synth_90_10, gan_trained):
    # the session's GAN (trained on the same set) stands in for the workflow's own DCGAN training (tested in
    # test_gan_train.py), which keeps this test to generation, annotation of both sides and the report
    args = ["facegen", "--out", str(tmp_path), "--set", f"dataset={synth_90_10}", "--set", f"generator={gan_trained}",
            "--set", f"labeler=attrclf:{attrclf_trained[0]}", "--set", "n=300",
            "--set", "attributes=[gender,tone4,Young]", "--set", "intersections=[[gender,tone4]]",
            *[x for kv in ("gan.resolution=32", "gan.width=8", "gan.z_dim=16", "gan.batch_size=32", "gan.kimg=0.64",
                           "gan.tick_kimg=0.32", "gan.snapshot_ticks=1") for x in ("--set", kv)]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "shift (pts)" in res.output and "chi-square" in res.output
    report = json.loads((tmp_path / "facegen.json").read_text())
    m = report["metrics"]
    assert m["n_generated"] == 300 and m["n_training"] > 0
    for k in ("tv_gender", "chi2_p_gender", "tv_tone4", "tv_gender_x_tone4", "labeler_share_error_pts_gender"):
        assert k in m and np.isfinite(m[k]), k
    # the training side is the labeler's reading of the train split; its error vs the exact labels is small
    assert m["labeler_share_error_pts_gender"] < 5
    gender = pd.DataFrame(report["tables"]["gender"])
    assert gender.training.sum() == pytest.approx(1) and gender.generated.sum() == pytest.approx(1)
    assert gender.generated_n.sum() == 300
    for f in ("facegen_shares.png", "facegen_skin_tone.png", "facegen_intersections.png"):
        assert (tmp_path / f).stat().st_size > 5000, f
    # a re-run reuses every finished stage (same numbers, no new samples)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "facegen.json").read_text())["metrics"] == pytest.approx(m, nan_ok=True)

    # pooled snapshots: two checkpoints of one "run" (copies of the session GAN, so both halves of the pool must
    # read the same); the same --out reuses the labelled training side
    run = tmp_path / "run"
    for name in ("checkpoint_2026-01-01_00-00-00.000000", "checkpoint_2026-01-01_00-00-09.000000"):
        shutil.copytree(gan_trained, run / name)
    pooled = [*args[:6], f"generator={run / name}", *args[7:], "--set", "n=301", "--set", "snapshots=2"]
    res = CliRunner().invoke(app, pooled)
    assert res.exit_code == 0, res.output
    assert "largest shift (pts) per snapshot" in res.output
    report = json.loads((tmp_path / "facegen.json").read_text())
    snaps = report["snapshots"]
    assert [s["n"] for s in snaps] == [150, 151] and [s["checkpoint"] for s in snaps] == sorted(map(str, run.iterdir()))
    assert sum(pd.DataFrame(report["tables"]["gender"]).generated_n) == 301 == report["metrics"]["n_generated"]
    # same weights, same latents: the two snapshots' readings agree up to the one extra face
    assert abs(snaps[0]["max_abs_shift_pts"]["gender"] - snaps[1]["max_abs_shift_pts"]["gender"]) < 2.0
    res = CliRunner().invoke(app, [*pooled[:-1], "snapshots=3"])
    assert res.exit_code == 2 and "gan.keep=3" in res.output and "Traceback" not in res.output
