"""The downstream classifier on the shared training core: Ray Train DDP and the in-process loop train the same
model from the same seed, checkpoints are fairray's atomic state, and a same-name re-run does no new work."""

import pytest
import torch

from fairray.config import FairClassifierConfig, SynthConfig
from fairray.stage import RunContext
from fairray.train import classifier
from fairray.train.checkpoint import load_state, newest_complete


@pytest.fixture(scope="module")
def small_cfg(tmp_path_factory):
    from fairray.data import synth_dataset

    data = tmp_path_factory.mktemp("clf-data")
    synth_dataset.build(SynthConfig(n=800, bias="diga", perc=0.5, test_frac=0.2), data, progress=False)
    return FairClassifierConfig(dataset=str(data), blocks=[1, 1, 1, 1], width=8, kimg=0.512, batch_size=32,
                                n_boot=0, ray={"workers": 1})


def test_ray_and_local_backends_agree_and_rerun_resumes(ray_local, small_cfg, tmp_path):
    m = classifier.run(small_cfg, tmp_path, RunContext(name="clf-ray"))
    assert 0.0 <= m["acc"] <= 1.0 and "dp_gap" in m and "eo_gap" in m
    ckpt = newest_complete(tmp_path / "ray_results" / "clf-ray")
    state = load_state(ckpt)
    assert state["step"] == 16 and len(state["history"]) == classifier.TICKS  # 512 images / 32, 4 ticks
    assert {"model", "opt", "sched", "rng", "history"} <= set(state)

    local = small_cfg.model_copy(update={"backend": "local"})
    weights = classifier.fit(local, small_cfg.dataset, tmp_path / "local")
    for k, v in state["model"].items():  # one worker, one seed, one loop: the same weights
        assert torch.allclose(v.float(), weights[k].float(), atol=1e-5), k

    again = classifier.fit(small_cfg, small_cfg.dataset, tmp_path, name="clf-ray")  # finished: no new work
    assert all(torch.equal(again[k], state["model"][k]) for k in again)

    # The same name with another setting (or other training rows) is another experiment: trained anew, not resumed.
    other = classifier.fit(small_cfg.model_copy(update={"lr": small_cfg.lr / 4}), small_cfg.dataset, tmp_path,
                           name="clf-ray")
    assert not all(torch.equal(other[k], state["model"][k]) for k in other)
    assert load_state(newest_complete(tmp_path / "ray_results" / "clf-ray")).get("resumes", []) == []


def test_real_passes_budget_scales_kimg_by_the_augmented_rows(small_cfg, tmp_path):
    import numpy as np

    from fairray.debias.latent import write_rows

    pairs = write_rows(tmp_path / "pairs", np.zeros((200, 32, 32, 3), np.uint8),
                       {"Smiling": np.arange(200) % 2, "gender": np.arange(200) // 100}, 1.0, "test-pairs")
    aug = small_cfg.model_copy(update={"augment_data": [str(pairs)]})
    assert classifier.with_budget(aug, small_cfg.dataset) == aug  # the default budget counts every image
    scaled = classifier.with_budget(aug.model_copy(update={"budget": "real_passes"}), small_cfg.dataset)
    assert scaled.kimg == pytest.approx(small_cfg.kimg * (800 + 200) / 800) and scaled.budget == "images"
    alone = small_cfg.model_copy(update={"budget": "real_passes"})
    assert classifier.with_budget(alone, small_cfg.dataset).kimg == small_cfg.kimg  # nothing added: no change


def test_real_rows_false_trains_on_the_augmented_rows_alone(small_cfg, tmp_path):
    import numpy as np

    from fairray.debias.latent import write_rows
    from fairray.errors import FairrayError

    y = np.arange(120) % 2
    edits = write_rows(tmp_path / "edits", np.full((120, 32, 32, 3), 7, np.uint8), {"Smiling": y}, 0.5, "test-edits")
    both = small_cfg.model_copy(update={"augment_data": [str(edits)]})
    x, yy, w, _ = classifier.training_rows(both, small_cfg.dataset)
    assert len(x) > 120
    only = both.model_copy(update={"real_rows": False})
    x, yy, w, _ = classifier.training_rows(only, small_cfg.dataset)
    assert len(x) == 120 and (x == 7).all() and np.array_equal(yy, y) and np.allclose(w, 0.5)
    for check in (classifier.with_budget, classifier.training_rows):  # the worker's own guard, too
        with pytest.raises(FairrayError, match="augment_data is empty"):
            check(small_cfg.model_copy(update={"real_rows": False}), small_cfg.dataset)
    with pytest.raises(FairrayError, match="real_passes"):
        classifier.with_budget(only.model_copy(update={"budget": "real_passes"}), small_cfg.dataset)
