"""GAN losses on raw logits. Per-sample importance weights multiply D's loss on *real* images only (fairgen):
they reweight which part of the data distribution D is asked to match; fakes and G's loss stay unweighted.

Weights are used as given (fairgen does not self-normalise them); `fairray.debias.density_ratio.normalize_batch`
rescales a batch to mean 1 when wanted. `real_weights=None` means all ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _weighted_mean(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    if w is None:
        return x.mean()
    if w.shape != x.shape:
        raise ValueError(f"real_weights shape {tuple(w.shape)} does not match logits {tuple(x.shape)}")
    return (w.to(x.dtype) * x).mean()


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                 real_weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i w_i relu(1 - D(x_i)) + mean_j relu(1 + D(G(z_j)))."""
    return _weighted_mean(F.relu(1 - real_logits), real_weights) + F.relu(1 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def d_bce_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
               real_weights: torch.Tensor | None = None) -> torch.Tensor:
    """DCGAN's BCE, -w_i log sigmoid(D(x_i)) - log(1 - sigmoid(D(G(z_j)))), written with softplus (stable)."""
    return _weighted_mean(F.softplus(-real_logits), real_weights) + F.softplus(fake_logits).mean()


def g_bce_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: -log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits).mean()
