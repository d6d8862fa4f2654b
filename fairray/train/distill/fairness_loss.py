"""fair-distill's fairness term, made differentiable, and the schedule that fades the pixel term.

fair-distill's Shannon-diversity term went through argmax and a PIL round-trip, so it passed no gradient at all.
Here the frozen attrclf scores the student's images in [0, 1], its temperature-scaled softmax is averaged over the
batch (per-sample outer products for an intersection), and KL(target || batch mean) (or squared L2) is
back-propagated through the classifier into the student.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairray.errors import FairrayError


class FairnessLoss(nn.Module):
    """KL(target || p_bar) or ||p_bar - target||^2, p_bar = the batch mean of a frozen classifier's soft prediction.

    For several heads the per-sample prediction over the intersection is the outer product of the heads' softmaxes
    (row-major cells, last head fastest). The classifier stays in eval mode (running BatchNorm statistics, so a
    sample's prediction does not depend on its batch) and has no parameter gradients; gradients reach the input."""

    def __init__(self, classifier: nn.Module, heads: list[str], target: torch.Tensor, resolution: int,
                 temperature: dict[str, float] | None = None, kind: str = "kl"):
        super().__init__()
        if kind not in ("kl", "l2"):
            raise ValueError(f"fairness loss kind must be kl or l2, got {kind!r}")
        self.classifier = classifier.eval().requires_grad_(False)
        self.heads, self.kind, self.resolution = list(heads), kind, resolution
        self.temperature = {h: float((temperature or {}).get(h, 1.0)) for h in heads}
        self.register_buffer("target", target.float() / target.float().sum())

    def train(self, mode: bool = True) -> FairnessLoss:  # the classifier is frozen: never leave eval mode
        super().train(mode)
        self.classifier.eval()
        return self

    def batch_mean(self, x: torch.Tensor) -> torch.Tensor:
        """x: generator output in [-1, 1], NCHW -> (cells,) mean predicted distribution over the batch."""
        x01 = (x.float() + 1) / 2  # the classifier was trained on [0, 1] images
        if x01.shape[-1] != self.resolution:
            x01 = F.interpolate(x01, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                                align_corners=False)
        logits = self.classifier(x01)
        joint = None
        for h in self.heads:
            p = torch.softmax(logits[h].float() / self.temperature[h], 1)
            joint = p if joint is None else (joint[:, :, None] * p[:, None, :]).flatten(1)
        return joint.mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fairness_divergence(self.batch_mean(x), self.target, self.kind)


def fairness_divergence(p: torch.Tensor, target: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    if kind == "l2":
        return ((p - target) ** 2).sum()
    t = target[target > 0]
    return (t * (t.log() - p[target > 0].clamp_min(1e-8).log())).sum()


def cell_count(labeler, heads: list[str]) -> int:
    by_name = {h.name: h for h in labeler.heads}
    return int(np.prod([len(by_name[h].classes) for h in heads]))


def fairness_loss(labeler, heads: list[str], target: list[float] | None = None, kind: str = "kl",
                  device: str | torch.device = "cpu") -> FairnessLoss:
    """L_fair on an `attrclf` labeler's torch model (other labelers expose no differentiable model)."""
    if not hasattr(labeler, "model") or not hasattr(labeler, "temperature"):
        raise FairrayError(f"L_fair needs an attrclf labeler (a differentiable torch model), got {labeler.name!r}")
    k = cell_count(labeler, heads)
    t = torch.full((k,), 1.0 / k) if target is None else torch.tensor(target, dtype=torch.float32)
    if len(t) != k or (t < 0).any() or t.sum() <= 0:
        raise FairrayError(f"fair_target needs {k} non-negative values (cells of {' x '.join(heads)}), got {target}")
    return FairnessLoss(labeler.model, heads, t, labeler.resolution, labeler.temperature, kind).to(device)


def ramp_at(progress: float, warmup: float) -> float:
    """Weight of the adversarial and fairness terms: 0 for the first `warmup` share of training, then linear to 1
    over the next `warmup` share (1 throughout when warmup is 0)."""
    if warmup <= 0:
        return 1.0
    return float(min(max((progress - warmup) / warmup, 0.0), 1.0))


def k_at(progress: float, schedule: str, k_max: float) -> float:
    """k in [0, k_max]: 0 at the start of training, k_max at the end (the pixel term's weight is 1 - k)."""
    p = min(max(progress, 0.0), 1.0)
    s = {"linear": p, "cosine": (1 - math.cos(math.pi * p)) / 2, "step": float(p >= 0.5), "constant": 1.0}[schedule]
    return k_max * s

