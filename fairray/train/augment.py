"""DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans `DiffAugment_pytorch.py`): differentiable
augmentations applied to every image D sees, real and fake alike, so D cannot memorise a small training set.
Only `translation` and `cutout`: the colour policy shifts brightness and saturation, and skin tone is an
attribute fairray measures. Random draws come from torch's global RNG (seeded per rank by the loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout")


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio x its size (zero padding)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return pad.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ratio x the image size per image, at a random place."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


def diff_augment(x: torch.Tensor, policy: list[str] | tuple[str, ...]) -> torch.Tensor:
    """x with every policy in order (an empty policy returns x itself)."""
    for p in policy:
        if p not in POLICIES:
            raise ValueError(f"unknown DiffAugment policy {p!r}; available: {', '.join(POLICIES)}")
        x = translation(x) if p == "translation" else cutout(x)
    return x
