"""GAN losses; per-sample weights multiply D's loss on real images only (fairgen), never G's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _weighted_mean(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if w is None else (w * x).mean()


def d_hinge_loss(real: torch.Tensor, fake: torch.Tensor, real_weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i w_i relu(1 - D(x_i)) + mean_j relu(1 + D(G(z_j)))."""
    return _weighted_mean(F.relu(1 - real), real_weights) + F.relu(1 + fake).mean()


def g_hinge_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def d_bce_loss(real: torch.Tensor, fake: torch.Tensor, real_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Non-saturating DCGAN loss with the same real-only weighting."""
    return _weighted_mean(F.softplus(-real), real_weights) + F.softplus(fake).mean()


def g_bce_loss(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()
