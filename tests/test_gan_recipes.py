"""The recipe pieces of the generator study: style-based G/D, minibatch-stddev, lazy R1, DiffAugment, configs."""

import math

import numpy as np
import pytest
import torch

from fairray.config import GanConfig
from fairray.models import stylegan
from fairray.models.generator_io import build_models, latents_to_w
from fairray.train.augment import diff_augment
from fairray.train.gan import GanLoss, d_adam, train_local


@pytest.mark.parametrize("res", [32, 64])
def test_style_generator_and_discriminator_shapes(res):
    cfg = GanConfig(model="style", resolution=res, width=16, z_dim=32, w_dim=48, mbstd_group=4)
    G, D = build_models(cfg)
    z = torch.randn(8, 32)
    x = G(z)
    assert x.shape == (8, 3, res, res) and torch.isfinite(x).all()
    assert G.mapping(z).shape == (8, 48)
    assert D(x).shape == (8,) and D.features(x).shape == (8, D.feature_dim)


def test_w_space_is_the_mapping_for_style_and_z_otherwise():
    z = np.random.default_rng(0).standard_normal((10, 32)).astype(np.float32)
    style, _ = build_models(GanConfig(model="style", z_dim=32, w_dim=24, width=8))
    dcgan, _ = build_models(GanConfig(z_dim=32, width=8))
    assert latents_to_w(style, z).shape == (10, 24)
    assert latents_to_w(dcgan, z) is z


def test_equalised_lr_keeps_unit_scale_activations():
    layer = stylegan.EqLinear(512, 512)
    x = torch.randn(4096, 512)
    assert layer(x).std().item() == pytest.approx(1.0, rel=0.1)  # weights N(0,1) scaled by 1/sqrt(fan_in) at run time


def test_minibatch_stddev_sees_batch_diversity():
    same = torch.ones(8, 4, 4, 4)
    varied = torch.randn(8, 4, 4, 4)
    a, b = stylegan.minibatch_stddev(same, 4), stylegan.minibatch_stddev(varied, 4)
    assert a.shape == (8, 5, 4, 4) and a[:, 4].abs().max() < 1e-3
    assert b[:, 4].mean() > 0.5
    assert stylegan.minibatch_stddev(torch.randn(6, 4, 4, 4), 4).shape == (6, 5, 4, 4)  # group 2 divides 6


def test_dcgan_discriminator_with_minibatch_stddev():
    _, D = build_models(GanConfig(width=8, mbstd_group=4))
    assert D(torch.randn(8, 3, 32, 32)).shape == (8,)
    with pytest.raises(ValueError, match="mbstd_group"):
        GanConfig(model="biggan", mbstd_group=4)


def test_packed_discriminator_gives_one_logit_per_pack_of_consecutive_images():
    _, D = build_models(GanConfig(width=8, d_pack=2, mbstd_group=0))  # mbstd would mix the packs
    x = torch.randn(8, 3, 32, 32)
    assert D(x).shape == (4,) and D.features(x).shape == (4, D.feature_dim)
    assert D.body[0].in_channels == 6
    swapped = x.clone()
    swapped[[0, 1]] = x[[1, 0]]  # the order inside a pack matters, the other packs are untouched
    assert torch.equal(D(swapped)[1:], D(x)[1:]) and not torch.equal(D(swapped)[0], D(x)[0])
    with pytest.raises(ValueError, match="does not divide"):
        D(torch.randn(7, 3, 32, 32))
    for bad in ({"d_pack": 3}, {"d_pack": 2, "reweight": "weight"}, {"d_pack": 2, "model": "style"}):
        with pytest.raises(ValueError, match="d_pack"):
            GanConfig(**bad)


def test_r1_auto_is_the_stylegan2_ada_heuristic_and_lazy_adam_is_rescaled():
    cfg = GanConfig(resolution=32, batch_size=32, r1_gamma="auto", r1_interval=16, lr_d=1e-3, betas=(0.0, 0.99))
    assert cfg.r1() == pytest.approx(0.0064)
    opt = d_adam(cfg, [torch.nn.Parameter(torch.zeros(1))])
    ratio = 16 / 17
    assert opt.defaults["lr"] == pytest.approx(1e-3 * ratio)
    assert opt.defaults["betas"][1] == pytest.approx(0.99**ratio)
    assert d_adam(GanConfig(lr_d=1e-3, r1_gamma=0.0), [torch.nn.Parameter(torch.zeros(1))]).defaults["lr"] == 1e-3


def test_r1_phase_is_the_gradient_penalty_on_real_images_times_the_interval():
    torch.manual_seed(0)
    G, D = build_models(GanConfig(width=8, z_dim=16))
    real = torch.randn(4, 3, 32, 32)
    loss = GanLoss(G, D, "bce", r1_gamma=0.5, r1_interval=16)
    value, stats = loss.accumulate_gradients("Dreg", {"real": real})
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    penalty = g.square().sum((1, 2, 3)).mean()
    assert stats["r1_penalty"].item() == pytest.approx(penalty.item(), rel=1e-5)
    assert value.item() == pytest.approx(penalty.item() * 0.5 / 2 * 16, rel=1e-5)
    value.backward()  # differentiable w.r.t. D's weights (create_graph)
    assert all(p.grad is not None for p in D.parameters())


def test_diff_augment_translation_and_cutout():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32) + 0.5  # no zeros, so zeros are what the augmentations wrote
    t = diff_augment(x, ["translation"])
    c = diff_augment(x, ["cutout"])
    assert t.shape == c.shape == x.shape
    zero_frac = (c == 0).float().mean().item()
    assert 0.15 < zero_frac <= 0.25 + 1e-6  # a 16x16 square of 32x32, clipped at the borders
    shifted = (t != x).flatten(1).any(1).float().mean().item()
    assert shifted > 0.5  # most images moved (a shift of (0, 0) is one draw in 81)
    assert diff_augment(x, []) is x
    with pytest.raises(ValueError, match="color"):
        diff_augment(x, ["color"])


def test_every_recipe_trains_in_process_with_finite_losses():
    images = (np.random.default_rng(0).random((64, 32, 32, 3)) * 255).astype(np.uint8)
    for kw in ({}, {"r1_gamma": "auto", "mbstd_group": 4, "loss": "bce", "augment": ["translation", "cutout"]},
               {"model": "style", "lr_g": 0.0025, "lr_d": 0.0025, "r1_gamma": 0.01, "r1_interval": 2},
               {"r1_gamma": "auto", "r1_interval": 2, "d_pack": 4}):
        cfg = GanConfig(width=8, z_dim=16, batch_size=16, kimg=0.16, tick_kimg=0.08, **kw)
        seen: list[int] = []
        ema = train_local(cfg, images, on_tick=lambda clock, e, seen=seen: seen.append(clock.nimg), quiet=True)
        assert seen == [80, 160]
        assert all(math.isfinite(p.sum().item()) for p in ema.module.parameters())


@pytest.mark.parametrize("model", ["dcgan", "style", "biggan"])
def test_distillation_feature_discriminator_gives_ds_own_logits(model):
    from fairray.models.student import FeatureDiscriminator

    _, D = build_models(GanConfig(model=model, width=8, z_dim=16))
    D.eval()  # BigGAN's spectral norm runs a power iteration per call in train mode
    x = torch.randn(8, 3, 32, 32)
    logits, feats = FeatureDiscriminator(D)(x)
    assert torch.allclose(logits, D(x), atol=1e-5) and len(feats) >= 3
