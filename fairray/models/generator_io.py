"""A trained generator as an object to sample from: build it from its config, load it from a checkpoint, turn its
output into images. Everything that samples a generator (evaluation, generate, facegen, debiasing, distillation)
comes here, not to the training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fairray.config import GanConfig
from fairray.errors import FairrayError
from fairray.train.checkpoint import load_state


def build_models(cfg: GanConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) of a GAN config."""
    from fairray.models.gan_factory import build_gan, gan_config

    width = {"dcgan": "width", "biggan": "ch", "style": "width"}[cfg.model]  # each model names it its own way
    kw = {"resolution": cfg.resolution, "z_dim": cfg.z_dim, width: cfg.width}
    if cfg.model != "biggan":
        kw["mbstd_group"] = cfg.mbstd()
    if cfg.d_pack > 1:
        kw["pack"] = cfg.d_pack
    if cfg.model == "style":
        kw |= {"map_layers": cfg.map_layers, "w_dim": cfg.w_dim}
    return build_gan(gan_config(cfg.model, **kw))


def to_images(x: torch.Tensor) -> np.ndarray:
    """G output in [-1, 1], NCHW -> uint8 NHWC."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def sample(G: torch.nn.Module, n: int, z_dim: int, seed: int, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """n samples (uint8 NHWC) and their latents, deterministic in seed. G runs in train mode (BatchNorm on
    batch statistics, as in training): short runs have unreliable running statistics."""
    G.train()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=g)
    dev = next(G.parameters()).device
    images = np.concatenate([to_images(G(z[i:i + batch].to(dev))) for i in range(0, n, batch)])
    return images, z.numpy()


@torch.no_grad()
def latents_to_w(G: torch.nn.Module, z: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The space a generator's attributes are probed in: w = mapping(z) for a style-based G, z itself otherwise."""
    if not hasattr(G, "mapping"):
        return z
    dev = next(G.parameters()).device
    zt = torch.from_numpy(z)
    return np.concatenate([G.mapping(zt[i:i + batch].to(dev)).float().cpu().numpy()
                           for i in range(0, len(z), batch)])


def synthesize(G: torch.nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """G's output from codes in the space `latents_to_w` returns: w for a style-based G, z otherwise."""
    return G.synthesis(codes) if hasattr(G, "synthesis") else G(codes)


def ema_weights(state: dict) -> dict[str, torch.Tensor]:
    """The averaged generator's weights from a checkpoint's `G_ema` (an AveragedModel state dict)."""
    return {k.removeprefix("module."): v for k, v in state["G_ema"].items() if k.startswith("module.")}


def load_generator(checkpoint: Path, ema: bool = True) -> tuple[torch.nn.Module, GanConfig]:
    """G (EMA weights by default) and its config from a complete GAN checkpoint directory."""
    state = load_state(Path(checkpoint))
    if state is None or state.get("format", "fairray.gan/1") != "fairray.gan/1":
        raise FairrayError(f"{checkpoint} is not a complete fairray GAN checkpoint")
    cfg = GanConfig.model_validate(state["config"])
    G, _ = build_models(cfg)
    G.load_state_dict(ema_weights(state) if ema else state["G"])
    return G.eval(), cfg


def history(checkpoint: Path) -> list[dict]:
    """The tick metrics a training run recorded up to this checkpoint."""
    state = load_state(Path(checkpoint))
    return state.get("history", []) if state else []
