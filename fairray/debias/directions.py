"""DiGA (Zhang et al., CVPR 2024): find the spurious direction from target labels alone, edit along it, augment.

1. Invert the biased training images into the generator's latent space (`models/encoder.py`: an encoder
   trained on generated pairs, then a few optimisation steps per image).
2. Fit two logistic regressions on the *target* label only, strongly (C=1e-4) and weakly (C=1e4) regularised;
   on biased data the strong one leans toward the spurious (protected) attribute. Their unit normals w_a, w_b
   give n = normalise(w_a - c w_b): for the right c the target component cancels and n is the spurious direction.
   (`target_direction=labeler`: w_b is instead the labeler's target hyperplane on generated samples.)
3. c is chosen on val images as the one whose +-s edits keep the target (judged by the labeler's target head;
   DiGA uses CLIP zero-shot), without any protected labels.
4. Every training image is edited toward the other class's stereotype (y=0: +s n, y=1: -s n), edits_per_row
   times at strengths drawn from U(0, s) (DiGA's random degree; or once at s), and the classifier trains on the
   edits alone, as DiGA's does (`train_on=real+edits` adds them to the real rows); with `verify` only those whose
   target label the labeler confirms (and, `flip`, whose protected label it sees changed): an edit that loses a
   faint target adds label noise, not balance. `residual` edits add G(z + s n) - G(z) to the real image
   (HFGI-style detail preservation); `generate` uses G(z + s n) itself.

`diga_point(cfg, c, s, out)` trains and scores one (c, s) point; `grid` loops over cfg.coefficients x
cfg.strengths; `run` (the stage, and the Tune campaign's trial with cfg.coefficient and cfg.strength set per trial)
chooses c by the labeler rule unless cfg.coefficient fixes it, and trains at cfg.strength.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fairray.config import DigaConfig
from fairray.data.loading import load_split
from fairray.data.table import shard_signature
from fairray.debias.latent import (
    ensure_generator,
    fit_hyperplane,
    freeze_generator,
    label_images,
    label_probabilities,
    most_confident,
    render,
    write_rows,
)
from fairray.errors import FairrayError
from fairray.labelers.base import Labeler
from fairray.models.encoder import LatentEncoder, invert, to_unit, train_encoder
from fairray.stage import RunContext


@dataclass
class Prepared:
    """Everything one (c, s) point needs, computed once per output dir."""

    dataset: Path
    checkpoint: Path
    G: torch.nn.Module
    z_dim: int
    encoder: LatentEncoder
    train_images: np.ndarray
    train_z: np.ndarray
    train_y: np.ndarray
    val_images: np.ndarray
    val_z: np.ndarray
    val_y: np.ndarray
    val_g: np.ndarray
    w_a: np.ndarray
    w_b: np.ndarray


def fit_direction(z: np.ndarray, y: np.ndarray, C: float, seed: int = 0) -> np.ndarray:
    """Unit normal of an L2 logistic target classifier with inverse regularisation C."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise FairrayError("DiGA directions need both target classes among the training rows")
    w = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit(z, y).coef_[0].astype(np.float64)
    return w / np.linalg.norm(w)


def labeler_for(cfg: DigaConfig, labeler: Labeler | None = None) -> Labeler | None:
    """The labeler given, else cfg.labeler's (loaded), else None."""
    if labeler is None and cfg.labeler:
        from fairray.labelers.registry import load_labeler

        labeler = load_labeler(cfg.labeler)
    return labeler


def labeler_target_direction(G: torch.nn.Module, z_dim: int, labeler: Labeler, target: str, n: int, seed: int = 0
                             ) -> np.ndarray:
    """Unit normal of the labeler's target in the generator's latent space: a hyperplane on n generated samples'
    target labels, fit on their most confident half (latent debiasing's protocol). Target labels only, as DiGA."""
    from fairray.labelers.base import hard_labels

    z = np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32)
    probs = label_probabilities(render(G, z), labeler, [target])
    fit = most_confident(probs[target], 0.5)
    w, _ = fit_hyperplane(z[fit], hard_labels(probs, labeler.heads)[target][fit], seed=seed)
    return w


def combine(w_a: np.ndarray, w_b: np.ndarray, c: float) -> np.ndarray:
    """n = normalise(w_a - c w_b)."""
    n = w_a - c * w_b
    norm = np.linalg.norm(n)
    if norm < 1e-9:
        raise FairrayError(f"w_a - {c} w_b vanishes: the two fits agree; pick another coefficient")
    return n / norm


