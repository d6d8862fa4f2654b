"""Ray Train DDP GAN: 2 workers on CPU, a killed worker, resume by re-running, rank-0 MLflow metrics."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from fairray.cli import app
from fairray.config import GanConfig, SynthConfig
from fairray.data import synth_dataset
from fairray.data.decode import decode_column
from fairray.data.table import read_table
from fairray.errors import FairrayError
from fairray.generate import generate
from fairray.train import gan
from fairray.train.checkpoint import load_state


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan-data")
    synth_dataset.build(SynthConfig(n=400, perc=0.25, val_frac=0, test_frac=0), out, progress=False)
    return out


def small(dataset, **kw) -> GanConfig:
    base = dict(dataset=str(dataset), width=8, z_dim=16, batch_size=16, tick_kimg=0.32, snapshot_ticks=2,
                reweight="weight", keep=2)
    return GanConfig.model_validate(base | {"ray": {"workers": 2}} | kw)


def test_ddp_two_workers_survive_a_killed_worker_and_resume(ray_local, dataset, tmp_path):
    interval = 0.32 * 2 * 1000  # images per checkpoint
    cfg = small(dataset, kimg=2.56, name="ddp", fault_at_kimg=1.6)
    ckpt = gan.fit(cfg, dataset, tmp_path)
    state = load_state(ckpt)
    assert state["nimg"] >= 2560 and state["step"] == state["nimg"] // 32  # 2 ranks x 16 per step
    assert (tmp_path / "ray_results" / "ddp" / "fault_injected").is_file()
    crashed_at = int((tmp_path / "ray_results" / "ddp" / "fault_injected").read_text())
    assert len(state["resumes"]) == 1
    assert 0 <= crashed_at - state["resumes"][0] <= interval  # lost at most one checkpoint interval
    assert set(state) >= {"G", "D", "G_ema", "opt_g", "opt_d", "rng", "config", "history"}
    assert len(state["rng"]) == 2  # both ranks' RNG streams

    # Re-running the same (out, name) with a longer schedule continues instead of restarting.
    longer = cfg.model_copy(update={"kimg": 3.84, "fault_at_kimg": None})
    state2 = load_state(gan.fit(longer, dataset, tmp_path))
    assert state2["resumes"][-1] == state["nimg"] and state2["nimg"] >= 3840
    # Re-running a finished run does no new work.
    state3 = load_state(gan.fit(longer, dataset, tmp_path))
    assert state3["nimg"] == state2["nimg"] and state3["step"] == state2["step"]
    # The same name with another setting (or other training rows) is another experiment: trained anew, not resumed.
    other = load_state(gan.fit(longer.model_copy(update={"lr_g": 1e-4, "kimg": 0.64}), dataset, tmp_path))
    assert other["resumes"] == [] and 640 <= other["nimg"] < state2["nimg"]


def test_run_logs_rank0_ticks_to_mlflow_and_reuses_the_run(ray_local, dataset, tmp_path, attrclf_trained):
    cfg = small(dataset, kimg=0.64, name="tracked", ray={"workers": 1})
    cfg = cfg.model_copy(update={"eval_n": 100})
    m = gan.run(cfg, tmp_path)
    assert m["kimg"] >= 0.64 and (tmp_path / "tracked_grid.png").is_file()
    gan.run(cfg.model_copy(update={"kimg": 0.96}), tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    exp = client.get_experiment_by_name("fairray-gan")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1  # the re-run reused its MLflow run: no duplicates
    hist = client.get_metric_history(runs[0].info.run_id, "img_per_s")
    assert len(hist) >= 3 and sorted(h.step for h in hist)[-1] >= 960

    # generation through Ray Data: canonical rows with latents, deterministic in the seed
    ckpt = m["checkpoint"]
    generate(ckpt, 96, tmp_path / "gen", seed=3)
    generate(ckpt, 96, tmp_path / "gen2", seed=3, image_format="npy")  # raw pixels: the same images
    rows = read_table(tmp_path / "gen").sort_values("image_id").reset_index(drop=True)
    again = read_table(tmp_path / "gen2").sort_values("image_id").reset_index(drop=True)
    assert len(rows) == 96 and rows.image_id.is_unique and len(rows.latent.iloc[0]) == cfg.z_dim
    assert rows.latent.map(list).tolist() == again.latent.map(list).tolist()
    assert all(b.startswith(b"\x93NUMPY") for b in again.image)
    assert np.array_equal(decode_column(rows.image)[0], decode_column(again.image)[0])
    assert set(rows.generator) == {"dcgan:tracked"} and rows.error.isna().all()
    # in this process (what a one-actor pool on a Ray of the command's own runs as): the same rows, byte for byte
    generate(ckpt, 96, tmp_path / "gen3", seed=3, engine="process")
    local = read_table(tmp_path / "gen3").sort_values("image_id").reset_index(drop=True)
    assert local.image_id.tolist() == rows.image_id.tolist() and local.image.tolist() == rows.image.tolist()
    assert local.latent.map(list).tolist() == rows.latent.map(list).tolist()
    # a re-submitted generation job reuses its finished output; other samples into the same dir are refused
    assert generate(ckpt, 96, tmp_path / "gen", seed=3)["rows"] == 96
    with pytest.raises(FairrayError, match="holds other samples"):
        generate(ckpt, 96, tmp_path / "gen", seed=4)
    with pytest.raises(FairrayError, match="holds other samples"):
        generate(ckpt, 96, tmp_path / "gen", seed=3, image_format="npy")
    res = CliRunner().invoke(app, ["evaluate", ckpt, "--labeler", f"attrclf:{attrclf_trained[0]}", "--n", "200",
                                   "--reference", str(dataset), "--repeats", "2"])
    assert res.exit_code == 0, res.output
    assert "fairness_discrepancy_gender_200" in res.output and "fd_attrclf_200" in res.output


def test_training_drops_an_undecodable_row_and_reports_it(ray_local, dataset, tmp_path):
    """A truncated JPEG passes a reader's header probe; training must leave it out, count it and go on."""
    import io

    import numpy as np
    from PIL import Image

    from fairray.data.table import ShardWriter, read_manifest, write_manifest

    df = read_table(dataset)
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, format="JPEG")
    bad = df.iloc[[0]].copy()
    bad["image_id"], bad["split"] = "truncated-0", "train"
    bad["image"] = [buf.getvalue()[: len(buf.getvalue()) // 2]]
    broken = tmp_path / "broken"
    ShardWriter(broken).write(pd.concat([df, bad], ignore_index=True))
    write_manifest(broken, read_manifest(dataset))
    cfg = small(broken, kimg=0.32, name="bad-rows", ray={"workers": 1}, eval_n=100)
    m = gan.run(cfg, tmp_path / "run")
    assert m["bad_rows"] == 1 and m["kimg"] >= 0.32
    client = MlflowClient(f"sqlite:///{(tmp_path / 'run').resolve()}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("fairray-gan").experiment_id])[0]
    assert [h.value for h in client.get_metric_history(run.info.run_id, "bad_rows")][-1] == 1


def test_same_seed_gives_byte_identical_samples_whatever_the_shard_layout(ray_local, dataset, tmp_path):
    """Reproducibility: one seed fixes a run. The same rows written in another order and sharding (as Ray Data
    writes them: random file names, blocks in any order) train the same GAN, sample for sample."""
    from fairray.data.table import ShardWriter, read_manifest, write_manifest
    from fairray.models.generator_io import load_generator, sample

    df = read_table(dataset)
    reordered = tmp_path / "reordered"
    writer = ShardWriter(reordered)
    shuffled = df.sample(frac=1.0, random_state=3)
    for lo, hi in ((0, 50), (50, 210), (210, len(df))):
        writer.write(shuffled.iloc[lo:hi])
    write_manifest(reordered, read_manifest(dataset))
    cfg = small(dataset, kimg=0.64, name="repro", ray={"workers": 1})
    runs = [gan.fit(cfg, dataset, tmp_path / "a"),
            gan.fit(cfg.model_copy(update={"dataset": str(reordered)}), reordered, tmp_path / "b")]
    images = [sample(load_generator(ckpt)[0], 64, cfg.z_dim, seed=5)[0] for ckpt in runs]
    assert images[0].tobytes() == images[1].tobytes()
    a, b = (load_state(ckpt) for ckpt in runs)
    assert a["history"][-1]["loss_d"] == b["history"][-1]["loss_d"]
    # the in-process loop (experiments, benchmarks) is the Ray Train worker's code at world 1: the same generator
    from fairray.data.loading import load_split
    from fairray.models.generator_io import build_models

    rows, df = load_split(dataset, "train", ["weight"], size=cfg.resolution)
    G = build_models(cfg)[0]
    G.load_state_dict(gan.train_local(cfg, rows, df.weight.to_numpy(), quiet=True).module.state_dict())
    assert sample(G, 64, cfg.z_dim, seed=5)[0].tobytes() == images[0].tobytes()
