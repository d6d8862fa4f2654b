"""Fair distillation: L_fair is differentiable and moves the batch mean; a tiny Ray Train run end to end; resume."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fairray.cli import app
from fairray.config import DistillConfig, GanConfig
from fairray.errors import FairrayError
from fairray.labelers.registry import load_labeler
from fairray.models.student import auto_width, build_student, count_params, thin_from
from fairray.stage import RunContext
from fairray.train import distill
from fairray.train.checkpoint import load_state


def test_fairness_divergence_matches_hand_values():
    p, t = torch.tensor([0.8, 0.2]), torch.tensor([0.5, 0.5])
    kl = 0.5 * np.log(0.5 / 0.8) + 0.5 * np.log(0.5 / 0.2)
    assert float(distill.fairness_divergence(p, t, "kl")) == pytest.approx(kl, rel=1e-5)
    assert float(distill.fairness_divergence(p, t, "l2")) == pytest.approx(0.09 + 0.09, rel=1e-5)
    assert [distill.k_at(x, "linear", 0.5) for x in (0, 0.5, 1, 2)] == [0, 0.25, 0.5, 0.5]
    assert distill.k_at(0.4, "step", 1.0) == 0 and distill.k_at(0.6, "step", 1.0) == 1


def test_fairness_loss_has_gradients_and_moves_the_batch_mean(attrclf_trained):
    labeler = load_labeler(f"attrclf:{attrclf_trained[0]}", "cpu")
    torch.manual_seed(0)
    S = build_student("separable", GanConfig(z_dim=32), 8)
    z = torch.randn(128, 32)
    with torch.no_grad():
        p0 = distill.fairness_loss(labeler, ["gender"]).batch_mean(S(z))
    # a target far from where the student starts, so the test shows movement, not luck
    target = [0.1, 0.9] if p0[0] > 0.5 else [0.9, 0.1]
    loss_fn = distill.fairness_loss(labeler, ["gender"], target=target, kind="kl")
    loss = loss_fn(S(z))
    loss.backward()
    grads = [p.grad.abs().sum().item() for p in S.parameters() if p.grad is not None]
    assert len(grads) == len(list(S.parameters())) and sum(grads) > 0
    assert all(p.grad is None for p in labeler.model.parameters())  # the classifier stays frozen
    opt = torch.optim.Adam(S.parameters(), lr=3e-3)
    for _ in range(15):
        opt.zero_grad()
        loss_fn(S(torch.randn(64, 32))).backward()
        opt.step()
    with torch.no_grad():
        p1 = loss_fn.batch_mean(S(z))
    t = torch.tensor(target)
    assert (p1 - t).abs().sum() < 0.5 * (p0 - t).abs().sum(), (p0, p1, target)
    # an intersection target has the cells of both heads
    both = distill.fairness_loss(labeler, ["gender", "tone4"])
    assert both.target.shape == (8,)
    with pytest.raises(FairrayError, match="8 non-negative values"):
        distill.fairness_loss(labeler, ["gender", "tone4"], target=[0.5, 0.5])


@pytest.mark.parametrize("arch", ["separable", "thinned"])
def test_auto_width_respects_the_parameter_budget(arch):
    tcfg = GanConfig(z_dim=32)
    w = auto_width(arch, tcfg, 20_000)
    assert count_params(build_student(arch, tcfg, w)) <= 20_000 < count_params(build_student(arch, tcfg, w + 1))


def test_thinned_student_starts_from_the_teachers_images(gan_trained):
    """Initialised from the teacher's strongest channels, the student draws images close to the teacher's for the
    same latents before any distillation step; the same architecture from scratch does not."""
    from fairray.models.generator_io import load_generator

    T, tcfg = load_generator(gan_trained)
    z = torch.randn(256, tcfg.z_dim, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    thinned = thin_from(build_student("thinned", tcfg, tcfg.width // 2), T)
    scratch = build_student("thinned", tcfg, tcfg.width // 2)
    with torch.no_grad():
        T.train(), thinned.train(), scratch.train()  # batch statistics, as generator_io.sample
        t, a, b = T(z), thinned(z), scratch(z)
    assert (a - t).abs().mean() < 0.8 * (b - t).abs().mean()  # measured 0.69x on this fixture
    with pytest.raises(ValueError, match="dcgan teacher"):
        build_student("thinned", GanConfig(model="style"), 8)


def test_distill_end_to_end_and_resume(tmp_path, ray_local, gan_trained, attrclf_trained, synth_90_10):
    cfg = DistillConfig(teacher=str(gan_trained), labeler=f"attrclf:{attrclf_trained[0]}", n_pairs=400,
                        kimg=0.64, tick_kimg=0.32, snapshot_ticks=1, batch_size=32, eval_n=200,
                        report_attributes=["gender", "tone4"], intersections=[["gender", "tone4"]])
    m = distill.run(cfg, tmp_path, RunContext(progress=False))
    assert m["param_ratio"] <= 0.25 and m["student_params"] < m["teacher_params"]
    for k in ("fairness_discrepancy_gender_200", "teacher_fairness_discrepancy_gender_200", "fd_attrclf_200",
              "teacher_fd_attrclf_200", "fd_attrclf_to_teacher_200", "student_img_per_s", "teacher_img_per_s"):
        assert k in m and np.isfinite(m[k]), k
    # the balanced student is judged against its target (held-out rows balanced over gender), the teacher against
    # the data as it is
    assert "coverage_target_200" in m and "valid_200" in m and "teacher_coverage_target_200" not in m
    shares = [k for k in m if k.startswith("share_gender_x_tone4_")]
    assert len(shares) == 8 and sum(m[k] for k in shares) == pytest.approx(1.0)
    for f in ("distill_shares.png", "distill_grids.png", "distill_metrics.json", distill.SELECTION):
        assert (tmp_path / f).is_file(), f
    report = json.loads((tmp_path / "distill_metrics.json").read_text())
    # the balanced sampler gives every predicted gender the same share of the student's draws
    train_shares = [c["training_share"] for c in report["selection"]["cells"].values()]
    assert len(train_shares) == 2 and train_shares == pytest.approx([0.5, 0.5])
    state = load_state(m["checkpoint"])
    assert state["nimg"] >= 640 and state["format"] == "fairray.student/1"
    # re-running the same (out, name) with a longer schedule continues from the checkpoint, reusing the pairs
    m2 = distill.run(cfg.model_copy(update={"kimg": 0.96}), tmp_path, RunContext(progress=False))
    state2 = load_state(m2["checkpoint"])
    assert state2["resumes"] == [state["nimg"]] and state2["nimg"] >= 960


def test_distill_cli_errors_are_one_line(tmp_path, attrclf_trained):
    res = CliRunner().invoke(app, ["distill", "--out", str(tmp_path), "--set", f"labeler=attrclf:{attrclf_trained[0]}"])
    assert res.exit_code == 2 and "set teacher=" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["distill", "--set", "lambda_fiar=1", "--dry-run"])
    assert res.exit_code == 2 and "lambda_fiar" in res.output
