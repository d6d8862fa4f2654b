import numpy as np
import pandas as pd
import pytest

from fairray.config import SynthConfig
from fairray.data import synth_dataset
from fairray.data.bias import BiasSpec, sample_attributes
from fairray.data.decode import decode_column
from fairray.data.synthetic import render, render_chunked, sample_nuisance
from fairray.data.table import read_manifest, read_table


def rows(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.concat([sample_attributes(n, BiasSpec(), rng), sample_nuisance(n, rng)], axis=1)


@pytest.mark.parametrize("res", [32, 64, 128])
def test_render_shapes_and_range(res):
    img = render(rows(5), res)
    assert img.shape == (5, res, res, 3) and img.dtype.is_floating_point is False
    assert img.float().std() > 10  # not blank


def test_image_is_a_function_of_its_row_not_the_chunk():
    r = rows(300)
    whole = render_chunked(r, 32, chunk=300)
    assert np.array_equal(whole.numpy(), render_chunked(r, 32, chunk=7).numpy())
    assert np.array_equal(whole[123:124].numpy(), render(r.iloc[123:124], 32).numpy())


def test_attributes_change_pixels():
    base = rows(1)
    for attr, value in [("Smiling", 1), ("Eyeglasses", 1), ("gender", 1), ("age9", 8), ("hair", 2)]:
        a, b = base.copy(), base.copy()
        a[attr], b[attr] = (0 if attr != "age9" else 2), value
        diff = np.abs(render(a, 32).numpy().astype(int) - render(b, 32).numpy().astype(int))
        assert (diff > 30).sum() >= 6, attr  # each attribute moves several pixels strongly at 32 px


def test_same_seed_gives_byte_identical_dataset(tmp_path):
    cfg = SynthConfig(n=120, perc=0.5, seed=3, shard_rows=50)
    m1 = synth_dataset.build(cfg, tmp_path / "a", progress=False)
    m2 = synth_dataset.build(cfg, tmp_path / "b", progress=False)
    t1, t2 = read_table(tmp_path / "a"), read_table(tmp_path / "b")
    assert m1["fingerprint"] == m2["fingerprint"]
    assert t1.image.tolist() == t2.image.tolist()
    assert t1.drop(columns="image").equals(t2.drop(columns="image"))
    other = synth_dataset.build(cfg.model_copy(update={"seed": 4}), tmp_path / "c", progress=False)
    assert other["fingerprint"] != m1["fingerprint"]


def test_dataset_table_schema_and_image_folder(tmp_path):
    cfg = SynthConfig(n=40, perc=0.5, resolution=64, image_folder=True, shard_rows=25)
    manifest = synth_dataset.build(cfg, tmp_path, progress=False)
    df = read_table(tmp_path)
    assert len(df) == manifest["rows"] == 40 + 4 + 4 + 20 + 2 + 2
    for col in ("image_id", "source", "subset", "split", "image", "path", "height", "width", "weight", "error",
                "labeler", "gender", "Male", "tone4", "Young", "Black_Hair", "skin_tone10", "age9"):
        assert col in df.columns, col
    assert df.image_id.is_unique and df.error.isna().all() and (df.weight == 1.0).all()
    images, errors = decode_column(df.image.iloc[:3])
    assert images.shape == (3, 64, 64, 3) and errors == [None] * 3
    labels = pd.read_csv(tmp_path / "images" / "labels.csv")
    assert len(labels) == len(df)
    first = labels.iloc[0]
    png = (tmp_path / "images" / first.path).read_bytes()
    assert png == df.set_index("image_id").loc[first.image_id, "image"]
    assert read_manifest(tmp_path)["bias_attributes"] == ["gender"]


def test_ambiguity_draws_a_noisy_cue_and_leaves_default_sets_unchanged(tmp_path):
    from fairray.data.synthetic import CUE_COLUMNS, ambiguous_cues

    r = rows(400)
    exact = r.assign(nz_smile_cue=r.Smiling.astype(float))  # a cue equal to the label draws the label as before
    assert np.array_equal(render(exact, 32).numpy(), render(r, 32).numpy())
    cues = ambiguous_cues(r, {"Smiling": 0.35}, np.random.default_rng(0))[CUE_COLUMNS["Smiling"]]
    assert cues.between(0, 1).all() and 0.1 < ((cues > 0.05) & (cues < 0.95)).mean() < 0.9
    assert abs(cues[r.Smiling == 1].mean() - cues[r.Smiling == 0].mean()) > 0.5  # still informative on average
    half = r.iloc[[0, 0]].assign(Smiling=[0, 1], nz_smile_cue=0.5)  # one cue draws one mouth, whatever the label
    img = render(half, 32).numpy()
    assert np.array_equal(img[0], img[1])
    plain = synth_dataset.build(SynthConfig(n=60, val_frac=0, test_frac=0, perc=0), tmp_path / "plain", progress=False)
    noisy = synth_dataset.build(SynthConfig(n=60, val_frac=0, test_frac=0, perc=0, ambiguity={"Smiling": 0.3}),
                                tmp_path / "noisy", progress=False)
    assert plain["fingerprint"] != noisy["fingerprint"]
    df = read_table(tmp_path / "noisy", columns=["Smiling", "nz_smile_cue"])
    assert df.nz_smile_cue.notna().all() and "nz_smile_cue" not in read_table(tmp_path / "plain").columns


def test_ambiguity_outside_its_range_is_one_line():
    with pytest.raises(ValueError, match=r"must be a noise sd in \[0, 1\]"):
        SynthConfig(ambiguity={"Smiling": 1.5})
    with pytest.raises(ValueError):
        SynthConfig(ambiguity={"gender": 0.2})


def test_raw_npy_set_holds_the_png_sets_pixels_and_its_folder_holds_pngs(tmp_path):
    cfg = SynthConfig(n=30, perc=0.5, seed=5, image_folder=True)
    png = synth_dataset.build(cfg, tmp_path / "png", progress=False)
    raw = synth_dataset.build(cfg.model_copy(update={"image_format": "npy"}), tmp_path / "npy", progress=False)
    assert raw["fingerprint"] == png["fingerprint"] and raw["config"]["image_format"] == "npy"
    a, b = read_table(tmp_path / "png"), read_table(tmp_path / "npy")
    assert a.drop(columns="image").equals(b.drop(columns="image"))
    assert all(blob.startswith(b"\x93NUMPY") for blob in b.image)
    assert np.array_equal(decode_column(a.image)[0], decode_column(b.image)[0])
    assert sorted(p.read_bytes() for p in (tmp_path / "npy" / "images").rglob("*.png")) == \
        sorted(p.read_bytes() for p in (tmp_path / "png" / "images").rglob("*.png"))


def test_a_rendered_set_is_reused_only_for_its_own_settings(tmp_path):
    from fairray.data.table import shard_paths

    big = SynthConfig(n=300, val_frac=0, test_frac=0, perc=0, shard_rows=100)
    synth_dataset.ensure(big, tmp_path, progress=False)
    made = [p.stat().st_mtime_ns for p in shard_paths(tmp_path)]
    assert synth_dataset.current(big, tmp_path)
    synth_dataset.ensure(big, tmp_path, progress=False)  # the same settings: kept, not rendered again
    assert [p.stat().st_mtime_ns for p in shard_paths(tmp_path)] == made
    small = big.model_copy(update={"n": 100, "seed": 5})
    assert not synth_dataset.current(small, tmp_path)
    synth_dataset.ensure(small, tmp_path, progress=False)
    # rendered anew, and none of the larger set's shards is left to be read with it
    assert synth_dataset.current(small, tmp_path) and len(read_table(tmp_path, columns=["image_id"])) == 100
