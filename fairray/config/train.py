"""Trained models: the attribute classifier (labeler), the GAN, the downstream classifier, the distilled student."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fairray.config.base import Cfg
from fairray.config.data import SynthConfig
from fairray.config.runtime import RayConfig, TrackingConfig


class AttrClfConfig(Cfg):
    """fairray's own attribute classifier (the `attrclf` labeler), trained with Ray Train."""

    dataset: str | None = Field(None, description="canonical dataset dir; default: render a balanced SynthFaces set")
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=10_000, bias="none", perc=0.0))
    heads: list[str] = Field(default_factory=lambda: ["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair",
                                                      "age9", "skin_tone10"])
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(16, ge=4)
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    epochs: int = Field(6, ge=1, description="passes over the train split (by default at least min_kimg's worth)")
    min_kimg: float = Field(30.0, ge=0, description="unless epochs is set, train at least this many thousand images: "
                                                    "a small real set gets the steps a from-scratch CNN needs")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    augment: bool = Field(True, description="blur + noise augmentation, so labels survive GAN-like samples")
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-attrclf"))


def experiment_attrclf() -> AttrClfConfig:
    """The labeler the experiment scripts train: fixed here, so their results stay comparable whatever the demo's
    (smaller, faster) attrclf becomes."""
    return AttrClfConfig(synth=SynthConfig(n=5_000, bias="none", perc=0.0, seed=1), epochs=3, blocks=[1, 1, 1, 1],
                         heads=["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"])


class GanConfig(Cfg):
    """Ray Train DDP GAN training on a canonical dataset, optionally importance-reweighted (fairgen).

    The defaults are StyleGAN2-ADA's training protocol on DCGAN's networks (batch 32, non-saturating logistic loss,
    lazy R1 with the res^2/batch heuristic, minibatch-stddev in D, Adam (0, 0.99), EMA half-life 10 kimg with
    ramp-up). In the recipe study (experiments/gan_recipes.py, README; 40 kimg, SynthFaces 90_10, 5 seeds) it
    raised precision from 0.84 to 0.93 and coverage from 0.36 to 0.46 over the former DCGAN recipe (batch 64,
    hinge, Adam (0, 0.9), no R1), and its fairgen-reweighted GAN cut the gender discrepancy >= 50% in 4 of 5 seeds
    at precision 0.89 (former: 0.77, every run below the validity rule). It learns the minority less: female share
    0.06 +- 0.02 for training data at 0.18 (former 0.20 +- 0.10)."""

    dataset: str | None = Field(None, description="canonical dataset dir (train split: biased + reference rows)")
    name: str = Field("gan", description="run name: re-running with the same name and --out resumes")
    model: Literal["dcgan", "biggan", "style"] = Field(
        "dcgan", description="biggan: residual G/D, spectral norm, hinge; style: mapping network -> w, modulated "
                             "convs, equalised lr (models/stylegan.py)")
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(32, ge=4, description="base channel width of G and D")
    z_dim: int = Field(64, ge=2)
    loss: Literal["hinge", "bce"] = Field("bce", description="bce is the non-saturating logistic loss")
    mbstd_group: int | None = Field(None, ge=0, description="minibatch-stddev layer in D over groups of this many "
                                                            "samples; none: 4 for dcgan and style, off for biggan")
    d_pack: int = Field(1, ge=1, description="dcgan: D judges packs of this many images at once (PacGAN, Lin et "
                                             "al. 2018: a pack shows D how often a mode comes up); 1: single images")
    map_layers: int = Field(2, ge=0, description="style: mapping network depth (0: w = normalised z)")
    w_dim: int = Field(128, ge=2, description="style: dimension of w")
    r1_gamma: float | Literal["auto"] = Field(
        "auto", description="R1 penalty weight on real images (0: off); auto: 0.0002 res^2 / batch (StyleGAN2-ADA)")
    r1_interval: int = Field(16, ge=1, description="lazy R1: every this many D steps, D's Adam rescaled to match")
    augment: list[Literal["translation", "cutout"]] = Field(
        default_factory=list, description="DiffAugment on everything D sees (no colour: skin tone is an attribute)")
    batch_size: int = Field(32, ge=2, description="per-worker batch")
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    d_steps: int = Field(1, ge=1, description="D steps per G step")
    kimg: float = Field(100.0, gt=0, description="training length in thousands of real images shown")
    tick_kimg: float = Field(4.0, gt=0, description="progress line + metrics every tick")
    snapshot_ticks: int = Field(4, ge=1, description="checkpoint + sample grid every N ticks")
    keep: int = Field(3, ge=1, description="checkpoints kept")
    ema_kimg: float = Field(10.0, gt=0, description="EMA half-life of G's weights in thousands of images")
    ema_rampup: float | None = Field(0.05, gt=0, description="EMA half-life at most this x the images seen so far "
                                                             "(StyleGAN2-ADA); none: no ramp-up")
    reweight: Literal["none", "weight", "sample"] = Field(
        "none", description="fairgen: weight D's real loss by w^alpha, or sample real batches with p ~ w^alpha")
    alpha: float = Field(1.0, ge=0, description="flattening power on the importance weights")
    eval_attributes: list[str] = Field(default_factory=lambda: ["gender"], description="fairness measured on")
    eval_labeler: str | None = Field(None, description="labeler spec (e.g. attrclf:DIR) that scores the trained GAN's "
                                                       "samples; none: no fairness metrics")
    eval_n: int = Field(2000, ge=100, description="samples the trained GAN is evaluated on")
    fault_at_kimg: float | None = Field(None, description="chaos test: the last rank exits hard once at this kimg")
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-gan"))

    @model_validator(mode="after")
    def _model_settings(self) -> GanConfig:
        if self.model == "biggan" and self.mbstd_group:
            raise ValueError("mbstd_group is for model=dcgan or model=style, not biggan")
        if self.d_pack > 1:
            if self.model != "dcgan":
                raise ValueError(f"d_pack is for model=dcgan, not {self.model}")
            if self.batch_size % self.d_pack or self.reweight == "weight":
                raise ValueError(f"d_pack={self.d_pack} needs a batch_size it divides (got {self.batch_size}) and "
                                 "reweight none or sample (per-image loss weights have no pack)")
        return self

    def mbstd(self) -> int:
        """The minibatch-stddev group in use (0: none)."""
        return (0 if self.model == "biggan" else 4) if self.mbstd_group is None else self.mbstd_group

    def r1(self) -> float:
        """The R1 weight in use (the auto heuristic resolved: 0.0064 at 32 px, batch 32)."""
        return 0.0002 * self.resolution**2 / self.batch_size if self.r1_gamma == "auto" else float(self.r1_gamma)


