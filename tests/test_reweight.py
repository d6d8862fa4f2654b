"""fairgen's density-ratio job end to end: the ratio classifier on a labeler's features restores the reference
share through the Ray Data weight pass; rows in == rows out; a bad encoder is one line before any work."""

import pytest

from fairray.config import ReweightConfig
from fairray.data.table import read_table
from fairray.debias import reweight
from fairray.errors import FairrayError


def test_encoder_ratio_restores_the_reference_share(ray_local, synth_90_10, attrclf_trained, tmp_path):
    cfg = ReweightConfig(dataset=str(synth_90_10), encoder=f"attrclf:{attrclf_trained[0]}")
    r = reweight.run(cfg, tmp_path / "rw")
    assert r["ratio_clf_features"] > 0 and 0.55 < r["ratio_clf_balanced_acc_val"] <= 0.8  # Bayes: 0.7; ~100 val rows
    df = read_table(tmp_path / "rw", columns=["subset", "split", "gender", "weight"])
    assert len(df) == len(read_table(synth_90_10, columns=["split"]))
    assert (df[df.subset == "reference"].weight == 1).all() and (df.weight > 0).all()
    before, after = r["weights"]["unweighted_share_gender"][1], r["weights"]["weighted_share_gender"][1]
    assert before < 0.2 and after > 0.4, (before, after)  # 90/10 biased + 50/50 reference -> 0.5 when exact


def test_encoder_without_a_checkpoint_is_one_line(synth_90_10, tmp_path):
    cfg = ReweightConfig(dataset=str(synth_90_10), encoder=f"attrclf:{tmp_path / 'none'}")
    with pytest.raises(FairrayError, match="no attrclf checkpoint"):
        reweight.run(cfg, tmp_path / "rw")
    assert not (tmp_path / "rw" / "data").exists()


def test_weight_pass_in_process_writes_the_ray_data_weights(ray_local, synth_90_10, attrclf_trained, tmp_path):
    """engine=process (picked for a one-actor pass on a Ray of the command's own) writes the same rows and weights
    as the Ray Data actor pool."""
    import numpy as np

    cfg = ReweightConfig(dataset=str(synth_90_10), encoder=f"attrclf:{attrclf_trained[0]}")
    state, _, _ = reweight.train_classifier(cfg, synth_90_10)
    calib = {"method": "temperature", "temperature": 1.0}
    cols = ["image_id", "subset", "weight", "ratio_prob"]
    out = {}
    for engine in ("ray", "process"):
        reweight.weight_pass(synth_90_10, tmp_path / engine, state, calib, clip_max=20.0, progress=False,
                             engine=engine)
        out[engine] = read_table(tmp_path / engine, columns=cols)
    assert out["process"].image_id.tolist() == out["ray"].image_id.tolist()
    assert len(out["process"]) == len(read_table(synth_90_10, columns=["split"]))
    assert np.allclose(out["process"].weight, out["ray"].weight, rtol=1e-5)
    assert np.allclose(out["process"].ratio_prob, out["ray"].ratio_prob, atol=1e-6)
