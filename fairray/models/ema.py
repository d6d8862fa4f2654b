"""EMA of a generator's weights with StyleGAN2-ADA's half-life schedule.

The averaging horizon is given in images, not steps: after a step of `batch` images the EMA keeps
beta = 0.5 ** (batch / ema_nimg) of itself, so `ema_kimg` is the half-life in thousands of images whatever the
batch size or world size. With `rampup`, the horizon is at most `rampup` x the images seen so far: a short run's
EMA follows its recent weights instead of holding on to its first ones (stylegan2-ada-pytorch, training_loop.py).
Buffers (BatchNorm running statistics, spectral-norm u/v) are copied, not averaged, so the EMA generator's
normalisation matches the live one's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(batch: int, nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """The fraction of the old EMA kept after a step of `batch` images, `nimg` images into training."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


class Ema(nn.Module):
    """An averaged copy of `model` (`.module`); call `.update(model, nimg, batch)` after each optimizer step."""

    def __init__(self, model: nn.Module, ema_kimg: float, rampup: float | None = None):
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.ema_kimg, self.rampup = ema_kimg, rampup

    @torch.no_grad()
    def update(self, model: nn.Module, nimg: int, batch: int) -> None:
        beta = ema_beta(batch, nimg, self.ema_kimg, self.rampup)
        for p_ema, p in zip(self.module.parameters(), model.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
