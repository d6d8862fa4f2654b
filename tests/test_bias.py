import numpy as np
import pytest

from fairray.config import SynthConfig
from fairray.data.bias import BiasSpec, allocate, parse_bias, reference_spec, sample_attributes
from fairray.data.summary import value_counts
from fairray.data.synth_dataset import part_rows, plan
from fairray.errors import FairrayError


def counts(df, attrs):
    return value_counts(df, attrs).to_list()


def rng():
    return np.random.default_rng(7)


def test_90_10_and_80_20_exact():
    assert counts(sample_attributes(10_000, BiasSpec(preset="90_10"), rng()), ["gender"]) == [9000, 1000]
    assert counts(sample_attributes(10_000, BiasSpec(preset="80_20"), rng()), ["gender"]) == [8000, 2000]
    assert counts(sample_attributes(67_507, BiasSpec(preset="90_10"), rng()), ["gender"]) == [60_756, 6_751]


def test_multi_reproduces_fairgen_counts():
    df = sample_attributes(60_000, BiasSpec(preset="multi"), rng())
    # cells (Black_Hair, gender): (no, male), (no, female), (yes, male), (yes, female)
    assert counts(df, ["Black_Hair", "gender"]) == [24_878, 26_216, 5_122, 3_784]
    assert set(df.loc[df.Black_Hair == 1, "hair"]) == {0}
    assert 0 not in set(df.loc[df.Black_Hair == 0, "hair"])


def test_diga_cut_1k_9k_9k_1k():
    df = sample_attributes(20_000, BiasSpec(preset="diga"), rng())
    assert counts(df, ["Smiling", "gender"]) == [9000, 1000, 1000, 9000]


def test_custom_marginals_and_joint_are_exact():
    spec = parse_bias("gender=0.9; hair=0.7,0.1,0.1,0.1; Young=0.25")
    df = sample_attributes(1000, spec, rng())
    assert counts(df, ["gender"]) == [100, 900]
    assert counts(df, ["hair"]) == [700, 100, 100, 100]
    assert counts(df, ["Young"]) == [750, 250]
    joint = parse_bias("gender x Black_Hair=0.4,0.1,0.1,0.4")
    assert counts(sample_attributes(1000, joint, rng()), ["gender", "Black_Hair"]) == [400, 100, 100, 400]
    tone = parse_bias("tone4=0.1,0.2,0.3,0.4")
    df = sample_attributes(1000, tone, rng())
    assert counts(df, ["tone4"]) == [100, 200, 300, 400]
    assert (df.tone4 == (df.skin_tone10 - 1) * 4 // 10).all()


def test_reference_set_is_exactly_balanced_over_bias_cells():
    ref = reference_spec(BiasSpec(preset="multi"))
    assert counts(sample_attributes(4000, ref, rng()), ["Black_Hair", "gender"]) == [1000] * 4


def test_splits_and_perc_sizes_follow_the_spec():
    cfg = SynthConfig(n=2000, perc=0.25, bias="80_20")
    parts = {(p.subset, p.split): p for p in plan(cfg)}
    assert {k: p.n for k, p in parts.items()} == {
        ("biased", "train"): 2000, ("biased", "val"): 200, ("biased", "test"): 200,
        ("reference", "train"): 500, ("reference", "val"): 50, ("reference", "test"): 50,
    }
    for i, p in enumerate(plan(cfg)):
        df = part_rows(cfg, p, i)
        expected = allocate(p.n, [0.8, 0.2] if p.subset == "biased" else [1, 1]).tolist()
        assert counts(df, ["gender"]) == expected


def test_allocate_largest_remainder_sums_exactly():
    for n in (1, 7, 999, 10_001):
        c = allocate(n, [1, 1, 1])
        assert c.sum() == n and c.max() - c.min() <= 1


@pytest.mark.parametrize("text", ["gender=2", "nose=0.5", "hair=0.5,0.5", "gender x hair=0.5,0.5", "90_11x"])
def test_bad_bias_specs_are_user_errors(text):
    with pytest.raises(FairrayError, match="cannot parse bias"):
        parse_bias(text)


def test_conflicting_constraints_rejected():
    with pytest.raises(FairrayError, match="twice"):
        parse_bias("Black_Hair=0.5; Blond_Hair=0.5")
