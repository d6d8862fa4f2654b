"""Typed configs (pydantic v2) loaded from YAML with `--set a.b=v` overrides.

Unknown keys and wrong types are errors that name the key and what is allowed; `--dry-run` prints the
resolved config as YAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fairray.data.bias import BiasSpec, parse_bias
from fairray.errors import FairrayError


class Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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

    @field_validator("bias", mode="before")
    @classmethod
    def _parse_bias(cls, v: Any) -> Any:
        return parse_bias(v) if isinstance(v, str) else v


class TrackingConfig(Cfg):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or <out>/mlflow.db")
    experiment: str = "fairray"
    enabled: bool = True


class RayConfig(Cfg):
    address: str | None = Field(None, description="Ray cluster address; default $RAY_ADDRESS or a local Ray")
    workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs each Train worker holds (and its torch "
                                          "threads); default: a share that leaves room for Ray Data, all threads")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="training autocast: auto = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), "
                            "else fp32")


class AttrClfConfig(Cfg):
    """fairray's own attribute classifier (the `attrclf` labeler), trained with Ray Train."""

    dataset: str | None = Field(None, description="canonical dataset dir; default: render a balanced SynthFaces set")
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=10_000, bias="none", perc=0.0))
    heads: list[str] = Field(default_factory=lambda: ["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair",
                                                      "age9", "skin_tone10"])
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(16, ge=4)
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    epochs: int = Field(6, ge=1)
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


class LabelConfig(Cfg):
    """Ray Data labeling: read -> decode (CPU tasks) -> labeler actor pool -> labeled Parquet + summary."""

    dataset: str = Field(..., description="canonical dataset dir (fairray synth/readers/generate output)")
    labeler: str = Field(..., description="attrclf:DIR | fairface:FILE[:race4] | clip:MODEL:FILE")
    reference: str | None = Field(None, description="dataset to compare distributions with (labeled or ground truth)")
    batch_size: int = Field(256, ge=1)
    actors: int | None = Field(None, ge=1, description="labeler actors; default: one per GPU, else 1")
    max_pixels: int = Field(50_000_000, ge=1, description="larger images are errors (decompression bombs)")
    ray: RayConfig = Field(default_factory=RayConfig)


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


class ReweightConfig(Cfg):
    """fairgen density-ratio weights: reference-vs-biased classifier, calibrated and clipped."""

    dataset: str = Field(..., description="dataset with `subset` biased/reference rows (fairray synth, perc > 0)")
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(8, ge=4)
    blocks: list[int] = Field(default_factory=lambda: [1, 1, 1], min_length=1)
    epochs: int = Field(8, ge=1, description="passes over the biased train rows; the best val-NLL epoch is kept")
    batch_size: int = Field(200, ge=2, description="half reference, half biased (fairgen: 100 + 100)")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    calibration: Literal["temperature", "isotonic", "none"] = "temperature"
    clip_quantile: float = Field(0.99, gt=0, le=1, description="weights above this quantile are clipped")
    report_attributes: list[str] = Field(default_factory=lambda: ["gender"])
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)


class GanConfig(Cfg):
    """Ray Train DDP GAN training on a canonical dataset, optionally importance-reweighted (fairgen)."""

    dataset: str | None = Field(None, description="canonical dataset dir (train split: biased + reference rows)")
    name: str = Field("gan", description="run name: re-running with the same name and --out resumes")
    model: Literal["dcgan", "biggan"] = Field("dcgan", description="biggan: residual G/D, spectral norm, hinge")
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(32, ge=4, description="base channel width of G and D")
    z_dim: int = Field(64, ge=2)
    loss: Literal["hinge", "bce"] = "hinge"
    batch_size: int = Field(64, ge=2, description="per-worker batch")
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    d_steps: int = Field(1, ge=1, description="D steps per G step")
    kimg: float = Field(100.0, gt=0, description="training length in thousands of real images shown")
    tick_kimg: float = Field(4.0, gt=0, description="progress line + metrics every tick")
    snapshot_ticks: int = Field(4, ge=1, description="checkpoint + sample grid every N ticks")
    keep: int = Field(3, ge=1, description="checkpoints kept")
    ema_decay: float = Field(0.99, ge=0, lt=1)
    reweight: Literal["none", "weight", "sample"] = Field(
        "none", description="fairgen: weight D's real loss by w^alpha, or sample real batches with p ~ w^alpha")
    alpha: float = Field(1.0, ge=0, description="flattening power on the importance weights")
    eval_attributes: list[str] = Field(default_factory=lambda: ["gender"], description="fairness measured on")
    fault_at_kimg: float | None = Field(None, description="chaos test: the last rank exits hard once at this kimg")
    seed: int = 0
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-gan"))


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
    resolution: Literal[32, 64, 128] = 32
    width: int = Field(16, ge=4)
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    kimg: float = Field(40.0, gt=0, description="training length in thousands of images (same for every method)")
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
    coefficients: list[float] = Field(default_factory=lambda: [round(0.5 + 0.1 * i, 1) for i in range(11)])
    coefficient: float | None = Field(None, description="fixed c; default: the grid's c whose edits keep the target")
    strengths: list[float] = Field(default_factory=lambda: [2.0, 3.0, 4.0], description="s grid (--grid)")
    strength: float = Field(3.0, gt=0, description="edit strength s in latent units")
    edit: Literal["residual", "generate"] = Field(
        "residual", description="residual: x + G(z+sn) - G(z) keeps the image's detail; generate: G(z+sn)")
    choose_n: int = Field(512, ge=16, description="val images edited to choose c")
    edit_weight: float = Field(1.0, gt=0, description="per-row loss weight of edited images")
    seed: int = 0


