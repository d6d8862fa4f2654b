"""Real faces end to end: a JPEG folder in UTKFace layout and in folder + CSV layout, with the broken files real
downloads hold, through read -> train-attrclf -> label -> balance -> train-gan -> evaluate on the command line.

Each step is checked for rows in == rows out, which rows were marked or dropped, and finite metrics.
"""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fairray.cli import app
from fairray.data.facefolder import AWKWARD, BROKEN, write_folder_csv, write_utkface
from fairray.data.table import read_table

runner = CliRunner()
GOOD = 500


def cli(*args: str) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output, r.output
    return r.output


LAYOUTS = {
    "utkface": (write_utkface, ["utkface"], "utkface"),
    "folder": (write_folder_csv, ["folder", "--set", "labels=labels.csv", "--set", "images=images",
                                  "--set", "columns={file: path, sex: gender, age: age, smile: Smiling}",
                                  "--set", "value_maps={gender: {male: 0, female: 1}}"], "folder"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_real_folder_through_every_command(tmp_path, monkeypatch, ray_local, attrclf_trained, layout):
    write, read_args, source = LAYOUTS[layout]
    monkeypatch.chdir(tmp_path)  # paths as a user types them: relative to where the commands run
    here = Path(".")
    files = write(here / "src", GOOD, seed=5)
    n_files = len(files)
    assert n_files == GOOD + len(BROKEN) + len(AWKWARD)

    # read: every file is a row; files no header parser accepts are marked, never dropped
    read_args = [read_args[0], here / "src", *read_args[1:]]
    cli("read", *read_args, "--out", here / "table")
    table = read_table(here / "table", columns=["image_id", "source", "split", "gender", "Young", "error"])
    assert len(table) == n_files and set(table.source) == {source}
    marked = table[table.error.notna()]
    assert len(marked) == 3  # empty, text, random bytes; the truncated JPEG has a valid header
    assert table.Young.notna().sum() >= GOOD  # derived from the age the source gives

    # train-attrclf: heads default to what the dataset has; the truncated file is dropped and counted
    out = cli("train-attrclf", "--set", f"dataset={here / 'table'}", "--set", "resolution=32",
              "--set", "epochs=10", "--set", "batch_size=32", "--set", "blocks=[1,1,1,1]", "--out", here / "clf")
    assert re.search(r"gender\s+│\s+[01]\.\d{3}", out)
    metrics = json.loads((here / "clf" / "attrclf" / "metrics.json").read_text())
    assert metrics["sources"] == [source]
    assert metrics["acc_gender_test"] > 0.6 and "acc_Young_test" in metrics
    assert "acc_tone4_test" not in metrics and "acc_hair_test" not in metrics  # the dataset has no such column
    state = torch.load(here / "clf" / "attrclf" / "model.pt", weights_only=False)
    assert state["sources"] == [source]

    # a head the dataset lacks: one line naming the columns it has, before Ray does anything
    r = runner.invoke(app, ["train-attrclf", "--set", f"dataset={here / 'table'}", "--set", "heads=[tone4]",
                            "--out", str(here / "clf2")])
    assert r.exit_code == 2 and "no column(s) ['tone4']" in r.output and "gender" in r.output
    assert len(r.output.strip().splitlines()) == 1

    # label with its own labeler: rows in == rows out, every broken file marked (the truncated one too)
    labeler = "attrclf:clf/attrclf"
    out = cli("label", here / "table", "--labeler", labeler, "--out", here / "labeled")
    summary = json.loads((here / "labeled" / "summary.json").read_text())
    assert summary["rows_in"] == summary["rows_out"] == n_files
    assert summary["errors"] == len(BROKEN) and summary["labeler_domain_mismatch"] is False
    assert summary["heads"]["gender"]["agreement_with_ground_truth"] > 0.6
    labeled = read_table(here / "labeled", columns=["image_id", "error", "gender"])
    assert labeled.gender.notna().sum() == GOOD + len(AWKWARD)  # 16-bit PNG, CMYK and EXIF-rotated decode

    # label with a SynthFaces-trained labeler: a warning and the flag in summary.json and MLflow
    out = cli("label", here / "table", "--labeler", f"attrclf:{attrclf_trained[0]}",
              "--out", here / "labeled-synth")
    assert "labeler_domain_mismatch" in out
    s2 = json.loads((here / "labeled-synth" / "summary.json").read_text())
    assert s2["labeler_domain_mismatch"] is True and s2["labeler_sources"] == ["synthfaces"]
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{(here / 'labeled-synth' / 'mlflow.db').resolve()}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.data.metrics["labeler_domain_mismatch"] for r in runs] == [1.0]

    # balance over predicted gender: equal cells, error rows left out and counted
    cli("balance", here / "labeled", "--by", "gender", "--out", here / "balanced")
    bal = json.loads((here / "balanced" / "summary.json").read_text())
    counts = read_table(here / "balanced", columns=["gender"]).gender.value_counts()
    assert counts.nunique() == 1 and bal["rows_out"] == counts.sum()

    # train-gan on the balanced real rows, scored by the dataset's own labeler; then evaluate its checkpoint
    out = cli("train-gan", "--set", f"dataset={here / 'balanced'}", "--set", "resolution=32",
              "--set", "width=16", "--set", "z_dim=32", "--set", "kimg=2", "--set", "tick_kimg=1",
              "--set", "eval_n=200", "--labeler", labeler, "--out", here / "gan")
    ckpts = sorted(p for p in (here / "gan" / "ray_results").glob("*/checkpoint_*") if p.is_dir())
    assert ckpts
    out = cli("evaluate", ckpts[-1], "--labeler", labeler, "--reference", here / "table",
              "--attributes", "gender,Young", "--n", "300")
    values = dict(re.findall(r"│ (\w+)\s+│ (-?[\d.]+|nan)", out))
    for k in ("fairness_discrepancy", "share_gender_1", "precision", "coverage"):
        key = next(m for m in values if m.startswith(k))
        assert math.isfinite(float(values[key])), (key, out)


def test_folder_layout_error_names_the_file(tmp_path):
    """A label value the reader cannot code is one line naming the file, line and value; nothing is written."""
    write_folder_csv(tmp_path, 5, seed=1)
    labels = pd.read_csv(tmp_path / "labels.csv")
    labels.loc[2, "sex"] = "unknown"
    labels.to_csv(tmp_path / "labels.csv", index=False)
    r = runner.invoke(app, ["read", "folder", str(tmp_path), "--set", "images=images",
                            "--set", "columns={file: path, sex: gender}",
                            "--set", "value_maps={gender: {male: 0, female: 1}}", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and "labels.csv" in r.output and "'unknown'" in r.output
    assert not (tmp_path / "t" / "data").exists()
