"""attrclf (Ray Train) -> labeling (Ray Data actor pool) -> balancing, on SynthFaces with exact ground truth."""

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ATTRCLF_HEADS as HEADS
from PIL import Image

from fairray.config import BalanceConfig, LabelConfig, SynthConfig
from fairray.data import synth_dataset
from fairray.data.decode import decode_column
from fairray.data.pipeline import balance, label
from fairray.data.table import ShardWriter, encode_npy, read_table, shard_paths
from fairray.errors import FairrayError
from fairray.labelers.attrclf import AttrClfLabeler
from fairray.labelers.registry import load_labeler
from fairray.machine import resolve_precision


@pytest.fixture(scope="module")
def trained(attrclf_trained):
    return attrclf_trained


@pytest.fixture(scope="module")
def biased(tmp_path_factory):
    out = tmp_path_factory.mktemp("biased")
    synth_dataset.build(SynthConfig(n=2000, perc=0.0, val_frac=0, test_frac=0, seed=11), out, progress=False)
    return out


def test_attrclf_accuracy_and_calibration_report(trained):
    path, metrics = trained
    for h in HEADS:
        assert metrics[f"acc_{h}_test"] >= 0.95, (h, metrics)
        assert metrics[f"ece_{h}_test"] < 0.05
    for f in ("model.pt", "metrics.json", "calibration.png", "accuracy_by_group.csv"):
        assert (path / f).stat().st_size > 0
    by_group = pd.read_csv(path / "accuracy_by_group.csv")
    assert set(by_group.group) == {"gender", "tone4"} and by_group.accuracy.min() > 0.8
    lab = AttrClfLabeler(path)
    probs = lab.predict_proba(np.zeros((3, 64, 64, 3), np.uint8))  # any size: resized on the device
    assert probs["hair"].shape == (3, 4) and np.allclose(probs["gender"].sum(1), 1, atol=1e-5)


def bad_blobs(good_png: bytes) -> list[tuple[str, bytes | None]]:
    jpg = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(jpg, format="JPEG")
    pixels = decode_column([good_png])[0]
    floats = io.BytesIO()
    np.save(floats, pixels[0].astype(np.float32))
    return [("empty", b""), ("text", b"hello, not an image"), ("truncated", good_png[: len(good_png) // 2]),
            ("none", None), ("random", bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8))),
            ("jpeg_ok", jpg.getvalue()), ("npy_ok", encode_npy(pixels)[0]), ("npy_float", floats.getvalue())]


def with_bad_rows(dataset, dest):
    """A copy of `dataset` plus one shard of bad and odd rows: (dest, the good rows, the extra rows)."""
    good = read_table(dataset)
    writer = ShardWriter(dest)
    writer.write(good)
    blobs = bad_blobs(good.image.iloc[0])
    extras = good.iloc[:len(blobs)].copy()
    extras["image_id"] = [f"bad-{k}" for k, _ in blobs]
    extras["image"] = [b for _, b in blobs]
    writer.write(extras)
    return dest, good, extras