@torch.no_grad()
def edit(G: torch.nn.Module, images: np.ndarray, z: np.ndarray, n: np.ndarray, shift: np.ndarray,
         mode: str = "residual", batch: int = 500) -> np.ndarray:
    """Images moved by shift_i * n in latent space (uint8 NHWC)."""
    dev = next(G.parameters()).device
    n_t = torch.as_tensor(n, dtype=torch.float32, device=dev)
    out = []
    for i in range(0, len(z), batch):
        zb = torch.as_tensor(z[i:i + batch], dtype=torch.float32, device=dev)
        sb = torch.as_tensor(shift[i:i + batch], dtype=torch.float32, device=dev).view(-1, 1)
        moved = G(zb + sb * n_t)
        if mode == "residual":
            moved = to_unit(images[i:i + batch], dev) + moved - G(zb)
        out.append(((moved.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def made_from(path: Path, key: dict) -> bool:
    """A cached file exists and its record (<path>.json) says it was made from `key`."""
    rec = path.with_name(path.name + ".json")
    return path.is_file() and rec.is_file() and json.loads(rec.read_text()) == key


def record(path: Path, key: dict) -> None:
    path.with_name(path.name + ".json").write_text(json.dumps(key))


def prepare(cfg: DigaConfig, out: Path, progress: bool = False, labeler: Labeler | None = None) -> Prepared:
    """Generator, encoder and inverted latents of the train rows and `choose_n` val rows (cached under out), and
    the two directions (w_b from the labeler with target_direction=labeler: given, or cfg.labeler's)."""
    from fairray.models.generator_io import load_generator
    from fairray.train import classifier

    out = Path(out)
    dataset = classifier.dataset_path(cfg.classifier, out, progress)
    clf = classifier.for_dataset(cfg.classifier, dataset)
    ckpt = ensure_generator(cfg.generator, cfg.gan, clf, dataset, out)
    G, gcfg = load_generator(ckpt)
    if gcfg.resolution != clf.resolution:
        raise FairrayError(f"generator makes {gcfg.resolution} px images, the classifier wants {clf.resolution}")
    freeze_generator(G, gcfg.z_dim)
    cache = out / "diga-prep"
    cache.mkdir(parents=True, exist_ok=True)
    # each cached file records what made it: a re-run with another generator or setting must not reuse it
    enc_key = {"generator": str(Path(ckpt).resolve()), "width": cfg.encoder_width, "kimg": cfg.encoder_kimg,
               "lr": cfg.encoder_lr, "seed": cfg.seed}
    enc_path = cache / "encoder.pt"
    if made_from(enc_path, enc_key):
        enc = LatentEncoder(gcfg.z_dim, gcfg.resolution, cfg.encoder_width)
        enc.load_state_dict(torch.load(enc_path, weights_only=True))
        enc.eval()
    else:
        enc = train_encoder(G, gcfg.z_dim, gcfg.resolution, cfg.encoder_width, cfg.encoder_kimg, cfg.encoder_lr,
                            seed=cfg.seed, log=print if progress else None)
        torch.save(enc.state_dict(), enc_path)
        record(enc_path, enc_key)
    x_tr, df_tr = load_split(dataset, "train", [clf.target], size=clf.resolution, subset=clf.train_subset)
    # DiGA picks c on edits of held-out images of the *biased* distribution: no balanced data is assumed.
    x_va, df_va = load_split(dataset, "val", [clf.target, clf.protected], size=clf.resolution,
                             subset=clf.train_subset)
    pick = np.random.default_rng(cfg.seed).permutation(len(x_va))[:cfg.choose_n]
    x_va, df_va = x_va[pick], df_va.iloc[pick].reset_index(drop=True)
    lat = cache / "latents.npz"
    lat_key = {"encoder": enc_key, "dataset": str(Path(dataset).resolve()), "subset": clf.train_subset,
               "resolution": clf.resolution, "choose_n": cfg.choose_n, "refine_steps": cfg.refine_steps,
               "refine_lr": cfg.refine_lr, "shards": shard_signature(dataset)}
    if made_from(lat, lat_key):
        saved = np.load(lat)
        z_tr, z_va = saved["train"], saved["val"]
    else:
        t0 = time.perf_counter()
        z_tr = invert(G, enc, x_tr, cfg.refine_steps, cfg.refine_lr)
        z_va = invert(G, enc, x_va, cfg.refine_steps, cfg.refine_lr)
        np.savez(lat, train=z_tr, val=z_va)
        record(lat, lat_key)
        if progress:
            print(f"inverted {len(z_tr) + len(z_va):,} images in {time.perf_counter() - t0:.0f} s", flush=True)
    y_tr = df_tr[clf.target].to_numpy()
    w_a = fit_direction(z_tr, y_tr, cfg.c_strong, cfg.seed)
    if cfg.target_direction == "labeler":
        labeler = labeler_for(cfg, labeler)
        if labeler is None:
            raise FairrayError("target_direction=labeler needs the labeler (labeler=attrclf:DIR)")
        w_b = labeler_target_direction(G, gcfg.z_dim, labeler, clf.target, cfg.direction_n, cfg.seed)
    else:
        w_b = fit_direction(z_tr, y_tr, cfg.c_weak, cfg.seed)
    return Prepared(dataset, ckpt, G, gcfg.z_dim, enc, x_tr, z_tr, y_tr, x_va, z_va, df_va[clf.target].to_numpy(),
                    df_va[clf.protected].to_numpy(), w_a, w_b)


def edit_effect(cfg: DigaConfig, prep: Prepared, labeler, c: float, s: float, protected_before: np.ndarray
                ) -> dict[str, float]:
    """On the val rows: how often both +-s edits keep the labeler's target (DiGA's criterion, the score used to
    choose c), and, as diagnostics only, how often they move the protected label and how often the edit training
    uses passes verify=flip (protected_before: the labeler's protected labels of the unedited val rows)."""
    t, g = cfg.classifier.target, cfg.classifier.protected
    n = combine(prep.w_a, prep.w_b, c)
    k = len(prep.val_z)
    labs = [label_images(edit(prep.G, prep.val_images, prep.val_z, n, np.full(k, sign * s), cfg.edit), labeler,
                         [t, g]) for sign in (1.0, -1.0)]
    kept = (labs[0][t] == prep.val_y) & (labs[1][t] == prep.val_y)
    # the edit training uses: toward the other class's stereotype (+s for y=0, -s for y=1)
    used = {h: np.where(prep.val_y == 0, labs[0][h], labs[1][h]) for h in (t, g)}
    used_kept, used_flipped = edit_checks(used, prep.val_y, protected_before, t, g)
    return {"edit_target_kept": float(kept.mean()),
            # +s pushes toward the protected value that co-occurs with y=1, -s away from it
            "edit_protected_gap": float(labs[0][g].mean() - labs[1][g].mean()),
            "edit_verified": float((used_kept & used_flipped).mean())}


def choose_coefficient(cfg: DigaConfig, prep: Prepared, labeler, s: float) -> tuple[float, list[dict]]:
    """The c of cfg.coefficients whose edits keep the target best (ties: the first)."""
    before = label_images(prep.val_images, labeler, [cfg.classifier.protected])[cfg.classifier.protected]
    rows = [{"c": c, **edit_effect(cfg, prep, labeler, c, s, before)} for c in cfg.coefficients]
    best = max(rows, key=lambda r: r["edit_target_kept"])
    return float(best["c"]), rows


def edit_checks(after: dict[str, np.ndarray], y: np.ndarray, protected_before: np.ndarray, target: str,
                protected: str) -> tuple[np.ndarray, np.ndarray]:
    """Per edit, from the labeler's labels of the edits (`after`): does it keep the row's target label, and does its
    protected label differ from the labeler's label of the unedited image."""
    return after[target] == y, after[protected] != protected_before


def diga_point(cfg: DigaConfig, c: float, s: float, out: Path, prep: Prepared | None = None,
               ctx: RunContext | None = None, labeler: Labeler | None = None) -> dict[str, float]:
    """Edit every training row (cfg.edits_per_row times) toward the other class's stereotype with n(c) and
    strength s (or U(0, s)), train the classifier on the edits (cfg.train_on; only the labeler-confirmed ones with
    cfg.verify), return its metrics (balanced test) + c, s and, given a labeler (default: cfg.labeler's), the
    edits' keep / flip rates. The classifier's MLflow run is ctx.name
    (default diga-c<c>-s<s>[settings]-seed<seed>) under ctx.parent."""
    from fairray.train import classifier

    labeler = labeler_for(cfg, labeler)
    if cfg.verify != "none" and labeler is None:
        raise FairrayError(f"verify={cfg.verify} needs the labeler that checks the edits (labeler=attrclf:DIR)")
    ctx, out = ctx or RunContext(progress=False), Path(out)
    prep = prep or prepare(cfg, out, labeler=labeler)
    clf = cfg.classifier
    n = combine(prep.w_a, prep.w_b, c)
    rows = np.tile(np.arange(len(prep.train_y)), cfg.edits_per_row)
    y = prep.train_y[rows]
    size = (np.random.default_rng(cfg.seed).uniform(0, s, len(rows)) if cfg.strength_sampling == "uniform"
            else np.full(len(rows), s))
    shift = np.where(y == 0, size, -size)
    edited = edit(prep.G, prep.train_images[rows], prep.train_z[rows], n, shift, cfg.edit)
    keep, diag = np.ones(len(edited), bool), {}
    if labeler is not None:
        # the unedited rows are labelled once, not once per copy
        before = label_images(prep.train_images, labeler, [clf.protected])[clf.protected][rows]
        after = label_images(edited, labeler, [clf.target, clf.protected])
        kept, flipped = edit_checks(after, y, before, clf.target, clf.protected)
        keep = {"none": keep, "target": kept, "flip": kept & flipped}[cfg.verify]
        if not keep.any():
            raise FairrayError(f"no edit passed the labeler's check (verify={cfg.verify}); try another c or s")
        diag = {"edits_target_kept": float(kept.mean()), "edits_protected_flipped": float(flipped.mean()),
                "edits_verified": float((kept & flipped).mean()), "edits_used": int(keep.sum())}
    # settings beyond (c, s) name the run too, so points of one campaign never share (and overwrite) a folder
    extra = "".join(part for part, on in ((f"-u{cfg.edits_per_row}", cfg.strength_sampling == "uniform"),
                                          (f"-{cfg.verify}", cfg.verify != "none"),
                                          ("-gen", cfg.edit == "generate"),
                                          ("-real", cfg.train_on == "real+edits"),
                                          ("-tlab", cfg.target_direction == "labeler")) if on)
    tag = f"diga-c{c:g}-s{s:g}{extra}-seed{clf.seed}"
    path = write_rows(out / tag / "edits", edited[keep], {clf.target: y[keep], "edit_strength": shift[keep]},
                      cfg.edit_weight, "diga-edits", {"method": "diga", "c": c, "s": s, "edit": cfg.edit,
                                                      "verify": cfg.verify})
    ccfg = clf.model_copy(update={"dataset": str(prep.dataset), "augment_data": [*clf.augment_data, str(path)],
                                  "real_rows": cfg.train_on == "real+edits"})
    metrics = classifier.run(ccfg, out / tag, ctx.with_(name=ctx.name or tag, tags={
        "fairray.method": "diga", "diga.c": str(c), "diga.s": str(s), **ctx.tags}))
    return metrics | diag | {"c": float(c), "s": float(s)}


def run(cfg: DigaConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Prepare -> choose c (labeler rule, unless cfg.coefficient) -> one point at cfg.strength."""
    ctx = ctx or RunContext(progress=False)
    t0 = time.perf_counter()
    labeler = labeler_for(cfg)
    prep = prepare(cfg, out, ctx.progress, labeler)
    choice: list[dict] = []
    c = cfg.coefficient
    if c is None:
        if labeler is None:
            raise FairrayError("set labeler=attrclf:DIR to choose c, or fix it with coefficient=C")
        c, choice = choose_coefficient(cfg, prep, labeler, cfg.strength)
    effect = next((r for r in choice if r["c"] == c), {})
    m = diga_point(cfg, c, cfg.strength, out, prep, ctx, labeler)
    result = m | {k: v for k, v in effect.items() if k != "c"} | {
        "cos_w_a_w_b": float(prep.w_a @ prep.w_b), "seconds": time.perf_counter() - t0}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"diga-seed{cfg.classifier.seed}.json").write_text(
        json.dumps(result | {"choice": choice}, indent=2, default=float))
    return result


def grid(cfg: DigaConfig, out: Path, ctx: RunContext | None = None, select: str = "val_worst_group_acc") -> dict:
    """The (c, s) grid as a plain loop (Tune runs the same points as trials); best point by a val metric. Each
    point's classifier run keeps its own diga-c<c>-s<s> name, so ctx.name is not used."""
    ctx = (ctx or RunContext(progress=False)).with_(name=None)
    labeler = labeler_for(cfg)
    prep = prepare(cfg, out, ctx.progress, labeler)
    rows = [diga_point(cfg, c, s, out, prep, ctx, labeler) for c in cfg.coefficients for s in cfg.strengths]
    best = max(rows, key=lambda r: r[select])
    return {"points": rows, "best": best, "select": select}
