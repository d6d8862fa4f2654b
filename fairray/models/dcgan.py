"""DCGAN generator/discriminator at 32, 64 or 128 px (FairFace Generator recipe: z 128, width 64, lr 2e-4).

G: z as a 1x1 map -> ConvTranspose(4, 1, 0) to 4x4, then ConvTranspose(4, 2, 1) + BatchNorm + ReLU doublings and a
tanh output. D: Conv(4, 2, 1) + LeakyReLU(0.2) halvings to 4x4, then one logit. At width 64 and 64 px these are the
FairFace Generator's networks layer for layer (3,806,080 and, with d_norm="batch", 2,765,568 parameters). D has no
BatchNorm by default: it doubles as a feature extractor for distillation, and batch statistics couple the real
and fake halves of a step (and DDP ranks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from fairray.models.stylegan import minibatch_stddev


@dataclass
class DCGANConfig:
    resolution: int = 64
    z_dim: int = 128
    width: int = 64  # channels at the highest resolution; doubles per halving
    d_norm: Literal["none", "batch", "spectral"] = "none"
    mbstd_group: int = 0  # minibatch-stddev channel before D's head (StyleGAN; 0: none)
    pack: int = 1  # D sees this many images stacked on the channel axis (PacGAN) and gives one logit per pack
    # training defaults of the FairFace Generator (the training config owns them; here for reference)
    loss: Literal["bce", "hinge"] = "bce"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 64


def _levels(resolution: int) -> int:
    if resolution not in (32, 64, 128):
        raise ValueError(f"DCGAN resolution must be 32, 64 or 128, got {resolution}")
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution in this many doublings


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        n = _levels(cfg.resolution)
        chans = [cfg.width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 512, 256, 128, 64 at 64 px
        self.z_dim, self.n_classes, self.resolution = cfg.z_dim, 0, cfg.resolution
        layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.z_dim, chans[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(chans[0]), nn.ReLU(True)]
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("DCGAN is unconditional; use BigGAN with n_classes > 0 for labels")
        return self.net(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        n = _levels(cfg.resolution)
        layers: list[nn.Module] = []
        cin = 3 * cfg.pack
        self.pack = cfg.pack
        for i in range(n):
            cout = cfg.width * 2**i
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=cfg.d_norm != "batch"))
            if cfg.d_norm == "batch" and i > 0:  # DCGAN: never normalise D's input layer
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.mbstd_group = cfg.mbstd_group
        # = FairFace's Conv(512 -> 1, 4) on the 4x4 map (plus the stddev channel when mbstd_group > 0)
        self.head = nn.Linear((cin + (1 if cfg.mbstd_group else 0)) * 16, 1, bias=False)
        self.feature_dim = cin
        _init(self)
        if cfg.d_norm == "spectral":  # after init, so the power iteration starts from the final weights
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.Linear):
                    spectral_norm(m)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Spatially averaged last conv features, (N / pack, feature_dim): for feature losses in distillation."""
        return self.body(self.packed(x)).mean((2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("DCGAN is unconditional; use BigGAN with n_classes > 0 for labels")
        return self.head_of(self.body(self.packed(x)))

    def packed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N / pack, pack * C, H, W): consecutive images side by side on the channel axis."""
        if self.pack == 1:
            return x
        n, c, h, w = x.shape
        if n % self.pack:
            raise ValueError(f"D packs {self.pack} images at a time; a batch of {n} does not divide")
        return x.reshape(n // self.pack, self.pack * c, h, w)

    def head_of(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the last conv features (the minibatch-stddev channel, then the linear head)."""
        if self.mbstd_group:
            h = minibatch_stddev(h, self.mbstd_group)
        return self.head(h.flatten(1)).squeeze(1)


def _init(m: nn.Module) -> None:
    """DCGAN init: N(0, 0.02) weights, BatchNorm gamma N(1, 0.02), zero biases."""
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(mod.weight, 0.0, 0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.normal_(mod.weight, 1.0, 0.02)
            nn.init.zeros_(mod.bias)