def test_label_keeps_every_row_marks_bad_ones_and_reads_90_10(trained, biased, tmp_path):
    path, _ = trained
    src, good, extras = with_bad_rows(biased, tmp_path / "src")
    blobs = bad_blobs(good.image.iloc[0])
    out = tmp_path / "labeled"
    summary = label(LabelConfig(dataset=str(src), labeler=f"attrclf:{path}", batch_size=128), out)
    df = read_table(out, columns=["image_id", "error", "gender", "gender_true", "gender_prob", "labeler"])
    assert len(df) == len(good) + len(blobs) == summary["rows_out"] == summary["rows_in"]
    assert sorted(df.image_id) == sorted(good.image_id.tolist() + extras.image_id.tolist())  # every row, once
    bad = df[df.error.notna()]
    assert sorted(bad.image_id) == sorted(f"bad-{k}" for k in ("empty", "text", "truncated", "none", "random",
                                                               "npy_float"))
    assert bad.gender.isna().all() and bad.gender_prob.isna().all()
    assert len(pd.read_parquet(out / "errors.parquet")) == 6 == summary["errors"]
    # the raw pixels of the first row get its labels (another batch: bf16 kernels may differ in the last bits)
    first = df.set_index("image_id").loc[[good.image_id.iloc[0], "bad-npy_ok"], "gender_prob"]
    assert np.allclose(*[np.asarray(p) for p in first], atol=0.01)
    ok = df[df.error.isna() & df.image_id.str.startswith("sf")]
    assert (ok.gender == ok.gender_true).mean() >= 0.95
    share = summary["heads"]["gender"]["shares"][1]
    assert abs(share - 0.1) <= 0.02, summary["heads"]["gender"]  # the 90_10 chart reads 90/10
    assert (out / "distributions.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["heads"]["gender"]["agreement_with_ground_truth"] >= 0.95
    # the actors label under the run's precision (auto: bf16 where the CPU has native bf16)
    assert summary["labeler_precision"] == resolve_precision("cpu", "auto")


def test_bf16_labels_agree_with_fp32(trained, biased):
    """bf16 autocast (the labeling actors' default on CPUs with native bf16, 2.3x the img/s on an AMX Xeon) gives the
    fp32 labels: measured 99.8-100% agreement per head, mean |p diff| <= 0.002 on 3,000 SynthFaces."""
    path, _ = trained
    images, errors = decode_column(read_table(biased, columns=["image"]).image)
    assert not any(errors)
    fp32 = load_labeler(f"attrclf:{path}")
    bf16 = load_labeler(f"attrclf:{path}", "cpu", "bf16")
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    a, b = fp32.predict_proba(images), bf16.predict_proba(images)
    for h in HEADS:
        assert (a[h].argmax(1) == b[h].argmax(1)).mean() >= 0.99, h
        assert np.abs(a[h] - b[h]).mean() < 0.01, h
        assert not np.array_equal(a[h], b[h])  # bf16 really ran


def test_balance_undersample_exact_and_weights(trained, biased, tmp_path):
    path, _ = trained
    labeled = tmp_path / "labeled"
    label(LabelConfig(dataset=str(biased), labeler=f"attrclf:{path}"), labeled)
    labels = read_table(labeled, columns=["gender"])
    s = balance(BalanceConfig(dataset=str(labeled), by=["gender"]), tmp_path / "under")
    out = read_table(tmp_path / "under", columns=["gender", "weight"])
    n_min = labels.gender.value_counts().min()
    assert out.gender.value_counts().to_dict() == {0: n_min, 1: n_min}  # exactly 50/50
    assert s["rows_out"] == 2 * n_min
    balance(BalanceConfig(dataset=str(labeled), by="gender", mode="weights"), tmp_path / "w")
    w = read_table(tmp_path / "w", columns=["gender", "weight"])
    assert len(w) == len(labels)
    share = w.loc[w.gender == 1, "weight"].sum() / w.weight.sum()
    assert abs(share - 0.5) <= 0.01 and abs(w.weight.mean() - 1) < 1e-9
    s = balance(BalanceConfig(dataset=str(labeled), by="gender,tone4"), tmp_path / "inter")
    assert len({c["rows"] for c in s["cells"].values()}) == 1 and len(s["cells"]) == 8


def test_label_errors_are_user_errors(tmp_path, biased):
    with pytest.raises(FairrayError, match="no attrclf checkpoint"):
        label(LabelConfig(dataset=str(biased), labeler=f"attrclf:{tmp_path}/nope"), tmp_path / "o")
    with pytest.raises(FairrayError, match="unknown labeler kind"):
        label(LabelConfig(dataset=str(biased), labeler="magic:x"), tmp_path / "o")
    assert shard_paths(biased)


def test_model_stages_run_their_udf_on_the_actors_own_thread(ray_local):
    """Ray Data runs an actor's UDF on a second thread by default, where torch ran 25-40% slower than on the
    thread it was set up on (RESULTS.md); fairray's model stages (`ray_env.model_actors`) use the actor's own."""
    import threading

    from fairray.ray_env import model_actors

    class ThreadProbe:  # defined here so that Ray pickles it by value
        def __init__(self):
            self.init_thread = threading.get_ident()

        def __call__(self, batch: dict) -> dict:
            return batch | {"same_thread": np.full(len(batch["id"]), threading.get_ident() == self.init_thread)}

    def same_thread(compute) -> list[bool]:
        ds = ray_local.data.range(8).map_batches(ThreadProbe, batch_size=4, num_cpus=0.5, compute=compute)
        return ds.to_pandas().same_thread.tolist()

    assert same_thread(model_actors(1)) == [True] * 8
    assert same_thread(ray_local.data.ActorPoolStrategy(size=1)) == [False] * 8  # Ray's default, for contrast


def test_parquet_reads_take_the_v1_reader_unless_asked(ray_local, biased, monkeypatch):
    """Ray Data 2.60's V2 Parquet reader can print an InterruptedError traceback from a successful read (its
    file-listing task's completion thread races the task's shutdown: 2 reads in 10 on a loaded 2-core box,
    benchmarks/listfiles_race.py); fairray's processes read with V1 unless RAY_DATA_USE_DATASOURCE_V2=1, also when
    Ray was already initialised (the tests' session, a Ray job's driver)."""
    from fairray.ray_env import init_ray

    ctx = ray_local.data.DataContext.get_current()
    ctx.use_datasource_v2 = True  # as Ray's own default leaves it
    init_ray()
    assert ctx.use_datasource_v2 is False
    stats = ray_local.data.read_parquet([str(p) for p in shard_paths(biased)]).materialize().stats()
    assert "ReadParquet" in stats and "ListFiles" not in stats
    monkeypatch.setenv("RAY_DATA_USE_DATASOURCE_V2", "1")
    init_ray()
    assert ctx.use_datasource_v2 is True
    monkeypatch.undo()
    init_ray()
    assert ctx.use_datasource_v2 is False


def test_cpu_actor_pool_follows_cpus_and_rows(ray_local):
    """One-thread CPU actors, one per CPU and per full ROWS_PER_CPU_ACTOR rows; all of a stage's actors together ask for
    at most a quarter of the CPUs, so two stages side by side (the demo's label and density-ratio passes) leave
    their read and write tasks a CPU."""
    from fairray.ray_env import ROWS_PER_CPU_ACTOR, actor_pool

    assert actor_pool("cpu", rows=10_000) == (1, 0.25, 2)  # the test cluster has 2 CPUs
    assert actor_pool("cpu", rows=2 * ROWS_PER_CPU_ACTOR - 1) == (1, 0.25, 2)
    assert actor_pool("cpu", rows=2 * ROWS_PER_CPU_ACTOR) == (2, 0.25, 1)
    assert actor_pool("cpu") == (2, 0.25, 1)
    assert actor_pool("cpu", actors=1, rows=10**6) == (1, 0.25, 2)  # an explicit count wins


def test_two_actors_label_like_one(trained, biased, tmp_path):
    """Rows keep their order and labels whether one two-thread actor or two one-thread actors label them."""
    path, _ = trained
    cols = ["image_id", "gender", "gender_prob", "Smiling"]
    out = {}
    for actors in (1, 2):
        label(LabelConfig(dataset=str(biased), labeler=f"attrclf:{path}", batch_size=128, actors=actors),
              tmp_path / f"a{actors}")
        out[actors] = read_table(tmp_path / f"a{actors}", columns=cols)
    assert out[1].image_id.tolist() == out[2].image_id.tolist() == read_table(biased, columns=["image_id"]).image_id.tolist()
    assert (out[1].gender == out[2].gender).all() and (out[1].Smiling == out[2].Smiling).all()
    assert np.allclose(np.stack(out[1].gender_prob), np.stack(out[2].gender_prob), atol=1e-3)


def test_in_process_labels_like_ray_data(trained, biased, tmp_path):
    """engine=process (what `fairray label` picks for a one-actor pool on a Ray it would start for itself) writes
    the rows, errors, labels and summary that the Ray Data actor pool writes."""
    from fairray.config import RayConfig

    path, _ = trained
    src, _, _ = with_bad_rows(biased, tmp_path / "src")
    cols = ["image_id", "error", "path", "gender", "gender_true", "gender_prob", "Smiling", "labeler"]
    out, summaries = {}, {}
    for engine in ("ray", "process"):
        stamps = {}  # the benchmark's phase clock
        summaries[engine] = label(LabelConfig(dataset=str(src), labeler=f"attrclf:{path}", batch_size=128,
                                              engine=engine, ray=RayConfig(precision="fp32")), tmp_path / engine,
                                  stamps=stamps)
        assert list(stamps) == ["start", "labeler_loaded", "ray_ready", "written", "done"]
        assert sorted(stamps.values()) == list(stamps.values())
        out[engine] = read_table(tmp_path / engine, columns=cols)
    ray_df, local = out["ray"], out["process"]
    assert local.image_id.tolist() == ray_df.image_id.tolist() and len(local) == summaries["process"]["rows_in"]
    assert local.error.fillna("").tolist() == ray_df.error.fillna("").tolist()
    assert local.error.notna().sum() == 6
    for c in ("gender", "gender_true", "Smiling", "labeler"):
        assert local[c].fillna(-1).tolist() == ray_df[c].fillna(-1).tolist(), c
    ok = local.error.isna()
    assert np.allclose(np.stack(local.gender_prob[ok]), np.stack(ray_df.gender_prob[ok]), atol=1e-5)
    assert [summaries[e].pop("engine") for e in ("ray", "process")] == ["ray", "process"]
    assert summaries["ray"] == summaries["process"]
    assert len(pd.read_parquet(tmp_path / "process" / "errors.parquet")) == 6
    # the same stage code: the schemas match column for column
    assert pq.read_schema(shard_paths(tmp_path / "process")[0]) == pq.read_schema(shard_paths(tmp_path / "ray")[0])


def test_in_process_writes_shards_of_other_column_types_as_one_table(tmp_path):
    """Shards written from pandas type a column with no value in them as null; the in-process engine writes one
    Parquet file in the first batch's schema, so every batch must come in the shards' unified schema."""
    import pyarrow as pa

    from fairray.data.pipeline import run_in_process
    from fairray.data.table import iter_batches

    writer = ShardWriter(tmp_path / "ds")
    writer.write(pd.DataFrame({"image_id": ["a", "b"], "error": [None, None], "Young": [None, None]}))
    writer.write(pd.DataFrame({"image_id": ["c"], "error": ["not an image"], "Young": [1]}))
    batches = list(iter_batches(tmp_path / "ds", 2))
    assert [b.schema for b in batches] == [batches[0].schema] * 2
    types = {f.name: f.type for f in batches[0].schema}
    assert types["Young"] == pa.int64() and types["error"] in (pa.string(), pa.large_string())
    run_in_process(lambda table: table, iter_batches(tmp_path / "ds", 2), tmp_path / "out", 3, "copy", progress=False)
    back = pd.read_parquet(tmp_path / "out")
    assert back.image_id.tolist() == ["a", "b", "c"] and back.error.fillna("").tolist() == ["", "", "not an image"]
    assert back.Young.isna().tolist() == [True, True, False]


def test_label_runs_in_process_only_for_a_one_actor_pool_on_a_ray_of_its_own(ray_local, monkeypatch):
    from fairray import ray_env

    assert not ray_env.runs_in_process("auto", None, "cpu", None, 10_000)  # this session's Ray is running: join it
    monkeypatch.setattr(ray_env.ray, "is_initialized", lambda: False)  # as in a fresh `fairray label` process
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_env, "local_cpus", lambda: 2)
    assert ray_env.runs_in_process("auto", None, "cpu", None, 10_000)
    assert ray_env.runs_in_process("auto", None, "cpu", None, 2 * ray_env.ROWS_PER_CPU_ACTOR - 1)
    assert not ray_env.runs_in_process("auto", None, "cpu", None, 2 * ray_env.ROWS_PER_CPU_ACTOR)  # two actors: Ray Data
    assert not ray_env.runs_in_process("auto", None, "cpu", 2, 10_000)
    assert not ray_env.runs_in_process("auto", "127.0.0.1:6379", "cpu", None, 10_000)  # a cluster: its actors
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not ray_env.runs_in_process("auto", None, "cpu", None, 10_000)
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(ray_env, "local_cpus", lambda: 1)
    assert ray_env.runs_in_process("auto", None, "cpu", None, 10**6)
    assert ray_env.runs_in_process("process", "127.0.0.1:6379", "cpu", 4, 10**6)  # an explicit engine wins
    assert not ray_env.runs_in_process("ray", None, "cpu", None, 10)
