"""One way to build a GAN: a typed config in, (G, D) out. Both take (x or z, y=None); D returns (N,) logits."""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from fairray.models import biggan, dcgan, stylegan

GANConfig = dcgan.DCGANConfig | biggan.BigGANConfig | stylegan.StyleGANConfig
CONFIGS: dict[str, type] = {"dcgan": dcgan.DCGANConfig, "biggan": biggan.BigGANConfig,
                            "style": stylegan.StyleGANConfig}


def gan_config(model: str, **kw) -> GANConfig:
    """The config of a model by name; keys the model does not have are an error (no silent typos)."""
    if model not in CONFIGS:
        raise ValueError(f"unknown GAN model {model!r}; available: {', '.join(CONFIGS)}")
    cls = CONFIGS[model]
    unknown = set(kw) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{model} has no setting(s) {sorted(unknown)}; allowed: {[f.name for f in fields(cls)]}")
    return cls(**kw)


def build_gan(cfg: GANConfig) -> tuple[nn.Module, nn.Module]:
    if isinstance(cfg, dcgan.DCGANConfig):
        return dcgan.Generator(cfg), dcgan.Discriminator(cfg)
    if isinstance(cfg, biggan.BigGANConfig):
        return biggan.Generator(cfg), biggan.Discriminator(cfg)
    if isinstance(cfg, stylegan.StyleGANConfig):
        return stylegan.Generator(cfg), stylegan.Discriminator(cfg)
    raise TypeError(f"build_gan needs a DCGANConfig, BigGANConfig or StyleGANConfig, got {type(cfg).__name__}")


def count_params(m: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable_only)