class FairClassifierConfig(Cfg):
    """Downstream target classifier (ResNet-18 layout by default) on real + augmented rows, with per-row weights;
    fairness measured on the balanced reference test split (train/classifier.py)."""

    dataset: str | None = Field(None, description="canonical dataset dir; default: render `synth`")
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=20_000, bias="diga", perc=0.5, test_frac=0.2))
    target: str = "Smiling"
    protected: str = "gender"
    train_subset: str | None = Field("biased", description="real training rows (None: every train row)")
    eval_subset: str | None = Field("reference", description="val/test rows scored (reference: balanced)")
    augment_data: list[str] = Field(default_factory=list, description="extra datasets (e.g. generated pairs)")
    real_rows: bool = Field(True, description="train on the real rows too; false: on augment_data alone (DiGA "
                                              "sets it from its train_on)")
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(16, ge=4)
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    kimg: float = Field(40.0, gt=0, description="training length in thousands of images (see budget)")
    budget: Literal["images", "real_passes"] = Field(
        "images", description="images: every method trains kimg (augmented rows take real rows' steps); "
                              "real_passes: kimg x (real + augmented rows) / real rows, so each real row is "
                              "seen as often as in the baseline")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    hflip: bool = True
    threshold: Literal["calibrated", "fixed"] = Field(
        "calibrated", description="calibrated: #predicted positives = #positives on val; fixed: 0.5")
    n_boot: int = Field(200, ge=0, description="bootstrap resamples for the metric intervals")
    seed: int = 0
    backend: Literal["ray", "local"] = Field("ray", description="ray: Ray Train DDP; local: same loop in-process")
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-classifier"))


