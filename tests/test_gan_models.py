"""GAN building blocks (no Ray): DCGAN and BigGAN shapes, parameter counts, a tiny overfit, EMA, losses."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from fairray.models import biggan
from fairray.models.ema import Ema, ema_beta
from fairray.models.gan_factory import build_gan, count_params, gan_config
from fairray.train.losses import d_bce_loss, d_hinge_loss, g_bce_loss, g_hinge_loss


def _check(G, D, res, y=None, n=3):
    x = G(torch.randn(n, G.z_dim), y)
    assert x.shape == (n, 3, res, res) and x.min() >= -1 and x.max() <= 1
    assert D(x, y).shape == (n,) and D.features(x).shape == (n, D.feature_dim)
    return x


@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("d_norm", ["none", "batch", "spectral"])
def test_dcgan_shapes_and_range(res, d_norm):
    G, D = build_gan(gan_config("dcgan", resolution=res, width=8, z_dim=16, d_norm=d_norm))
    _check(G, D, res)
    with pytest.raises(ValueError, match="unconditional"):
        G(torch.randn(2, 16), torch.zeros(2, dtype=torch.long))


def test_dcgan_defaults_are_the_fairface_generator():
    # 64 px, z 128, width 64: the FairFace Generator's G and (BatchNorm) D, parameter for parameter
    G, D = build_gan(gan_config("dcgan", d_norm="batch"))
    assert (G.z_dim, G.resolution) == (128, 64)
    assert count_params(G) == 3_806_080 and count_params(D) == 2_765_568
    init_std = G.net[0].weight.std().item()
    assert 0.018 < init_std < 0.022  # N(0, 0.02)


@pytest.mark.parametrize("res", [32, 64])
def test_biggan_shapes_and_range(res):
    G, D = build_gan(gan_config("biggan", resolution=res, ch=2, z_dim=16))
    _check(G, D, res)


def test_biggan_128_and_its_channel_plan():
    G, D = build_gan(gan_config("biggan", resolution=128, ch=1, z_dim=8, init="ortho"))
    _check(G, D, 128, n=2)
    assert [b.conv1.out_channels for b in G.blocks] == list(biggan.G_ARCH[128][1:])
    # fairgen's CA64: at ch 64 and 64 px, G runs 1024 -> 1024 -> 512 -> 256 -> 128
    assert [64 * m for m in biggan.G_ARCH[64]] == [1024, 1024, 512, 256, 128]


def test_biggan_is_spectrally_normalised_everywhere():
    G, D = build_gan(gan_config("biggan", resolution=32, ch=2, z_dim=8, n_classes=3))
    for net in (G, D):
        layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding)]
        unnormalised = [m for m in layers if not parametrize.is_parametrized(m, "weight")]
        assert unnormalised == ([G.shared] if net is G else [])


def test_conditional_biggan_uses_y():
    torch.manual_seed(0)
    G, D = build_gan(gan_config("biggan", resolution=32, ch=2, z_dim=16, n_classes=4))
    G.eval()  # running stats: the image depends on its own label only
    z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 3])
    x = _check(G, D, 32, y=y, n=4)
    assert not torch.allclose(G(z, y), G(z, (y + 1) % 4))
    assert not torch.allclose(D(x, y), D(x, (y + 1) % 4))  # the projection term
    with pytest.raises(ValueError, match="conditional"):
        G(z)
    with pytest.raises(ValueError, match="conditional"):
        D(x)


def test_factory_rejects_unknown_models_and_keys():
    with pytest.raises(ValueError, match="available"):
        gan_config("stylegan")
    with pytest.raises(ValueError, match="widht"):
        gan_config("dcgan", widht=8)
    with pytest.raises(ValueError, match="resolution"):
        build_gan(gan_config("biggan", resolution=48))


@pytest.fixture
def one_thread():
    """Steady timing on a busy 2-core box (2-thread OpenMP stalls under contention: 1 s became 16-38 s);
    the losses are the same bit for bit with 1 or 2 threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_dcgan_overfits_a_small_batch(one_thread):
    """Width 16, 64 fixed images, the FairFace recipe (BCE, Adam 2e-4, betas 0.5/0.999): D learns to tell the
    batch from G's samples while G chases it, so D's loss falls and G's samples move toward the batch."""
    torch.manual_seed(0)
    G, D = build_gan(gan_config("dcgan", resolution=32, width=16, z_dim=32))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    colors = torch.rand(64, 3, 1, 1) * 2 - 1
    real = (colors * 0.6 + 0.4 * ((xx**2 + yy**2) < 0.5).float()).clamp(-1, 1)  # a disc on a plain colour
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    d_losses, gap = [], []
    for _ in range(30):
        fake = G(torch.randn(64, 32))
        d_loss = d_bce_loss(D(real), D(fake.detach()))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = g_bce_loss(D(fake))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        d_losses.append(d_loss.item())
        gap.append((fake.detach().mean(0) - real.mean(0)).abs().mean().item())
    assert sum(d_losses[-5:]) / 5 < sum(d_losses[:5]) / 5 - 0.02  # ~1.385 -> 1.27-1.35 over seeds 0-3
    assert sum(gap[-5:]) < 0.8 * sum(gap[:5])  # per-pixel mean gap ~0.18 -> ~0.10