class TuneCampaignConfig(Cfg):
    """`fairray tune SPACE`: the campaign's fixed settings; the space file (tune_spaces/*.yaml) says what is searched."""

    name: str | None = Field(None, description="campaign name (default: the space file's stem); re-running the "
                                               "same name with the same --out continues it after a crash")
    base: dict[str, Any] = Field(default_factory=dict, description="settings of the trainable's config, merged "
                                                                  "over the space's `fixed` (e.g. base.kimg=48)")
    dataset: str | None = Field(None, description="canonical dataset (biased + reference rows); default: render "
                                                  "`synth` once per searched perc")
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=6_000, perc=0.25))
    ratio_epochs: int = Field(4, ge=1, description="density-ratio classifier epochs (GAN campaigns with weights)")
    labeler: str | None = Field(None, description="generator fairness labeler (attrclf:DIR); default: train `attrclf`")
    attrclf: AttrClfConfig = Field(default_factory=lambda: AttrClfConfig(
        synth=SynthConfig(n=5_000, bias="none", perc=0.0, seed=1), epochs=3, blocks=[1, 1, 1, 1],
        heads=["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]))
    eval_n: int = Field(2_000, ge=100, description="generated samples per evaluation (metric names say it: _2k)")
    trial_cpus: float = Field(0.5, gt=0, description="CPUs the trial process itself holds (its Ray Train workers "
                                                     "ask for their own)")
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-tune"))


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
    ema_decay: float = Field(0.99, ge=0, lt=1, description="EMA of the student (the one evaluated); keep "
                             "1/(1 - decay) well under the run's steps, or the EMA is still mostly the first weights")
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


class FacegenConfig(Cfg):
    """FairFace-Generator workflow: train a DCGAN-64 on a labeled face set, generate N faces, annotate training and
    generated faces with the same labeler, report training-vs-generated shares (AI-Face style)."""

    dataset: str | None = Field(None, description="canonical labeled face set; default: render `synth`")
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=10_000, bias="none", perc=0.0, val_frac=0.05,
                                                                   test_frac=0.05, resolution=64))
    generator: str | None = Field(None, description="existing GAN checkpoint dir; default: train `gan`")
    gan: GanConfig = Field(default_factory=lambda: GanConfig(
        name="facegen", resolution=64, width=64, z_dim=128, batch_size=64, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999),
        loss="bce", kimg=200, tick_kimg=8, snapshot_ticks=5))
    labeler: str | None = Field(None, description="annotator for training and generated faces (attrclf:DIR, "
                                                  "fairface:FILE, clip:MODEL:FILE); default: train `attrclf`")
    attrclf: AttrClfConfig = Field(default_factory=lambda: AttrClfConfig(
        synth=SynthConfig(n=5_000, bias="none", perc=0.0, seed=1), epochs=3, blocks=[1, 1, 1, 1]))
    n: int = Field(2_000, ge=10, description="generated faces")
    seed: int = Field(0, description="latent seed of the generated faces")
    snapshots: int = Field(1, ge=1, description="draw the n faces evenly from the run's last k checkpoints (same "
                                                "latents): one DCGAN snapshot's shares swing by 0.1-0.2 between "
                                                "checkpoints, the pool reads what the run learned")
    attributes: list[str] = Field(default_factory=lambda: ["gender", "age9", "Young", "skin_tone10", "tone4"],
                                  description="reported attributes (heads the labeler lacks are skipped)")
    intersections: list[list[str]] = Field(default_factory=lambda: [["gender", "tone4"], ["gender", "Young"]])
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-facegen"))


DEMO_STEPS = ("data", "attrclf", "label", "balance", "reweight", "gan", "distill", "classifier")


