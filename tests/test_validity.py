"""Validity of generated samples: precision/recall/density/coverage in attrclf feature space beside their
real-vs-real references, and the one rule that turns them into `valid_<n>`."""

import json
import os

import numpy as np
import pytest
import torch

from fairray.metrics.validity import (
    VALIDITY_RULE,
    is_valid,
    prdc_metrics,
    split_halves,
    subsample,
    validity_metric,
)

N_REF, N_EVAL = 1000, 500  # reference rows (halves A and B of 500) and evaluated images per set


def measured(name: str, m: dict[str, float], tag: str) -> None:
    """Print (and with FAIRRAY_VALIDITY_LOG append to that file) the numbers a case measured."""
    row = {"case": name} | {k: round(v, 4) for k, v in m.items() if k.endswith(tag) and not k.startswith("share")}
    print(json.dumps(row))
    if os.environ.get("FAIRRAY_VALIDITY_LOG"):
        with open(os.environ["FAIRRAY_VALIDITY_LOG"], "a") as f:
            f.write(json.dumps(row) + "\n")


# --- the metric and the rule on Gaussian features --------------------------------------------------------------

def gauss(n: int, seed: int, shift: float = 0.0, d: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, d))


def test_prdc_same_distribution_matches_real_vs_real():
    m = prdc_metrics(gauss(1000, 0), gauss(1000, 1), gauss(1000, 2))
    assert set(m) == {f"{k}{r}_1k" for k in ("precision", "recall", "density", "coverage") for r in ("", "_real")}
    for k, tol in (("precision", 0.06), ("recall", 0.06), ("density", 0.15), ("coverage", 0.06)):
        assert m[f"{k}_1k"] == pytest.approx(m[f"{k}_real_1k"], abs=tol), k  # density is the noisiest
    assert m["precision_real_1k"] > 0.6 and m["coverage_real_1k"] > 0.8
    assert is_valid(m, "1k") and validity_metric(m, "1k") == {"valid_1k": 1.0}


def test_prdc_shifted_or_collapsed_is_invalid():
    a, b = gauss(1000, 0), gauss(1000, 1)
    shifted = prdc_metrics(a, b, gauss(1000, 2, shift=1.0))
    assert shifted["precision_1k"] < 0.5 * shifted["precision_real_1k"]
    assert shifted["coverage_1k"] < 0.5 * shifted["coverage_real_1k"]
    assert validity_metric(shifted, "1k") == {"valid_1k": 0.0}
    # "one face": every sample near one real point -> precise, but covers almost nothing
    one = prdc_metrics(a, b, a[:1] + 0.01 * gauss(1000, 3))
    assert one["precision_1k"] > 0.9 and one["coverage_1k"] < 0.05 and not is_valid(one, "1k")