def test_ema_half_life_in_images_tracks_weights_and_copies_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = Ema(net, ema_kimg=0.032)  # half-life 32 images = 2 steps of 16: beta = 0.5 ** 0.5 per step
    beta = 0.5 ** 0.5
    expected = ema.module[0].weight.detach().clone()
    for step in range(5):
        with torch.no_grad():
            net[0].weight.add_(1.0)
        net(torch.randn(8, 2) + step)  # moves BatchNorm's running stats
        ema.update(net, nimg=16 * step, batch=16)
        expected = beta * expected + (1 - beta) * net[0].weight.detach()
        assert torch.allclose(ema.module[0].weight, expected)
        assert torch.equal(ema.module[1].running_mean, net[1].running_mean)  # copied, not averaged


def test_ema_rampup_limits_the_half_life_early_in_training():
    assert ema_beta(64, 0, 10.0, 0.05) == 0.0  # at the start the EMA is a copy
    assert ema_beta(64, 1000, 10.0, 0.05) == pytest.approx(0.5 ** (64 / 50))  # 5% of 1 kimg seen
    assert ema_beta(64, 10**7, 10.0, 0.05) == pytest.approx(0.5 ** (64 / 10_000))  # capped by ema_kimg
    assert ema_beta(64, 1000, 10.0, None) == pytest.approx(0.5 ** (64 / 10_000))
    net = nn.Linear(2, 2)
    ema = Ema(net, ema_kimg=10.0, rampup=0.05)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, nimg=0, batch=64)
    assert torch.equal(ema.module.weight, net.weight)


def test_ema_of_a_spectrally_normalised_biggan():
    G, _ = build_gan(gan_config("biggan", resolution=32, ch=2, z_dim=8))
    ema = Ema(G, ema_kimg=1.0)
    G(torch.randn(4, 8))  # a train-mode forward: spectral-norm power iteration + BN stats move
    ema.update(G, nimg=4, batch=4)
    ema.module.eval()
    assert ema.module(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    assert set(ema.state_dict()) == {f"module.{k}" for k in G.state_dict()}  # what generator_io.ema_weights reads


@pytest.mark.parametrize("d_loss", [d_hinge_loss, d_bce_loss])
def test_weights_touch_only_the_real_term(d_loss):
    torch.manual_seed(0)
    real, fake = torch.randn(8), torch.randn(8)
    w = torch.rand(8) * 3
    assert torch.allclose(d_loss(real, fake, torch.ones(8)), d_loss(real, fake))
    # changing the fakes shifts weighted and unweighted losses by the same amount
    fake2 = fake + torch.randn(8)
    assert torch.allclose(d_loss(real, fake2, w) - d_loss(real, fake, w), d_loss(real, fake2) - d_loss(real, fake))
    # zero weight on a real sample removes it from the loss entirely
    w0 = torch.ones(8)
    w0[0] = 0
    real2 = real.clone()
    real2[0] = -50.0
    assert torch.allclose(d_loss(real, fake, w0), d_loss(real2, fake, w0))


def test_hinge_values_and_gradients():
    real = torch.tensor([2.0, 0.0], requires_grad=True)
    fake = torch.tensor([-2.0, 0.5], requires_grad=True)
    w = torch.tensor([1.0, 3.0])
    loss = d_hinge_loss(real, fake, w)  # mean(1*0, 3*1) + mean(0, 1.5)
    assert loss.item() == pytest.approx(1.5 + 0.75)
    loss.backward()
    assert real.grad.tolist() == [0.0, -1.5] and fake.grad.tolist() == [0.0, 0.5]
    assert g_hinge_loss(torch.tensor([1.0, 3.0])).item() == -2.0
    assert g_bce_loss(torch.zeros(3)).item() == pytest.approx(0.6931, abs=1e-4)
    with pytest.raises(ValueError, match="shape"):
        d_hinge_loss(real, fake, torch.ones(2, 1))
