"""Multi-stage workflows: FairFace-Generator, Tune campaigns, the end-to-end demo."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from fairray.config.base import Cfg
from fairray.config.data import SynthConfig
from fairray.config.debias import LatentDebiasConfig
from fairray.config.runtime import RayConfig, TrackingConfig
from fairray.config.train import AttrClfConfig, DistillConfig, FairClassifierConfig, GanConfig


class FacegenConfig(Cfg):
    """FairFace-Generator workflow: train a DCGAN-64 on a labeled face set, generate N faces, annotate training and
    generated faces with the same labeler, report training-vs-generated shares (AI-Face style)."""

    dataset: str | None = Field(None, description="canonical labeled face set; default: render `synth`")
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=10_000, bias="none", perc=0.0, val_frac=0.05,
                                                                   test_frac=0.05, resolution=64))
    generator: str | None = Field(None, description="existing GAN checkpoint dir; default: train `gan`")
    gan: GanConfig = Field(default_factory=lambda: GanConfig(
        name="facegen", resolution=64, width=64, z_dim=128, batch_size=64, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999),
        loss="bce", kimg=200, tick_kimg=8, snapshot_ticks=5,
        # the FairFace Generator's recipe, kept: in the recipe study (README) the StyleGAN2-ADA protocol made 64 px
        # samples valid but its female share fell to 0.11-0.20 of a balanced set at 40 kimg (this recipe: 0.20-0.46)
        r1_gamma=0.0, mbstd_group=0, ema_kimg=4.0))
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


DEMO_STEPS = ("data", "attrclf", "label", "balance", "reweight", "gan", "distill", "classifier")


class DemoConfig(Cfg):
    """The end-to-end tour; every stage's config is here, so `--set gan.kimg=60` works."""

    steps: list[Literal[DEMO_STEPS]] = Field(default_factory=lambda: list(DEMO_STEPS))  # type: ignore[valid-type]
    # every set is rendered in one world, with smiles drawn faintly or half-way (cue noise 0.3, the classifier
    # stage's biased regime): latent debiasing's pairs can only move a classifier's prior on faint smiles if the GAN
    # draws faint smiles and attrclf has learnt to label them (crisp-smile GANs: lower DEO in 0 of 3 seeds where
    # this world gives 3 of 3, seeds 0-2; benchmarks/results/demo_classifier_world.json)
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(n=8_000, perc=0.25, ambiguity={"Smiling": 0.3}))
    attrclf: AttrClfConfig = Field(default_factory=lambda: AttrClfConfig(
        synth=SynthConfig(n=3_000, bias="none", perc=0.0, seed=1, ambiguity={"Smiling": 0.3}), epochs=3,
        blocks=[1, 1, 1, 1],
        heads=["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]))
    ratio_encoder: bool = Field(True, description="density ratio from a logistic regression on the attrclf's "
                                                  "features (its weighted female share 0.45-0.47 of the 0.5 it "
                                                  "should restore); false: fairgen's CNN on the pixels, "
                                                  "ratio_epochs long (0.33-0.42)")
    ratio_epochs: int = Field(2, ge=1)
    # 48 kimg: at 40 one seed of six failed the validity rule on each CPU measured (EPYC seed 1: the alpha-1 GAN's
    # target coverage 0.443 for a bar of 0.487); at 48 every generator of seeds 0-5 passes on both, at 265-291 s a
    # demo on the EPYC (246-262 s at 40; benchmarks/results/demo_validity_epyc_gan48_lf25.json, demo_validity_gan48.json)
    gan: GanConfig = Field(default_factory=lambda: GanConfig(width=32, kimg=48, tick_kimg=8, snapshot_ticks=5))
    alphas: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=2,
                                description="the GAN stage is a Ray Tune grid over fairgen's alpha; alpha 0 is "
                                            "the unweighted GAN (w^0 = 1)")
    eval_n: int = Field(2_000, ge=100, description="generated samples per GAN for fairness metrics")
    distill: DistillConfig = Field(default_factory=lambda: DistillConfig(
        # 12 kimg: the thinned student draws faces from about 8 kimg on (4 kimg: blobs; experiments/
        # distill_demo_length.py and README); ~190 steps, so the EMA half-life stays short. 2,000 pairs: on 1,000
        # the student's coverage fell under the validity rule in 2 of 6 seeds (seed 4: 0.454 -> 0.536 of 0.956).
        # lambda_fair 2.5: at 4 seed 5's student lost its faces on an Intel AMX box (precision 0.65 of the teacher's
        # 0.93, benchmarks/results/demo_validity_lambda_fair4.json); at 2 an EPYC seed stayed at 44.0% female
        # (benchmarks/results/demo_distill_variants.json); at 2.5 with the 48-kimg teachers every seed 0-5 is
        # balanced (47.3-51.8%) at 0.88-0.95 of the teacher's precision on the EPYC
        n_pairs=2_000, kimg=12, tick_kimg=3, snapshot_ticks=4, eval_n=1_000, lambda_fair=2.5,
        ema_kimg=0.5, intersections=[["gender", "tone4"]],
        report_attributes=["gender", "tone4", "Young"]))
    classifier: LatentDebiasConfig = Field(default_factory=lambda: LatentDebiasConfig(
        # the biased regime of experiments/biased_regime.py at demo size: smiles drawn with cue noise 0.3, so the
        # baseline takes the gender shortcut in every seed (3k rows, 10 kimg: DEO 0.36 +- 0.09, accuracy 0.81).
        # test_frac 1 and val_frac 0.5: 1,500 balanced test rows and 750 val rows (with 300 and 300, seed 0's
        # baseline DEO moved 0.373 -> 0.285 with the evaluation rows alone); real_passes: the debiased classifier
        # sees each real row as often as the baseline (with a fixed kimg the pairs took ~30% of the real rows'
        # passes: over six seeds DEO 0.320 -> 0.381 and accuracy 80.1% -> 76.4%, against 0.299 and 80.4%)
        classifier=FairClassifierConfig(synth=SynthConfig(n=3_000, bias="diga", perc=0.5, test_frac=1.0, val_frac=0.5,
                                                          ambiguity={"Smiling": 0.3}),
                                        blocks=[1, 1, 1, 1], kimg=10, budget="real_passes", n_boot=100,
                                        backend="local"),
        # verified_only: at demo size the 40-kimg GAN's unchecked pairs raised DEO in 6 of 6 seeds (mean 0.358 ->
        # 0.471, accuracy 80.8% -> 72.1%); only the pairs whose flip the labeler confirms: 0.400, 77.7% (lower DEO
        # in 1 of 6; benchmarks/results/demo_validity_all_pairs.json vs demo_validity_crisp_smiles.json)
        n_svm=2_000, n_pairs=2_000, verified_only=True))
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="fairray-demo"))
    grid_size: int = Field(8, ge=2, le=16, description="sample grid is grid_size x grid_size")
    seed: int | None = Field(None, ge=0, description="one seed for every stage (data, attrclf, density ratio, "
                                                    "balance, GANs, distillation, classifier); unset: each "
                                                    "section's own (the same as seed=0)")

    def seeded(self) -> DemoConfig:
        """Every stage's seed derived from `seed` (the attrclf's own SynthFaces set keeps a different stream)."""
        if self.seed is None:
            return self
        s = self.seed
        clf = self.classifier.classifier
        return self.model_copy(update={
            "synth": self.synth.model_copy(update={"seed": s}),
            "attrclf": self.attrclf.model_copy(update={"seed": s, "synth": self.attrclf.synth.model_copy(
                update={"seed": s + 1})}),
            "gan": self.gan.model_copy(update={"seed": s}),
            "distill": self.distill.model_copy(update={"seed": s}),
            "classifier": self.classifier.model_copy(update={"seed": s, "classifier": clf.model_copy(update={
                "seed": s, "synth": clf.synth.model_copy(update={"seed": s})})}),
        })

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
