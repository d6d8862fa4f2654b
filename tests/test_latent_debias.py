"""GAN Data Debiasing: complementary latents (exact algebra), pairs from a trained GAN, Ray Train classifier."""

import json

import numpy as np
import pytest

from fairray.config import FairClassifierConfig, LatentDebiasConfig
from fairray.debias import latent
from fairray.errors import FairrayError


def _unit(v):
    return v / np.linalg.norm(v)


def test_complementary_latent_keeps_target_score_and_flips_protected():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 32))
    w_t, w_g = _unit(rng.standard_normal(32)), _unit(rng.standard_normal(32) + 0.5 * rng.standard_normal(32))
    b_t, b_g = 0.3, -0.7
    zp = latent.complementary_latents(z, w_t, w_g, b_g, scale=2.0)
    np.testing.assert_allclose(zp @ w_t + b_t, z @ w_t + b_t, atol=1e-9)          # target score kept
    np.testing.assert_allclose(zp @ w_g + b_g, -(z @ w_g + b_g), atol=1e-9)       # protected score reflected
    on = latent.complementary_latents(z, w_t, w_g, b_g, scale=1.0)
    np.testing.assert_allclose(on @ w_g + b_g, 0, atol=1e-9)                      # scale 1: onto the hyperplane
    with pytest.raises(FairrayError, match="parallel"):
        latent.complementary_latents(z, w_t, w_t, b_g)


def test_fitted_hyperplanes_flip_labels_they_separate():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2000, 16))
    t = (z[:, 0] + 0.5 * z[:, 1] > 0).astype(int)
    g = (z[:, 1] - 0.3 * z[:, 0] > 0.2).astype(int)
    w_t, b_t = latent.fit_hyperplane(z, t)
    w_g, b_g = latent.fit_hyperplane(z, g)
    assert np.linalg.norm(w_t) == pytest.approx(1.0)
    zp = latent.complementary_latents(z, w_t, w_g, b_g)
    assert ((zp @ w_t + b_t > 0) == (z @ w_t + b_t > 0)).all()
    assert ((zp @ w_g + b_g > 0) != (z @ w_g + b_g > 0)).mean() > 0.99


def test_latent_debiasing_end_to_end(tmp_path, ray_local, gan_trained, attrclf_trained, synth_90_10):
    clf = FairClassifierConfig(dataset=str(synth_90_10), target="Smiling", protected="gender", width=8,
                               blocks=[1, 1], kimg=1.0, batch_size=64, n_boot=20, backend="ray")
    clf.tracking.enabled = True
    cfg = LatentDebiasConfig(classifier=clf, labeler=f"attrclf:{attrclf_trained[0]}", generator=str(gan_trained),
                             n_svm=400, n_pairs=150)
    m = latent.run(cfg, tmp_path)
    for k in ("acc", "ap_Smiling", "deo_Smiling_gender", "ba_Smiling_gender", "kl_Smiling_gender", "dp_gap",
              "eo_gap", "worst_group_acc", "deo_Smiling_gender_lo", "pairs_protected_flipped"):
        assert k in m and np.isfinite(m[k]), k
    assert 0.0 <= m["acc"] <= 1.0
    # the pairs: the same target label twice, the protected label flipped in the second half
    from fairray.data.table import read_table

    pairs = read_table(tmp_path / "latent-seed0" / "pairs", columns=["Smiling", "gender", "pair", "weight"])
    assert len(pairs) == 300
    first, second = pairs[pairs.pair == 0].reset_index(), pairs[pairs.pair == 1].reset_index()
    assert (first.Smiling == second.Smiling).all() and (first.gender == 1 - second.gender).all()
    # the stored hyperplanes and the written latents obey the algebra
    h = np.load(tmp_path / "latent-seed0" / "hyperplanes.npz")
    assert abs(float(h["w_t"] @ h["w_t"]) - 1) < 1e-9
    saved = json.loads((tmp_path / "latent-seed0" / "metrics.json").read_text())
    assert saved["acc"] == pytest.approx(m["acc"])
    assert (tmp_path / "latent-seed0" / "latent-seed0" / "model.pt").is_file()


def test_hyperplanes_fit_on_the_most_confident_latents():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.01, 0.99], [0.6, 0.4]])
    assert latent.most_confident(probs, 0.5).tolist() == [1, 2, 4]
    assert latent.most_confident(probs, 1.0).tolist() == list(range(6))


def test_style_generator_pairs_live_in_w():
    """A style-based G is flipped in w = mapping(z): rendering the codes in w gives G(z) exactly, and the
    complementary codes keep the target score in w."""
    import torch

    from fairray.config import GanConfig
    from fairray.models.generator_io import build_models, latents_to_w

    torch.manual_seed(0)
    G, _ = build_models(GanConfig(model="style", width=8, z_dim=16, w_dim=16))
    G.eval()
    z = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
    w = latents_to_w(G, z)
    assert not np.allclose(w, z)
    np.testing.assert_array_equal(latent.render(G, w, space="w"), latent.render(G, z))
    rng = np.random.default_rng(1)
    w_t, w_g = _unit(rng.standard_normal(16)), _unit(rng.standard_normal(16))
    wp = latent.complementary_latents(w, w_t, w_g, 0.1)
    np.testing.assert_allclose(wp @ w_t, w @ w_t, atol=1e-6)
    assert latent.render(G, wp.astype(np.float32), space="w").shape == (6, 32, 32, 3)


def test_generated_rows_replace_an_earlier_write(tmp_path):
    from fairray.data.table import read_table

    big = np.zeros((25_000, 4, 4, 3), np.uint8)  # two shards
    latent.write_rows(tmp_path / "pairs", big, {"Smiling": np.zeros(len(big), int)}, 1.0, "latent-pairs")
    latent.write_rows(tmp_path / "pairs", big[:10], {"Smiling": np.ones(10, int)}, 1.0, "latent-pairs")
    rows = read_table(tmp_path / "pairs", columns=["Smiling"])
    assert len(rows) == 10 and (rows.Smiling == 1).all()


def test_the_gans_view_of_the_biased_rows_follows_its_dataset(tmp_path):
    from fairray.config import SynthConfig
    from fairray.data import synth_dataset
    from fairray.data.table import read_table

    data, view = tmp_path / "data", tmp_path / "view"
    synth_dataset.ensure(SynthConfig(n=200, perc=0.5, val_frac=0, test_frac=0), data, progress=False)
    first = read_table(latent.biased_rows_view(data, "biased", view), columns=["image_id"])
    assert len(first) == 200 and latent.biased_rows_view(data, "biased", view) == view  # kept while unchanged
    synth_dataset.ensure(SynthConfig(n=120, perc=0.5, val_frac=0, test_frac=0), data, progress=False)
    assert len(read_table(latent.biased_rows_view(data, "biased", view), columns=["image_id"])) == 120
