"""One way to build a GAN from a model name and its settings."""

from __future__ import annotations

from torch import nn

from fairray.models import dcgan


def gan_config(model: str, **kw) -> dcgan.DCGANConfig:
    if model == "dcgan":
        return dcgan.DCGANConfig(**kw)
    raise ValueError(f"unknown GAN model {model!r}; available: dcgan")


def build_gan(cfg: dcgan.DCGANConfig) -> tuple[nn.Module, nn.Module]:
    return dcgan.Generator(cfg), dcgan.Discriminator(cfg)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
