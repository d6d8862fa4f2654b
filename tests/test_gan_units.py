"""GAN building blocks without Ray: models, losses, density ratios, Frechet distance, atomic checkpoints."""

import numpy as np
import pytest
import torch

from fairray.debias.density_ratio import clip_weights, density_ratio, fit_isotonic, flatten
from fairray.labelers.base import Head
from fairray.metrics.calibration import calibrated_probs, ece, fit_temperature
from fairray.metrics.generated import fairness_metrics
from fairray.metrics.quality import feature_stats, frechet_distance
from fairray.models.gan_factory import build_gan, count_params, gan_config
from fairray.train.checkpoint import is_complete, load_state, newest_complete, save_state
from fairray.train.losses import d_bce_loss, d_hinge_loss, g_hinge_loss


@pytest.mark.parametrize("res", [32, 64, 128])
def test_dcgan_shapes(res):
    G, D = build_gan(gan_config("dcgan", resolution=res, width=8, z_dim=16))
    x = G(torch.randn(4, 16))
    assert x.shape == (4, 3, res, res) and x.min() >= -1 and x.max() <= 1
    assert D(x).shape == (4,) and D.features(x).shape == (4, D.feature_dim)
    assert count_params(G) > 0


def test_dcgan_d_learns_to_separate():
    torch.manual_seed(0)
    G, D = build_gan(gan_config("dcgan", resolution=32, width=8, z_dim=16))
    opt = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9))
    real = torch.rand(64, 3, 32, 32) * 2 - 1
    losses = []
    for _ in range(30):
        loss = d_hinge_loss(D(real), D(G(torch.randn(64, 16)).detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_weights_touch_only_the_real_term():
    real, fake = torch.randn(8, requires_grad=True), torch.randn(8, requires_grad=True)
    ones = torch.ones(8)
    for fn in (d_hinge_loss, d_bce_loss):
        assert torch.allclose(fn(real, fake), fn(real, fake, ones))
        w = torch.rand(8)
        diff = fn(real, fake, w) - fn(real, fake)
        assert torch.allclose(diff, fn(real, torch.full((8,), -1e6), w) - fn(real, torch.full((8,), -1e6)))
    d_hinge_loss(real, fake, torch.rand(8)).backward()
    assert real.grad is not None and fake.grad is not None
    assert g_hinge_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_density_ratio_recovers_the_true_ratio():
    # biased: 90/10, reference: 50/50; the Bayes classifier on balanced batches gives p = r / (1 + r)
    true = {0: 0.5 / 0.9, 1: 0.5 / 0.1}
    p = np.array([true[0] / (1 + true[0]), true[1] / (1 + true[1])])
    assert np.allclose(density_ratio(p), [true[0], true[1]])
    assert np.allclose(density_ratio(p, gamma=2.0), [2 * true[0], 2 * true[1]])
    w = np.array([1.0, 2.0, 100.0] + [1.0] * 97)
    assert clip_weights(w, 0.98).max() < 100 and np.allclose(flatten(w, 0.0), 1)


def test_calibration_repairs_an_overconfident_classifier():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = np.stack([np.zeros_like(true_logit), 3 * true_logit], 1)  # 3x overconfident
    raw = calibrated_probs(logits)
    t = fit_temperature(logits, y)
    assert 2.5 < t < 3.5
    assert ece(calibrated_probs(logits, t), y) < ece(raw, y) / 3
    iso = fit_isotonic(raw[:, 1], y)
    p1 = iso.predict(raw[:, 1])
    assert ece(np.stack([1 - p1, p1], 1), y) < ece(raw, y) / 3


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 4))
    mu, s = feature_stats(a)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6
    shift = np.array([1.0, 2.0, 0, 0])
    d = frechet_distance(mu, s, mu + shift, s)
    assert abs(d - 5.0) < 1e-6 and abs(d - frechet_distance(mu + shift, s, mu, s)) < 1e-9


def test_fairness_metrics_count_every_class():
    head = Head("gender", ("male", "female"), (0, 1))
    m = fairness_metrics(np.zeros(1000, int), head)  # class 1 never predicted: still counted
    assert m["fairness_discrepancy_gender_1k"] == pytest.approx(np.sqrt(0.5))
    m = fairness_metrics(np.array([0, 1] * 500), head, repeats=2)
    assert m["fairness_discrepancy_gender_1k"] == 0 and m["share_gender_1_1k_lo"] < 0.5 < m["share_gender_1_1k_hi"]


def test_interrupted_checkpoint_is_never_loaded(tmp_path):
    good = save_state({"step": 1}, tmp_path / "checkpoint_000001")
    bad = save_state({"step": 2}, tmp_path / "checkpoint_000002")
    (bad / "state.pt").write_bytes((bad / "state.pt").read_bytes()[:50])  # died mid-write
    torn = tmp_path / "checkpoint_000003"
    torn.mkdir()
    (torn / "state.pt").write_bytes(b"partial")  # no marker at all
    assert is_complete(good) and not is_complete(bad) and not is_complete(torn)
    assert load_state(bad) is None and load_state(torn) is None
    assert newest_complete(tmp_path) == good and load_state(good)["step"] == 1


@pytest.mark.parametrize("model", ["dcgan", "biggan"])
def test_training_config_builds_either_model(model):
    from fairray.config import GanConfig
    from fairray.models.generator_io import build_models

    cfg = GanConfig(model=model, width=8, z_dim=16, resolution=32)
    G, D = build_models(cfg)
    x = G(torch.randn(2, 16))
    assert x.shape == (2, 3, 32, 32) and D(x).shape == (2,)


def test_autocast_precision_resolves_per_device():
    from fairray.machine import cpu_has_native_bf16
    from fairray.ray_env import autocast_kwargs

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_kwargs(cpu, "fp32")["enabled"] is False
    assert autocast_kwargs(cpu, "bf16") == {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": True}
    assert autocast_kwargs(cuda, "auto")["enabled"] is True  # bf16 on every CUDA device
    assert autocast_kwargs(cpu, "auto")["enabled"] is cpu_has_native_bf16()  # emulated bf16 is slower than fp32
