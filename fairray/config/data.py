"""Dataset configs: render SynthFaces, label a set with a labeler actor pool, balance it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from fairray.config.base import Cfg
from fairray.config.runtime import RayConfig, TrackingConfig
from fairray.data.bias import BiasSpec, parse_bias


class SynthConfig(Cfg):
    """A biased SynthFaces set, its balanced reference set (fairgen's D_ref) and train/val/test splits."""

    n: int = Field(10_000, ge=1, description="biased training rows")
    val_frac: float = Field(0.1, ge=0, le=1, description="val rows as a fraction of n (same bias)")
    test_frac: float = Field(0.1, ge=0, le=1, description="test rows as a fraction of n (same bias)")
    perc: float = Field(0.25, ge=0, le=1, description="reference-set size as a fraction of the biased set")
    bias: BiasSpec = Field(default_factory=lambda: BiasSpec(preset="90_10"))
    resolution: Literal[32, 64, 128] = 32
    seed: int = 0
    shard_rows: int = Field(5_000, ge=1)
    image_folder: bool = Field(False, description="also write images/<split>/*.png + labels.csv")
    image_format: Literal["png", "npy"] = Field(
        "png", description="image column bytes: png, or npy (raw uint8 pixels: labeled and loaded without a codec, "
                           "~10x faster to decode; readable by fairray and NumPy, not by image viewers)")
    ambiguity: dict[Literal["Smiling", "Eyeglasses"], float] = Field(
        default_factory=dict, description="sd of the noise on how strongly an attribute is drawn, e.g. {Smiling: 0.3}: "
        "faint smiles and half smiles the image cannot always tell (README: a biased regime by design)")

    @field_validator("ambiguity")
    @classmethod
    def _fractions(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if not 0 <= f <= 1}
        if bad:
            raise ValueError(f"must be a noise sd in [0, 1], got {bad}")
        return v

    @field_validator("bias", mode="before")
    @classmethod
    def _parse_bias(cls, v: Any) -> Any:
        return parse_bias(v) if isinstance(v, str) else v


class LabelConfig(Cfg):
    """Ray Data labeling: read -> decode (CPU tasks) -> labeler actor pool -> labeled Parquet + summary."""

    dataset: str = Field(..., description="canonical dataset dir (fairray synth/readers/generate output)")
    labeler: str = Field(..., description="attrclf:DIR | fairface:FILE[:race4] | clip:MODEL:FILE")
    reference: str | None = Field(None, description="dataset to compare distributions with (labeled or ground truth)")
    batch_size: int = Field(256, ge=1)
    actors: int | None = Field(None, ge=1, description="labeler actors; default: one per GPU, else one per CPU and per full 50k rows (1 to 8)")
    max_pixels: int = Field(50_000_000, ge=1, description="larger images are errors (decompression bombs)")
    engine: Literal["auto", "ray", "process"] = Field(
        "auto", description="ray: a Ray Data actor pool; process: in this process, no Ray; auto: process when no "
        "Ray is running or given and the pool would be one actor, else ray")
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-label"))


class BalanceConfig(Cfg):
    """Balance a labeled set over one attribute or an intersection (fair-distill's balanced sampler)."""

    dataset: str = Field(..., description="labeled dataset dir (fairray label output)")
    by: list[str] = Field(..., min_length=1, description="attribute(s) whose cells are balanced")
    mode: Literal["undersample", "weights"] = "undersample"
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("by", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",")] if isinstance(v, str) else v