class DemoConfig(Cfg):
    """The end-to-end tour; every stage's config is here, so `--set gan.kimg=60` works."""

    steps: list[Literal[DEMO_STEPS]] = Field(default_factory=lambda: list(DEMO_STEPS))  # type: ignore[valid-type]
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=8_000, perc=0.25))
    attrclf: AttrClfConfig = Field(default_factory=lambda: AttrClfConfig(
        synth=SynthConfig(n=3_000, bias="none", perc=0.0, seed=1), epochs=3, blocks=[1, 1, 1, 1],
        heads=["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]))
    ratio_epochs: int = Field(2, ge=1)
    gan: GanConfig = Field(default_factory=lambda: GanConfig(width=32, kimg=40, tick_kimg=8, snapshot_ticks=5))
    alphas: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=2,
                                description="the GAN stage is a Ray Tune grid over fairgen's alpha; alpha 0 is "
                                            "the unweighted GAN (w^0 = 1)")
    eval_n: int = Field(2_000, ge=100, description="generated samples per GAN for fairness metrics")
    distill: DistillConfig = Field(default_factory=lambda: DistillConfig(
        n_pairs=1_000, kimg=4, tick_kimg=1, snapshot_ticks=4, eval_n=1_000, lambda_fair=4.0,
        # ~60 steps: with the default 0.99 EMA the evaluated student was 12% female (teacher 22%); with 0.9, 51%
        ema_decay=0.9, intersections=[["gender", "tone4"]],
        report_attributes=["gender", "tone4", "Young"]))
    classifier: LatentDebiasConfig = Field(default_factory=lambda: LatentDebiasConfig(
        classifier=FairClassifierConfig(synth=SynthConfig(n=3_000, bias="diga", perc=0.5, test_frac=0.2),
                                        blocks=[1, 1, 1, 1], kimg=5, n_boot=100, backend="local"),
        n_svm=2_000, n_pairs=2_000))
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-demo"))
    grid_size: int = Field(8, ge=2, le=16, description="sample grid is grid_size x grid_size")

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        if 0.0 not in v or max(v) <= 0 or min(v) < 0:
            raise ValueError("alphas must include 0 (the unweighted GAN) and at least one alpha > 0")
        return sorted(set(v))


DEMO_PRESETS = {
    "quick": ["synth.n=3000", "attrclf.synth.n=3000", "attrclf.epochs=2", "ratio_epochs=2", "gan.kimg=16",
              "gan.tick_kimg=8", "alphas=[0,1]", "eval_n=1000", "distill.n_pairs=1000", "distill.kimg=4",
              "classifier.classifier.synth.n=2000", "classifier.n_svm=1000", "classifier.n_pairs=1000"],
    "full": ["synth.n=20000", "attrclf.synth.n=10000", "attrclf.epochs=6", "gan.width=32", "gan.kimg=200",
             "alphas=[0,0.5,1]", "eval_n=10000", "distill.n_pairs=10000", "distill.kimg=20",
             "distill.eval_n=4000", "classifier.classifier.synth.n=20000", "classifier.classifier.kimg=40",
             "classifier.n_svm=10000", "classifier.n_pairs=10000"],
}


C = TypeVar("C", bound=Cfg)


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style ints: `90_10` stays the string fairgen means, not the integer 9010."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:int"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9]*)$"), list("-+0123456789"))


def parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise FairrayError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise FairrayError(f"--set {key}: {p!r} is a value, not a section")
    node[parts[-1]] = parse_value(raw)


def read_yaml(path: Path) -> dict:
    if not Path(path).is_file():
        raise FairrayError(f"config file not found: {path}")
    data = yaml.load(Path(path).read_text(), Loader=_Loader) or {}
    if not isinstance(data, dict):
        raise FairrayError(f"{path}: a config must be a mapping of keys to values")
    return data


def load_config(cls: type[C], path: Path | None = None, overrides: list[str] | None = None) -> C:
    data = read_yaml(path) if path is not None else {}
    for o in overrides or []:
        apply_override(data, o)
    try:
        return cls.model_validate(_with_defaults(cls, data))
    except ValidationError as e:
        raise FairrayError(format_validation_error(cls, e)) from None


def _with_defaults(cls: type[BaseModel], data: dict) -> dict:
    """Overrides of a nested section land on that section's *configured* defaults: `--set attrclf.epochs=2` on
    the demo keeps the demo's attrclf settings instead of resetting the section to AttrClfConfig's own."""
    out = dict(data)
    for name, field in cls.model_fields.items():
        sub = field.annotation
        if name in out and isinstance(out[name], dict) and isinstance(sub, type) and issubclass(sub, Cfg):
            default = field.get_default(call_default_factory=True)
            base = default.model_dump(mode="json", exclude_unset=False) if isinstance(default, Cfg) else {}
            # user values over this section's configured defaults, then (deeper) over the sub-config's own
            out[name] = _with_defaults(sub, _deep_merge(base, out[name], sub))
    return out


def _deep_merge(base: dict, update: dict, cls: type[BaseModel]) -> dict:
    merged = dict(base)
    for k, v in update.items():
        field = cls.model_fields.get(k)
        sub = getattr(field, "annotation", None)
        if isinstance(v, dict) and isinstance(merged.get(k), dict) and isinstance(sub, type) and issubclass(sub, Cfg):
            merged[k] = _deep_merge(merged[k], v, sub)
        else:
            merged[k] = v
    return merged


def _allowed_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def format_validation_error(cls: type[BaseModel], e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(cls, err["loc"])
            msgs.append(f"unknown key '{key}'" + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
        else:
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            msgs.append(f"{key}: {err['msg'].removeprefix('Value error, ')}{got}")
    return "config error: " + "; ".join(msgs)


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=False), sort_keys=False)