class DistillConfig(Cfg):
    """Fair distillation: teacher GAN -> labeled (z, image) pairs -> balanced sampler -> small student (Ray Train DDP).

    Student loss: lambda_pix (1 - k) L1(S(z), T(z)) + lambda_adv hinge + lambda_feat L1(D features) + lambda_fair L_fair,
    with L_fair the KL (or L2) between the frozen attrclf's batch-mean soft prediction on student samples and the target
    distribution over `fair_by` cells (differentiable, unlike fair-distill's argmax Shannon term)."""

    teacher: str | None = Field(None, description="teacher GAN checkpoint dir (ray_results/<name>/checkpoint_*)")
    labeler: str | None = Field(None, description="attrclf:DIR: labels the pairs, is L_fair's frozen classifier "
                                                  "and scores teacher and student")
    pairs: str | None = Field(None, description="reuse a labeled pairs dataset (a previous run's <out>/pairs_labeled)")
    reference: str | None = Field(None, description="dataset whose reference rows fd_attrclf is measured against; "
                                                    "default: the teacher's training dataset")
    name: str = Field("distill", description="run name: re-running with the same name and --out resumes")
    n_pairs: int = Field(10_000, ge=16, description="M: (z, teacher image) pairs drawn from the teacher")
    balance_by: list[str] = Field(default_factory=lambda: ["gender"], min_length=1,
                                  description="attribute or intersection (e.g. gender,tone4) the sampler balances")
    sampler: Literal["weights", "undersample", "none"] = Field(
        "weights", description="weights: draw pairs with p ~ 1/(K share(cell)); undersample: min-cell count per cell")
    student_arch: Literal["thinned", "separable"] = Field(
        "thinned", description="thinned: the teacher's (dcgan) architecture at a smaller width, initialised from "
                               "the teacher's channels; separable: TinyGAN's depthwise-separable block, from scratch")
    warmup: float = Field(0.25, ge=0, lt=1, description="share of training with only the pixel and feature terms; "
                                                        "the adversarial and fairness terms then ramp in over the "
                                                        "next `warmup` share (TinyGAN / GAN Compression schedules)")
    student_width: int | None = Field(None, ge=2, description="student base width; default: the widest student "
                                                               "with <= max_param_ratio x the teacher's parameters")
    max_param_ratio: float = Field(0.25, gt=0, le=1)
    lambda_pix: float = Field(1.0, ge=0, description="weight of the pixel L1 term (times 1 - k)")
    lambda_adv: float = Field(0.05, ge=0, description="hinge adversarial term (D sees teacher images as real)")
    lambda_feat: float = Field(0.5, ge=0, description="L1 between D features of student and teacher images")
    lambda_fair: float = Field(1.0, ge=0, description="differentiable fairness term")
    fair_by: list[str] | None = Field(None, description="attributes of L_fair's target cells; default: balance_by")
    fair_loss: Literal["kl", "l2"] = Field("kl", description="kl: KL(target || batch-mean prediction); l2: squared")
    fair_target: list[float] | None = Field(None, description="target over fair_by cells (row-major); default uniform")
    k_schedule: Literal["linear", "cosine", "step", "constant"] = Field(
        "linear", description="how k rises from 0 to k_max over training (the pixel term's weight 1 - k decays)")
    k_max: float = Field(0.5, ge=0, le=1)
    d_init: Literal["teacher", "scratch"] = Field("teacher", description="D starts from the teacher's D or anew")
    batch_size: int = Field(64, ge=2, description="per-worker batch")
    lr_g: float = Field(1e-3, gt=0)
    lr_d: float = Field(4e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    kimg: float = Field(20.0, gt=0, description="training length in thousands of pairs shown")
    tick_kimg: float = Field(2.0, gt=0)
    snapshot_ticks: int = Field(5, ge=1)
    keep: int = Field(2, ge=1)
    ema_kimg: float = Field(4.0, gt=0, description="EMA half-life of the student's weights (the one evaluated), "
                                                   "thousands of images")
    ema_rampup: float | None = Field(0.05, gt=0, description="half-life at most this x the images seen so far, so a "
                                                             "short run's EMA is not still its first weights")
    eval_n: int = Field(2_000, ge=100, description="samples of teacher and student scored (names say it: _2k)")
    eval_seed: int = Field(7, description="latent seed shared by teacher and student in evaluation")
    eval_attributes: list[str] = Field(default_factory=lambda: ["gender"], description="fairness measured on")
    report_attributes: list[str] = Field(default_factory=lambda: ["gender", "tone4", "Young", "Smiling", "hair"],
                                         description="teacher vs student share plots (heads the labeler lacks are "
                                                     "skipped)")
    intersections: list[list[str]] = Field(default_factory=lambda: [["gender", "tone4"]])
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-distill"))

    @field_validator("balance_by", "fair_by", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",")] if isinstance(v, str) else v
