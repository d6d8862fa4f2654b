"""DCGAN generator/discriminator at 32, 64 or 128 px (FairFace Generator recipe: z 128, bs 64, lr 2e-4).

G: linear to 4x4, then ConvTranspose(4, 2, 1) + BatchNorm + ReLU doublings, tanh out. D: Conv(4, 2, 1) +
LeakyReLU halvings to 4x4, then a linear logit; no BatchNorm in D by default (it doubles as a feature
extractor for distillation and avoids cross-sample coupling under DDP), spectral norm optional.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass
class DCGANConfig:
    resolution: int = 64
    z_dim: int = 128
    width: int = 64  # channels at the highest resolution; doubles per halving
    d_norm: Literal["none", "batch", "spectral"] = "none"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


def _levels(resolution: int) -> int:
    if resolution not in (32, 64, 128):
        raise ValueError(f"DCGAN resolution must be 32, 64 or 128, got {resolution}")
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution in this many doublings


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        n = _levels(cfg.resolution)
        chans = [cfg.width * 2 ** (n - 1 - i) for i in range(n)] + [cfg.width]  # e.g. 256,128,64 -> 64
        self.z_dim, self.c0 = cfg.z_dim, chans[0]
        self.fc = nn.Sequential(nn.Linear(cfg.z_dim, chans[0] * 16), nn.BatchNorm1d(chans[0] * 16), nn.ReLU(True))
        blocks: list[nn.Module] = []
        for i in range(n - 1):
            blocks += [nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(True)]
        blocks += [nn.ConvTranspose2d(chans[n - 1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)
        _init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.c0, 4, 4))


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        n = _levels(cfg.resolution)
        sn = spectral_norm if cfg.d_norm == "spectral" else (lambda m: m)
        layers: list[nn.Module] = []
        cin = 3
        for i in range(n):
            cout = cfg.width * 2**i
            layers.append(sn(nn.Conv2d(cin, cout, 4, 2, 1, bias=cfg.d_norm != "batch")))
            if cfg.d_norm == "batch" and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = sn(nn.Linear(cin * 16, 1))
        self.feature_dim = cin
        _init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled last-layer features (for feature-matching losses in distillation)."""
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1)).squeeze(1)


def _init(m: nn.Module) -> None:
    """DCGAN init: N(0, 0.02) weights, BatchNorm gamma N(1, 0.02)."""
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            w = mod.parametrizations.weight.original if hasattr(mod, "parametrizations") else mod.weight
            nn.init.normal_(w, 0.0, 0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(mod.weight, 1.0, 0.02)
            nn.init.zeros_(mod.bias)