def test_target_coverage_judges_a_reweighted_generator_against_its_target():
    """A generator asked to turn 80/20 data into 20/80 covers less of the majority's rows it now draws less of:
    plain coverage of the data punishes the shift, coverage with each real row weighted by target/data does not."""
    d = 16

    def mix(n: int, minority: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        g = np.random.default_rng(seed)
        is_min = g.random(n) < minority
        return g.normal(0, 1, (n, d)) + 6.0 * is_min[:, None], is_min

    (a, a_min), (b, _) = mix(1000, 0.2, 0), mix(1000, 0.2, 1)
    fair, _ = mix(1000, 0.8, 2)
    w = np.where(a_min, 0.8 / 0.2, 0.2 / 0.8)  # p_target / p_data per real_a row
    m = prdc_metrics(a, b, fair, weights_a=w)
    assert m["coverage_target_1k"] > m["coverage_1k"] + 0.1  # measured 0.93 vs 0.74
    assert m["coverage_target_real_1k"] == pytest.approx(m["coverage_real_1k"], abs=0.05)
    # weights of 1 are prdc's own coverage, exactly
    ones = prdc_metrics(a, b, fair, weights_a=np.ones(len(a)))
    assert ones["coverage_target_1k"] == ones["coverage_1k"] and ones["coverage_target_real_1k"] == ones[
        "coverage_real_1k"]
    # the rule reads the target coverage when there is one
    judged = {"precision_1k": 1.0, "precision_real_1k": 1.0, "coverage_1k": 0.4, "coverage_real_1k": 1.0}
    assert not is_valid(judged, "1k")
    assert is_valid(judged | {"coverage_target_1k": 0.6, "coverage_target_real_1k": 1.0}, "1k")
    assert not is_valid(judged | {"coverage_1k": 0.9, "coverage_target_1k": 0.3, "coverage_target_real_1k": 1.0},
                        "1k")
    for bad in (np.ones(3), -w, np.full(len(a), np.nan)):
        with pytest.raises(ValueError, match="weights_a"):
            prdc_metrics(a, b, fair, weights_a=bad)


def test_heldout_rows_carry_w_to_the_alpha(synth_90_10, tmp_path):
    """heldout_rows: the held-out images and, on a dataset with a weight column and alpha > 0, each row's w^alpha
    in the same order; no weights for alpha 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fairray.data.loading import load_split
    from fairray.data.reference import heldout_images, heldout_rows
    from fairray.data.table import read_table, shard_paths

    df = read_table(synth_90_10)
    df["weight"] = np.where(df.gender == 1, 3.0, 0.5)
    (tmp_path / "w").mkdir()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "w" / "part-0.parquet")
    (tmp_path / "w" / "dataset.json").write_text((synth_90_10 / "dataset.json").read_text())
    images, weights = heldout_rows(tmp_path / "w", 32, 10_000, alpha=2.0)
    gender = np.concatenate([load_split(synth_90_10, s, ["gender"])[1].gender.to_numpy() for s in ("val", "test")])
    assert len(images) == len(weights) == len(gender) > 0
    assert np.array_equal(weights, np.where(gender == 1, 9.0, 0.25))
    assert np.array_equal(images, heldout_images(synth_90_10, 32, 10_000))
    assert heldout_rows(tmp_path / "w", 32, 10_000, alpha=0.0)[1] is None
    # a SynthFaces table carries w = 1 (no density ratio yet): the target is its data
    assert (heldout_rows(synth_90_10, 32, 10_000, alpha=1.0)[1] == 1.0).all()
    assert len(shard_paths(tmp_path / "w")) == 1


def test_heldout_rows_balance_a_students_cells(synth_90_10):
    """heldout_rows(balance_by=...): each held-out row weighs 1 / (K share(cell)), so every cell of the student's
    target carries the same total weight; a column the dataset lacks leaves the target unweighted."""
    from fairray.config import DistillConfig
    from fairray.data.loading import load_split
    from fairray.data.reference import heldout_images, heldout_rows
    from fairray.train.distill.driver import target_cells

    images, w = heldout_rows(synth_90_10, 32, 10_000, balance_by=["gender"])
    gender = np.concatenate([load_split(synth_90_10, s, ["gender"])[1].gender.to_numpy() for s in ("val", "test")])
    assert np.array_equal(images, heldout_images(synth_90_10, 32, 10_000)) and len(w) == len(gender)
    assert 0 < (gender == 1).mean() < 0.3  # a biased set, so the weights matter
    for g in (0, 1):
        assert w[gender == g].sum() == pytest.approx(len(w) / 2)
        assert np.ptp(w[gender == g]) == 0
    _, w2 = heldout_rows(synth_90_10, 32, 10_000, balance_by=["gender", "tone4"])
    assert w2.sum() == pytest.approx(len(w2)) and len(np.unique(w2.round(9))) > 2
    assert heldout_rows(synth_90_10, 32, 10_000, balance_by=["no_such_column"])[1] is None
    cfg = DistillConfig(balance_by="gender,tone4")
    assert target_cells(cfg) == ["gender", "tone4"]
    assert target_cells(cfg.model_copy(update={"sampler": "none", "fair_by": ["gender"]})) == ["gender"]
    assert target_cells(cfg.model_copy(update={"sampler": "none", "lambda_fair": 0.0})) is None


def test_sizes_are_equalised_and_halves_deterministic():
    a, b = split_halves(11)
    assert len(a) == len(b) == 5 and not set(a) & set(b) and (split_halves(11)[0] == a).all()
    x = np.arange(100)[:, None]
    assert (subsample(x, 30) == subsample(x, 30)).all() and len(np.unique(subsample(x, 30))) == 30
    assert subsample(x, 200) is x
    # a bigger fake set is cut to real_b's size, so fake and real-vs-real values see the same set sizes
    m = prdc_metrics(gauss(300, 0), gauss(300, 1), gauss(2000, 2))
    assert "precision_2k" in m and m["coverage_2k"] == pytest.approx(m["coverage_real_2k"], abs=0.1)
    with pytest.raises(ValueError, match="rows per set"):
        prdc_metrics(gauss(5, 0), gauss(5, 1), gauss(5, 2))
    with pytest.raises(KeyError):
        is_valid({"precision_1k": 1.0}, "1k")
    assert "precision" in VALIDITY_RULE and "coverage" in VALIDITY_RULE and "\n" not in VALIDITY_RULE


# --- images through a trained attrclf ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """N_REF + N_EVAL unbiased 32 px SynthFaces: reference rows first, held-out real rows after."""
    from fairray.config import SynthConfig
    from fairray.data import synth_dataset
    from fairray.data.loading import load_split

    out = tmp_path_factory.mktemp("validity-faces")
    synth_dataset.build(SynthConfig(n=N_REF + N_EVAL, bias="none", perc=0.0, val_frac=0.0, test_frac=0.0, seed=7),
                        out, progress=False)
    images, _ = load_split(out, "train", [])
    return images[:N_REF], images[N_REF:]


@pytest.fixture(scope="module")
def labeler(attrclf_trained):
    from fairray.labelers.registry import load_labeler

    return load_labeler(f"attrclf:{attrclf_trained[0]}")


def blur(images: np.ndarray, factor: int = 4) -> np.ndarray:
    """Face-like but degraded: down to 1/factor and bilinear back up."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.avg_pool2d(x, factor)
    up = torch.nn.functional.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_noise_invalid_real_valid_degraded_between(faces, labeler):
    from fairray.metrics.generated import evaluate_samples
    from fairray.metrics.quality import feature_stats, frechet_distance

    ref, held_out = faces
    noise = np.random.default_rng(0).integers(0, 256, size=held_out.shape, dtype=np.uint8)
    m = {}
    for name, images in (("real", held_out), ("blur4", blur(held_out, 4)), ("blur8", blur(held_out, 8)),
                         ("noise", noise)):
        m[name] = evaluate_samples(images, labeler, ["gender"], reference=ref)
        measured(name, m[name], "500")
    real, noise_m = m["real"], m["noise"]
    # every existing key is still there, fd_attrclf still against the whole reference
    assert {"fd_attrclf_500", "fairness_discrepancy_gender_500", "share_gender_0_500"} <= set(real)
    assert real["fd_attrclf_500"] == pytest.approx(
        frechet_distance(*feature_stats(labeler.features(held_out)), *feature_stats(labeler.features(ref))),
        rel=1e-6)
    # the real-vs-real reference depends on the reference alone
    assert len({v["coverage_real_500"] for v in m.values()}) == 1
    assert real["valid_500"] == 1.0 and noise_m["valid_500"] == 0.0
    assert real["precision_500"] == pytest.approx(real["precision_real_500"], abs=0.1)
    assert real["coverage_500"] == pytest.approx(real["coverage_real_500"], abs=0.1)
    # Degradation shows first in coverage; precision is near its ceiling in this 128-d space (real k-NN balls
    # are wide), so a mild blur keeps it at the real value and only a strong one moves it below.
    cov = [m[k]["coverage_500"] for k in ("real", "blur4", "blur8", "noise")]
    assert cov == sorted(cov, reverse=True) and len(set(cov)) == 4
    assert real["precision_500"] > m["blur8"]["precision_500"] > noise_m["precision_500"]
    assert m["blur8"]["valid_500"] == 0.0


def test_a_shared_feature_cache_scores_each_image_set_once(faces, labeler):
    """Distill scores teacher and student against the same reference and held-out rows: with one feature cache
    their features are computed once, and every metric is what it is without the cache."""
    from fairray.metrics.generated import evaluate_samples

    ref, held_out = faces
    a, b = held_out, blur(held_out, 4)
    calls = []

    class Counting:  # the labeler, counting the images it is asked for features of
        heads = labeler.heads

        def predict_proba(self, x):
            return labeler.predict_proba(x)

        def features(self, x):
            calls.append(len(x))
            return labeler.features(x)

    counting, cache = Counting(), {}
    kw = {"reference": ref, "heldout": ref[: len(ref) // 2]}
    cached = [evaluate_samples(x, counting, ["gender"], feature_cache=cache, **kw) for x in (a, b)]
    assert sum(calls) == len(a) + len(b) + len(ref) + len(ref) // 2  # each set once
    plain = [evaluate_samples(x, labeler, ["gender"], **kw) for x in (a, b)]
    assert cached == plain


def test_trained_gan_validity(gan_trained, synth_90_10, labeler):
    """A trained GAN (the 24-kimg fixture, the default recipe) is valid against held-out rows of its data; a
    generator that reproduced its biased training data exactly is valid, so the rule does not punish the bias a
    fairness method is there to remove."""
    from fairray.data.loading import load_split
    from fairray.data.reference import heldout_images, reference_images
    from fairray.metrics.generated import evaluate_samples
    from fairray.models.generator_io import load_generator, sample

    G, cfg = load_generator(gan_trained)
    images, _ = sample(G, N_EVAL, cfg.z_dim, seed=1)
    ref = reference_images(synth_90_10, 32, N_EVAL)
    held = heldout_images(synth_90_10, 32, N_EVAL)
    m = evaluate_samples(images, labeler, ["gender"], reference=ref, heldout=held)
    measured("gan_24kimg", m, "500")
    assert {f"{k}_500" for k in ("precision", "recall", "density", "coverage", "valid")} <= set(m)
    assert m["valid_500"] == 1.0
    biased, _ = load_split(synth_90_10, "train", [], subset="biased")
    mb = evaluate_samples(biased[:N_EVAL], labeler, ["gender"], reference=ref, heldout=held)
    measured("biased_train_rows", mb, "500")
    assert mb["valid_500"] == 1.0
    # judged against the balanced reference rows instead, the same biased rows lose coverage for the bias alone
    mr = evaluate_samples(biased[:N_EVAL], labeler, ["gender"], reference=ref)
    measured("biased_train_rows_vs_reference", mr, "500")
    assert mb["coverage_500"] > mr["coverage_500"]


def test_demo_sections_say_when_a_generator_is_not_meaningful():
    from fairray.demo import not_meaningful

    assert not_meaningful({"gan-unweighted": 1.0, "gan-alpha1": None}) == ""  # valid or unmeasured: no caveat
    text = not_meaningful({"teacher": 1.0, "student": 0.0})
    assert "Not meaningful" in text and "student" in text and "teacher" not in text and "its fairness" in text
