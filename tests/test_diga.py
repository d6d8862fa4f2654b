"""DiGA: the combined direction recovers the spurious factor; edits along a direction move the protected
attribute of generated images (labeler-measured) and not the target; one (c, s) point end to end."""

import numpy as np
import pytest

from fairray.config import DigaConfig, FairClassifierConfig
from fairray.debias import directions, latent
from fairray.errors import FairrayError


def test_combined_direction_isolates_the_spurious_factor():
    # latent dim 0 carries the target, dim 1 a protected factor that agrees with the target 90% of the time
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.9, y, 1 - y)
    z = rng.standard_normal((n, 12))
    z[:, 0] += 2 * y - 1
    z[:, 1] += 2 * a - 1
    w_a, w_b = directions.fit_direction(z, y, 1e-4), directions.fit_direction(z, y, 1e4)
    e1 = np.eye(12)[1]
    # strong regularisation leans further toward the spurious factor than weak regularisation
    assert abs(w_a @ e1) > abs(w_b @ e1)
    cos = {c: float(directions.combine(w_a, w_b, c) @ e1) for c in np.arange(0.5, 1.51, 0.05)}
    best = max(cos, key=lambda c: abs(cos[c]))
    assert abs(cos[best]) > 0.9, cos
    n_best = directions.combine(w_a, w_b, best)
    assert abs(n_best[0]) < 0.3  # little target left in the direction
    with pytest.raises(FairrayError, match="vanishes"):
        directions.combine(w_a, w_a, 1.0)


def test_edit_moves_protected_not_target(gan_trained, attrclf_trained):
    from fairray.labelers.registry import load_labeler
    from fairray.models.generator_io import load_generator

    G, gcfg = load_generator(gan_trained)
    latent.freeze_generator(G, gcfg.z_dim)
    lab = load_labeler(f"attrclf:{attrclf_trained[0]}")
    z = np.random.default_rng(0).standard_normal((1500, gcfg.z_dim)).astype(np.float32)
    images = latent.render(G, z)
    labels = latent.label_images(images, lab, ["Smiling", "gender"])
    w_t, _ = latent.fit_hyperplane(z, labels["Smiling"])
    w_g, _ = latent.fit_hyperplane(z, labels["gender"])
    # the spurious direction DiGA's combination aims at: protected, with the target component removed
    n = w_g - (w_g @ w_t) * w_t
    n /= np.linalg.norm(n)
    k = 600
    after = {s: latent.label_images(directions.edit(G, images[:k], z[:k], n, np.full(k, s), "generate"), lab,
                                    ["Smiling", "gender"]) for s in (-3.0, 3.0)}
    protected_gap = after[3.0]["gender"].mean() - after[-3.0]["gender"].mean()
    target_gap = abs(after[3.0]["Smiling"].mean() - after[-3.0]["Smiling"].mean())
    assert protected_gap > 0.2, (protected_gap, target_gap)
    assert target_gap < protected_gap / 2, (protected_gap, target_gap)
    # residual edits keep the input where the generator does not change: a zero shift is the identity
    same = directions.edit(G, images[:8], z[:8], n, np.zeros(8), "residual")
    assert np.abs(same.astype(int) - images[:8].astype(int)).max() <= 1


