"""A small BigGAN-style G/D (Brock et al. 2019) as fairgen trains it (CA64 preset, attention off).

G: z -> SN-linear to a 4x4 map -> residual up-blocks (BatchNorm, ReLU, nearest x2, 3x3 convs; conditional BN on a
shared class embedding when n_classes > 0) -> BN, ReLU, 3x3 conv, tanh. D: residual down-blocks (avg-pool) ->
ReLU -> sum-pool -> SN-linear logit, plus the projection term <embed(y), h> when conditional. Spectral norm on
every conv/linear of G and D. Channel multipliers follow BigGAN-PyTorch's arch tables (at ch 64 and 64 px G runs
1024 -> 1024 -> 512 -> 256 -> 128, as in fairgen). Simplified on purpose: no hierarchical z, no self-attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# multipliers of `ch`, from the 4x4 map up to the output (G) or from the input down (D)
G_ARCH = {32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1)}
D_ARCH = {32: ((4, 4, 4, 4), (True, True, False, False)),
          64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
          128: ((1, 2, 4, 8, 16, 16), (True, True, True, True, True, False))}


@dataclass
class BigGANConfig:
    resolution: int = 64
    z_dim: int = 128
    ch: int = 64
    n_classes: int = 0  # > 0: conditional BN in G, projection discriminator
    shared_dim: int = 128  # class embedding fed to every conditional BN
    init: Literal["N02", "ortho"] = "N02"  # fairgen uses N(0, 0.02); BigGAN's default is orthogonal
    # training defaults of fairgen's scripts (the training config owns them; here for reference)
    loss: Literal["hinge", "bce"] = "hinge"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    d_steps: int = 4
    batch_size: int = 128
    ema_decay: float = 0.9999
    ema_start: int = 1000


class CondBatchNorm(nn.Module):
    """BatchNorm whose gain and bias come from a class embedding (plain affine BN when cond_dim == 0)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=cond_dim == 0)
        if cond_dim:
            self.to_gain = nn.Linear(cond_dim, channels, bias=False)
            self.to_bias = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x)
        if c is None:
            return h
        return h * (1 + self.to_gain(c))[:, :, None, None] + self.to_bias(c)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.bn1, self.bn2 = CondBatchNorm(cin, cond_dim), CondBatchNorm(cout, cond_dim)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.sc(F.interpolate(x, scale_factor=2))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, preact: bool):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Conv2d(cin, cout, 1) if (cin != cout or down) else None
        self.down, self.preact = down, preact

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the first block sees raw pixels: no ReLU before it (a ReLU would drop half the input range)
        h = self.conv1(F.relu(x) if self.preact else x)
        h = self._pool(self.conv2(F.relu(h)))
        if self.sc is None:
            return h + x
        # pool before the 1x1 conv on the input block (4x cheaper), after it elsewhere, as BigGAN does
        return h + (self._pool(self.sc(x)) if self.preact else self.sc(self._pool(x)))


class Generator(nn.Module):
    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        if cfg.resolution not in G_ARCH:
            raise ValueError(f"BigGAN resolution must be one of {sorted(G_ARCH)}, got {cfg.resolution}")
        chans = [cfg.ch * m for m in G_ARCH[cfg.resolution]]
        self.z_dim, self.n_classes, self.resolution = cfg.z_dim, cfg.n_classes, cfg.resolution
        cond_dim = cfg.shared_dim if cfg.n_classes else 0
        self.shared = nn.Embedding(cfg.n_classes, cond_dim) if cfg.n_classes else None
        self.c0 = chans[0]
        self.linear = nn.Linear(cfg.z_dim, chans[0] * 16)
        self.blocks = nn.ModuleList(GBlock(a, b, cond_dim) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.out_bn = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], 3, 3, 1, 1)
        _init(self, cfg.init)
        _spectral_norm(self, skip=(self.shared,))  # BigGAN leaves the shared embedding unnormalised

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = _class_input(self.shared, y)
        h = self.linear(z).view(z.shape[0], self.c0, 4, 4)
        for block in self.blocks:
            h = block(h, c)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class Discriminator(nn.Module):
    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        if cfg.resolution not in D_ARCH:
            raise ValueError(f"BigGAN resolution must be one of {sorted(D_ARCH)}, got {cfg.resolution}")
        mults, downs = D_ARCH[cfg.resolution]
        chans = [3] + [cfg.ch * m for m in mults]
        self.n_classes = cfg.n_classes
        self.blocks = nn.Sequential(*(DBlock(a, b, down, preact=i > 0)
                                      for i, (a, b, down) in enumerate(zip(chans[:-1], chans[1:], downs, strict=True))))
        self.feature_dim = chans[-1]
        self.linear = nn.Linear(chans[-1], 1)
        self.embed = nn.Embedding(cfg.n_classes, chans[-1]) if cfg.n_classes else None
        _init(self, cfg.init)
        _spectral_norm(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The sum-pooled (N, feature_dim) representation D's logit is linear in (for distillation losses)."""
        return F.relu(self.blocks(x)).sum((2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.linear(h).squeeze(1)
        if self.embed is not None:  # projection discriminator (Miyato & Koyama 2018)
            out = out + (self.embed(_labels(y, self.n_classes)) * h).sum(1)
        elif y is not None:
            raise ValueError("this discriminator is unconditional (n_classes = 0) but got labels")
        return out


def _labels(y: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    if y is None:
        raise ValueError(f"this model is conditional (n_classes = {n_classes}); pass y")
    return y.long()


def _class_input(shared: nn.Embedding | None, y: torch.Tensor | None) -> torch.Tensor | None:
    if shared is None:
        if y is not None:
            raise ValueError("this generator is unconditional (n_classes = 0) but got labels")
        return None
    return shared(_labels(y, shared.num_embeddings))


def _init(m: nn.Module, how: str) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d | nn.Linear | nn.Embedding):
            if how == "ortho":
                nn.init.orthogonal_(mod.weight)
            elif how == "N02":
                nn.init.normal_(mod.weight, 0.0, 0.02)
            else:
                raise ValueError(f"unknown init {how!r} (allowed: N02, ortho)")
            if getattr(mod, "bias", None) is not None:
                nn.init.zeros_(mod.bias)


def _spectral_norm(m: nn.Module, skip: tuple = ()) -> None:
    """Spectral norm on every conv/linear/embedding, applied after init so the power iteration starts right."""
    for mod in list(m.modules()):
        if isinstance(mod, nn.Conv2d | nn.Linear | nn.Embedding) and not any(mod is s for s in skip):
            spectral_norm(mod)
