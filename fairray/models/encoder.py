"""An encoder into a generator's latent space (DiGA's inversion step, small and CPU-friendly).

Trained on generated pairs (G(z), z): latent MSE plus an image-reconstruction term through the frozen G, so the
code it predicts for a real image renders close to that image. `invert` then refines each code by a few Adam
steps on the pixel error (the "refined by optimisation" half of GAN inversion), batched.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class LatentEncoder(nn.Module):
    """x in [-1, 1], NCHW (32/64/128 px) -> z (z_dim)."""

    def __init__(self, z_dim: int, resolution: int = 32, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c, r = width, resolution // 2
        while r > 4:
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, True)]
            c, r = c * 2, r // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c * r * r, z_dim)
        self.z_dim, self.resolution = z_dim, resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def to_unit(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (the generator's output range)."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)


def train_encoder(G: nn.Module, z_dim: int, resolution: int, width: int = 32, kimg: float = 60.0, lr: float = 1e-3,
                  batch: int = 128, pixel_weight: float = 1.0, seed: int = 0, log=print) -> LatentEncoder:
    """Fit E on fresh (G(z), z) pairs each step; G must be frozen (eval, BatchNorm statistics fixed)."""
    torch.manual_seed(seed)
    dev = next(G.parameters()).device
    enc = LatentEncoder(z_dim, resolution, width).to(dev)
    for p in G.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(enc.parameters(), lr=lr, betas=(0.5, 0.999))
    steps = max(1, int(kimg * 1000) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        z = torch.randn(batch, z_dim, generator=gen).to(dev)
        with torch.no_grad():
            x = G(z)
        z_hat = enc(x)
        loss = (z_hat - z).pow(2).mean()
        if pixel_weight > 0:
            loss = loss + pixel_weight * (G(z_hat) - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % max(1, steps // 4) == 0 or step == steps):
            log(f"encoder: kimg {step * batch / 1000:<6.1f} loss {loss.item():.4f}  "
                f"{step * batch / (time.perf_counter() - t0):.0f} img/s")
    return enc.eval()


def invert(G: nn.Module, enc: LatentEncoder, images: np.ndarray, steps: int = 10, lr: float = 0.05,
           prior: float = 1e-3, batch: int = 512) -> np.ndarray:
    """Latent codes of uint8 images: E(x), then `steps` Adam steps on |G(z) - x|^2 + prior |z|^2 per image."""
    dev = next(G.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        x = to_unit(images[i:i + batch], dev)
        with torch.no_grad():
            z0 = enc(x)
        if steps > 0:
            z = z0.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                loss = (G(z) - x).pow(2).flatten(1).mean(1).sum() + prior * z.pow(2).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            z0 = z.detach()
        out.append(z0.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, enc.z_dim), np.float32)
