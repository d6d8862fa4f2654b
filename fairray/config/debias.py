"""Debiasing methods: fairgen density-ratio weights, GAN latent pairs, DiGA edits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fairray.config.base import Cfg
from fairray.config.runtime import RayConfig
from fairray.config.train import FairClassifierConfig, GanConfig


class ReweightConfig(Cfg):
    """fairgen density-ratio weights: reference-vs-biased classifier, calibrated and clipped."""

    dataset: str = Field(..., description="dataset with `subset` biased/reference rows (fairray synth, perc > 0)")
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(8, ge=4)
    blocks: list[int] = Field(default_factory=lambda: [1, 1, 1], min_length=1)
    encoder: str | None = Field(None, description="labeler spec (attrclf:DIR) whose pooled features a logistic "
                                                  "regression reads; None: fairgen's CNN trained on the pixels")
    epochs: int = Field(8, ge=1, description="CNN: passes over the biased train rows; the best val-NLL epoch is kept")
    batch_size: int = Field(200, ge=2, description="half reference, half biased (fairgen: 100 + 100)")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    calibration: Literal["temperature", "isotonic", "none"] | None = Field(
        None, description="default: temperature for the CNN, none for `encoder` (a logistic regression fit on every "
                          "train row is calibrated by its loss; a temperature fit on a few hundred val rows only "
                          "added noise: weighted female share 0.39-0.49 vs 0.46-0.47 in the demo's seeds 0-5)")
    clip_quantile: float = Field(0.99, gt=0, le=1, description="weights above this quantile are clipped")
    report_attributes: list[str] = Field(default_factory=lambda: ["gender"])
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _calibration(self) -> ReweightConfig:
        if self.calibration is None:
            self.calibration = "none" if self.encoder else "temperature"
        return self


class GanDebiasConfig(Cfg):
    """What the two GAN-based classifier debiasing methods share: the classifier, the generator and its training."""

    classifier: FairClassifierConfig = Field(default_factory=FairClassifierConfig)
    generator: str | None = Field(None, description="GAN checkpoint dir; default: train `gan` on the biased rows")
    gan: GanConfig = Field(default_factory=lambda: GanConfig(name="debias-gan", kimg=96, tick_kimg=16,
                                                             snapshot_ticks=6))
    seed: int = 0


class LatentDebiasConfig(GanDebiasConfig):
    """GAN Data Debiasing: complementary latents z' (target kept, protected flipped) as training pairs."""

    labeler: str | None = Field(None, description="hallucinates target + protected labels, e.g. attrclf:DIR")
    n_svm: int = Field(10_000, ge=100, description="latents the two hyperplanes are fit on")
    n_pairs: int = Field(10_000, ge=1, description="(z, z') pairs added to the training set")
    svm_c: float = Field(1.0, gt=0, description="LinearSVC C")
    svm_balanced: bool = Field(True, description="class_weight=balanced (hallucinated labels are skewed)")
    svm_confident: float = Field(0.5, gt=0, le=1, description="fit each hyperplane on this most confident "
                                 "fraction of the latents (StyleGAN's protocol: half)")
    verified_only: bool = Field(False, description="add only the pairs whose flip the labeler confirms")
    flip_scale: float = Field(2.0, gt=0, description="2: reflect across the protected hyperplane; 1: onto it")
    synthetic_weight: float = Field(1.0, gt=0, description="per-row loss weight of the generated pairs")


class DigaConfig(GanDebiasConfig):
    """DiGA: invert images into the GAN latent space, edit along n = normalise(w_a - c w_b), augment, classify."""

    labeler: str | None = Field(None, description="judges whether an edit keeps the target (choice of c)")
    encoder_width: int = Field(32, ge=4)
    encoder_kimg: float = Field(60.0, gt=0, description="generated (G(z), z) pairs the encoder sees, thousands")
    encoder_lr: float = Field(1e-3, gt=0)
    refine_steps: int = Field(10, ge=0, description="latent optimisation steps per image after the encoder")
    refine_lr: float = Field(0.05, gt=0)
    c_strong: float = Field(1e-4, gt=0, description="LogisticRegression C of the strongly regularised fit (w_a)")
    c_weak: float = Field(1e4, gt=0, description="LogisticRegression C of the weakly regularised fit (w_b)")
    target_direction: Literal["rows", "labeler"] = Field(
        "rows", description="w_b: rows: the weakly regularised fit on the inverted training rows' target labels "
                            "(DiGA); labeler: a hyperplane of the labeler's target labels on generated samples "
                            "(the confident half of direction_n, latent debiasing's protocol)")
    direction_n: int = Field(20_000, ge=100, description="generated samples for target_direction=labeler")
    coefficients: list[float] = Field(default_factory=lambda: [round(0.5 + 0.1 * i, 1) for i in range(11)])
    coefficient: float | None = Field(None, description="fixed c; default: the grid's c whose edits keep the target")
    strengths: list[float] = Field(default_factory=lambda: [2.0, 3.0, 4.0], description="s grid (--grid)")
    strength: float = Field(4.0, gt=0, description="edit strength s in latent units (the most, with uniform)")
    edit: Literal["residual", "generate"] = Field(
        "residual", description="residual: x + G(z+sn) - G(z) keeps the image's detail; generate: G(z+sn)")
    choose_n: int = Field(512, ge=16, description="val images edited to choose c")
    edit_weight: float = Field(1.0, gt=0, description="per-row loss weight of edited images")
    strength_sampling: Literal["fixed", "uniform"] = Field(
        "uniform", description="fixed: every edit at `strength`; uniform: each edit's strength drawn from "
                               "U(0, strength) (DiGA: a random degree per image)")
    edits_per_row: int | None = Field(None, ge=1, description="edits of each training row; default 4 with uniform "
                                      "strengths, 1 with fixed ones (identical copies otherwise)")
    verify: Literal["none", "target", "flip"] | None = Field(
        None, description="add only the edits the labeler confirms: target: its target label is the row's; "
                          "flip: that, and its protected label differs from the labeler's on the original; "
                          "default: target with a labeler (one fixed-strength edit per row: DEO cut 17% vs 8% "
                          "unchecked, experiments/results/fair_classifier_regime_gan384_diga_target.json), none "
                          "without")

    train_on: Literal["edits", "real+edits"] = Field(
        "edits", description="what the classifier trains on: edits: the edited images alone (DiGA's classifier; "
                             "DEO -35/-36%, DP gap -42/-31% on Smiling/gender and Eyeglasses/Young, against "
                             "-23/-22% and -31/-19% with real rows added, experiments/results/"
                             "fair_classifier_regime_diga_edits_only.json); real+edits: the real rows and the edits. "
                             "Sets classifier.real_rows")

    @model_validator(mode="after")
    def _edits(self) -> DigaConfig:
        if self.edits_per_row is None:
            self.edits_per_row = 4 if self.strength_sampling == "uniform" else 1
        if self.edits_per_row > 1 and self.strength_sampling == "fixed":
            raise ValueError("edits_per_row > 1 needs strength_sampling=uniform (fixed strengths give identical copies)")
        if self.verify is None:
            self.verify = "target" if self.labeler else "none"
        return self