def test_diga_point(tmp_path, ray_local, gan_trained, attrclf_trained, synth_90_10):
    clf = FairClassifierConfig(dataset=str(synth_90_10), target="Smiling", protected="gender", width=8,
                               blocks=[1, 1], kimg=0.5, batch_size=64, n_boot=10, backend="local")
    cfg = DigaConfig(classifier=clf, labeler=f"attrclf:{attrclf_trained[0]}", generator=str(gan_trained),
                     encoder_kimg=2, encoder_width=8, refine_steps=2, choose_n=64, coefficients=[0.8, 1.0])
    prep = directions.prepare(cfg, tmp_path)
    from fairray.models.generator_io import load_generator

    assert prep.train_z.shape == (len(prep.train_images), load_generator(gan_trained)[1].z_dim)
    # the cache is keyed by what made it: the same settings reuse it, another refine_steps inverts anew
    lat = tmp_path / "diga-prep" / "latents.npz"
    made = lat.stat().st_mtime_ns
    assert np.array_equal(directions.prepare(cfg, tmp_path).train_z, prep.train_z)
    assert lat.stat().st_mtime_ns == made
    other = directions.prepare(cfg.model_copy(update={"refine_steps": 3}), tmp_path)
    assert lat.stat().st_mtime_ns != made and not np.array_equal(other.train_z, prep.train_z)
    from fairray.labelers.registry import load_labeler

    c, rows = directions.choose_coefficient(cfg, prep, load_labeler(cfg.labeler), 3.0)
    assert c in (0.8, 1.0) and len(rows) == 2 and all(0 <= r["edit_target_kept"] <= 1 for r in rows)
    assert cfg.verify == "target"  # the default with a labeler; one unchecked fixed edit per row here
    m = directions.diga_point(cfg.model_copy(update={"verify": "none", "strength_sampling": "fixed",
                                                     "edits_per_row": 1}), c, 3.0, tmp_path, prep)
    assert m["c"] == c and m["s"] == 3.0
    for k in ("acc", "worst_group_acc", "dp_gap", "eo_gap", "deo_Smiling_gender", "val_worst_group_acc"):
        assert np.isfinite(m[k]), k
    # the edited rows were added to training: one per real training row
    from fairray.data.table import read_table

    edits = read_table(tmp_path / f"diga-c{c:g}-s3-seed0" / "edits", columns=["Smiling", "edit_strength"])
    assert len(edits) == len(prep.train_images)
    assert ((edits.edit_strength > 0) == (edits.Smiling == 0)).all()
    # DiGA's classifier trains on the edits alone (train_on=edits, the default), not on the real rows too
    import torch

    tag = f"diga-c{c:g}-s3-seed0"
    assert torch.load(tmp_path / tag / tag / "model.pt", weights_only=False)["config"]["real_rows"] is False
    # verify=flip adds only the edits the labeler confirms, and says how many that was (two edits per row here)
    vcfg = cfg.model_copy(update={"verify": "flip", "edits_per_row": 2, "strength_sampling": "uniform"})
    with pytest.raises(FairrayError, match="needs the labeler"):
        directions.diga_point(vcfg.model_copy(update={"labeler": None}), c, 3.0, tmp_path, prep)
    lab = load_labeler(cfg.labeler)
    try:
        v = directions.diga_point(vcfg, c, 3.0, tmp_path, prep, labeler=lab)
    except FairrayError as e:  # a tiny test generator may flip nothing; then the error says so
        assert "no edit passed" in str(e)
    else:
        kept = read_table(tmp_path / f"diga-c{c:g}-s3-u2-flip-seed0" / "edits", columns=["Smiling"])
        assert len(kept) == v["edits_used"] == round(v["edits_verified"] * 2 * len(prep.train_images))
        assert v["edits_verified"] <= min(v["edits_target_kept"], v["edits_protected_flipped"])


def test_edit_checks_count_an_unchanged_image_as_kept_not_flipped(gan_trained, attrclf_trained):
    from fairray.labelers.registry import load_labeler
    from fairray.models.generator_io import load_generator

    lab = load_labeler(f"attrclf:{attrclf_trained[0]}")
    G, gcfg = load_generator(gan_trained)
    latent.freeze_generator(G, gcfg.z_dim)
    images = latent.render(G, np.random.default_rng(3).standard_normal((64, gcfg.z_dim)).astype(np.float32))
    labels = latent.label_images(images, lab, ["Smiling", "gender"])
    own = labels["Smiling"]
    kept, flipped = directions.edit_checks(labels, own, labels["gender"], "Smiling", "gender")
    assert kept.all() and not flipped.any()
    kept, _ = directions.edit_checks(labels, 1 - own, labels["gender"], "Smiling", "gender")
    assert not kept.any()


def test_several_edits_per_row_need_random_strengths():
    with pytest.raises(ValueError, match="needs strength_sampling=uniform"):
        DigaConfig(edits_per_row=2, strength_sampling="fixed")
    assert DigaConfig(strength_sampling="fixed").edits_per_row == 1
    assert DigaConfig().edits_per_row == 4 and DigaConfig(edits_per_row=2).edits_per_row == 2
    assert DigaConfig().verify == "none"  # no labeler to check with
    assert DigaConfig().train_on == "edits" and DigaConfig().target_direction == "rows"


def test_labeler_target_direction_follows_the_labelers_target(gan_trained, attrclf_trained):
    from fairray.labelers.registry import load_labeler
    from fairray.models.generator_io import load_generator

    G, gcfg = load_generator(gan_trained)
    latent.freeze_generator(G, gcfg.z_dim)
    lab = load_labeler(f"attrclf:{attrclf_trained[0]}")
    w = directions.labeler_target_direction(G, gcfg.z_dim, lab, "Smiling", n=1500, seed=0)
    assert w.shape == (gcfg.z_dim,) and abs(np.linalg.norm(w) - 1) < 1e-6
    assert np.array_equal(w, directions.labeler_target_direction(G, gcfg.z_dim, lab, "Smiling", n=1500, seed=0))
    # on fresh samples, the labeler's smiling faces lie further along w than its non-smiling ones
    z = np.random.default_rng(7).standard_normal((1000, gcfg.z_dim)).astype(np.float32)
    y = latent.label_images(latent.render(G, z), lab, ["Smiling"])["Smiling"]
    assert 0 < y.mean() < 1
    score = z @ w
    assert score[y == 1].mean() - score[y == 0].mean() > 0.5 * score.std()
