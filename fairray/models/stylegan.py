"""A small style-based GAN (StyleGAN2 layout, sized for 32-128 px on a CPU): mapping network -> w, a constant 4x4
input, modulated 3x3 convs and skip toRGB outputs; D is a plain equalised-lr conv net with a minibatch-stddev
layer. Written after stylegan2-ada-pytorch `training/networks.py`, without its fused ops:

* equalised learning rate: weights are N(0, 1 / lr_mul) and scaled by lr_mul / sqrt(fan_in) at run time, so Adam's
  step is the same size for every layer (the mapping network learns 100x slower with lr_mul 0.01);
* `modulated_conv2d` is the non-fused form (scale the input by the styles, one plain conv, scale by the
  demodulation coefficients): a grouped conv per sample is slower on CPU;
* no noise inputs, no path-length regularisation, no style mixing: at 40-160 kimg they cost steps, not quality.

Why here: the seeds' latent methods need a latent space where attributes are linear; StyleGAN (Table 4) finds
1-2 mapping layers make w much more separable than z. `Generator.mapping(z)` is that space; `synthesis(w)` is
what DiGA-style edits move along.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


@dataclass
class StyleGANConfig:
    resolution: int = 32
    z_dim: int = 64
    w_dim: int = 128
    width: int = 32  # channels at 16x16 (as DCGAN's width at 32 px); doubles per halving up to max_ch
    max_ch: int = 128
    map_layers: int = 2
    map_lr_mul: float = 0.01
    mbstd_group: int = 4


def channels(cfg: StyleGANConfig, res: int) -> int:
    """DCGAN's channel plan (width at resolution / 2, doubling per halving), so the two cost about the same."""
    return max(min(cfg.width * cfg.resolution // (2 * res), cfg.max_ch), 8)


def _levels(resolution: int) -> list[int]:
    if resolution not in (32, 64, 128):
        raise ValueError(f"StyleGAN resolution must be 32, 64 or 128, got {resolution}")
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]  # 4, 8, ..., resolution


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(cin), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.act else x


class EqConv(nn.Module):
    """Equalised-lr conv; stride 2 with k=4 halves the size (DCGAN's D layer)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.stride, self.pad = 1 / math.sqrt(cin * k * k), stride, (k - stride + 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.pad)
        return F.leaky_relu(x, 0.2) * SQRT2


def normalize_2nd_moment(z: torch.Tensor) -> torch.Tensor:
    """z on the sphere of radius sqrt(dim), as StyleGAN feeds its mapping network."""
    return z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """StyleGAN2's modulated conv, non-fused: x * s, conv, * 1/sqrt(sum (w s)^2)."""
    x = x * styles.to(x.dtype)[:, :, None, None]
    out = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)
    if demodulate:
        d = (weight[None] * styles[:, None, :, None, None]).square().sum((2, 3, 4)).add(1e-8).rsqrt()
        out = out * d.to(out.dtype)[:, :, None, None]
    return out


class ModConv(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int, k: int = 3, up: bool = False, rgb: bool = False):
        super().__init__()
        self.affine = EqLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.up, self.rgb = 1 / math.sqrt(cin * k * k), up, rgb

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        styles = self.affine(w)
        if self.rgb:  # toRGB: modulation without demodulation, no nonlinearity
            return modulated_conv2d(x, self.weight * self.scale, styles, False) + self.bias[None, :, None, None]
        x = modulated_conv2d(x, self.weight * self.scale, styles, True) + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * SQRT2


class Mapping(nn.Module):
    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.map_layers
        self.net = nn.Sequential(*[EqLinear(a, b, lr_mul=cfg.map_lr_mul, act=True)
                                   for a, b in zip(dims[:-1], dims[1:], strict=True)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(normalize_2nd_moment(z))


class Generator(nn.Module):
    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        self.z_dim, self.w_dim, self.n_classes, self.resolution = cfg.z_dim, cfg.w_dim, 0, cfg.resolution
        self.map = Mapping(cfg) if cfg.map_layers > 0 else None
        if self.map is None:
            self.w_dim = cfg.z_dim
        # one modulated conv per resolution (StyleGAN2 has two): at 32 px this costs about 3x DCGAN's G
        self.const = nn.Parameter(torch.randn(channels(cfg, 4), 4, 4))
        self.convs, self.rgbs = nn.ModuleList(), nn.ModuleList()
        for res in _levels(cfg.resolution)[1:]:
            cin, cout = channels(cfg, res // 2), channels(cfg, res)
            self.convs.append(ModConv(cin, cout, self.w_dim, up=True))
            self.rgbs.append(ModConv(cout, 3, self.w_dim, k=1, rgb=True))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z -> w (the identity on z's sphere without a mapping network)."""
        return self.map(z) if self.map is not None else normalize_2nd_moment(z)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        x = self.const[None].expand(w.shape[0], -1, -1, -1)
        img = None
        for conv, rgb in zip(self.convs, self.rgbs, strict=True):
            x = conv(x, w)
            y = rgb(x, w)
            img = y if img is None else F.interpolate(img, scale_factor=2, mode="nearest") + y
        return img

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("the style-based generator is unconditional")
        return self.synthesis(self.mapping(z))


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """StyleGAN's minibatch-stddev feature: per group of `group` samples, the mean stddev over features, appended
    as one channel. D sees batch diversity, which pushes G away from collapse. Batches not divisible by the group
    use the largest group size that divides them."""
    n, c, h, w = x.shape
    g = math.gcd(group, n)
    y = x.float().reshape(g, -1, c, h, w)
    y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (n / g,)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
    return torch.cat([x, y], 1)


class Discriminator(nn.Module):
    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        # DCGAN's D with equalised lr: a stride-2 4x4 conv per halving (full 3x3 blocks cost 15x more on CPU)
        levels = _levels(cfg.resolution)[::-1]  # resolution, ..., 8, 4
        cins = [3] + [channels(cfg, r) for r in levels[1:-1]]
        self.blocks = nn.Sequential(*[EqConv(cin, channels(cfg, r // 2), 4, stride=2)
                                      for cin, r in zip(cins, levels[:-1], strict=True)])
        c4 = channels(cfg, 4)
        self.mbstd_group = cfg.mbstd_group
        self.conv4 = EqConv(c4 + (1 if cfg.mbstd_group else 0), c4, 3)
        self.fc = EqLinear(c4 * 16, c4, act=True)
        self.out = EqLinear(c4, 1)
        self.feature_dim = c4

    def last_conv(self, h: torch.Tensor) -> torch.Tensor:
        if self.mbstd_group:
            h = minibatch_stddev(h, self.mbstd_group)
        return self.conv4(h)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Spatially averaged last conv features, (N, feature_dim): for feature losses in distillation."""
        return self.last_conv(self.blocks(x)).mean((2, 3))

    def head_of(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the output of `blocks` (minibatch-stddev, the 4x4 conv, the two linear layers)."""
        return self.out(self.fc(self.last_conv(h).flatten(1))).squeeze(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("the style-based discriminator is unconditional")
        return self.head_of(self.blocks(x))
