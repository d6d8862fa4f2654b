"""GAN Data Debiasing (Ramaswamy et al., CVPR 2021): complementary latents that keep the target and flip the
protected attribute, rendered as extra training pairs for the downstream classifier.

Steps: sample latents z ~ N(0, I) from a fairray generator -> hallucinate target t and protected g labels on
G(z) with the attribute classifier -> fit linear SVMs (scikit-learn) for t and g in latent space, normalised
to |w| = 1 -> z' = z - (k (w_g.z + b_g) / sin(theta)) g_perp_t with g_perp_t the unit component of w_g orthogonal
to w_t, cos(theta) = w_g.w_t and k = 2 (reflect). Then w_t.z' = w_t.z (target score kept) and
w_g.z' + b_g = -(w_g.z + b_g) (protected score reflected). G(z) keeps (t, g), G(z') gets (t, 1 - g); the
classifier trains on real + both, so each target class sees both protected groups in equal numbers.

The generator is used with *frozen* BatchNorm statistics (`freeze_generator`): with batch statistics a batch of
z' (mostly of the other group) would be re-centred by BatchNorm and the flip partly undone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from fairray.config import FairClassifierConfig, GanConfig, LatentDebiasConfig
from fairray.errors import FairrayError
from fairray.models.generator_io import to_images
from fairray.stage import RunContext

# ---------------------------------------------------------------- generator helpers (shared with directions.py)


@torch.no_grad()
def freeze_generator(G: torch.nn.Module, z_dim: int, n: int = 4096, batch: int = 512, seed: int = 99
                     ) -> torch.nn.Module:
    """Recompute every BatchNorm's running statistics exactly over n latents z ~ N(0, I), then eval():
    G(z) becomes a per-sample function (needed for inversion, edits and flips)."""
    bns = [m for m in G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return G.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    G.train()
    gen = torch.Generator().manual_seed(seed)
    dev = next(G.parameters()).device
    for _ in range(max(1, n // batch)):
        G(torch.randn(batch, z_dim, generator=gen).to(dev))
    return G.eval()


@torch.no_grad()
def render(G: torch.nn.Module, z: np.ndarray | torch.Tensor, batch: int = 500, space: str = "z") -> np.ndarray:
    """uint8 NHWC images of latents z (space="z") or of codes w (space="w", see latents_to_w) with G as it is
    (call freeze_generator first)."""
    from fairray.models.generator_io import synthesize

    z = torch.as_tensor(np.asarray(z, dtype=np.float32))
    dev = next(G.parameters()).device
    run = (lambda c: synthesize(G, c)) if space == "w" else G
    out = [to_images(run(z[i:i + batch].to(dev))) for i in range(0, len(z), batch)]
    res = G.resolution if hasattr(G, "resolution") else 32
    return np.concatenate(out) if out else np.zeros((0, res, res, 3), np.uint8)


def label_probabilities(images: np.ndarray, labeler, heads: list[str], batch: int = 500) -> dict[str, np.ndarray]:
    """Class probabilities per head, from a batched labeler."""
    by_name = {h.name: h for h in labeler.heads}
    missing = [h for h in heads if h not in by_name]
    if missing:
        raise FairrayError(f"labeler has no head(s) {missing}; heads: {list(by_name)}")
    probs: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    for i in range(0, len(images), batch):
        p = labeler.predict_proba(images[i:i + batch])
        for h in heads:
            probs[h].append(p[h])
    return {h: np.concatenate(v) for h, v in probs.items()}


def label_images(images: np.ndarray, labeler, heads: list[str], batch: int = 500) -> dict[str, np.ndarray]:
    """Hard labels (the head's integer codes) per head, from a batched labeler."""
    from fairray.labelers.base import hard_labels

    return hard_labels(label_probabilities(images, labeler, heads, batch), labeler.heads)


def most_confident(probs: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the `fraction` of rows whose labeler probability is most confident (StyleGAN's separability
    protocol keeps half): the hyperplane is fit where the hallucinated labels are trustworthy."""
    k = max(2, round(fraction * len(probs)))
    return np.sort(np.argsort(-probs.max(1), kind="stable")[:k])


def biased_rows_view(dataset: Path, subset: str | None, out: Path) -> Path:
    """A copy of the dataset holding only `subset` rows (the GAN must not see the balanced reference rows), kept
    while the dataset's shards are the ones it was copied from."""
    import shutil

    from fairray.data.table import (
        DATA_DIR,
        MANIFEST,
        ShardWriter,
        read_manifest,
        read_table,
        shard_signature,
        write_manifest,
    )

    if subset is None:
        return Path(dataset)
    out = Path(out)
    source = {"view_of": str(Path(dataset).resolve()), "subset": subset,
              "view_of_rows": shard_signature(Path(dataset))}
    made = read_manifest(out) if (out / MANIFEST).is_file() else {}
    if all(made.get(k) == v for k, v in source.items()):
        return out
    shutil.rmtree(out / DATA_DIR, ignore_errors=True)
    df = read_table(dataset)
    df = df[df.subset == subset].reset_index(drop=True)
    if df.empty:
        raise FairrayError(f"{dataset}: no rows with subset={subset!r}")
    ShardWriter(out).write(df)
    write_manifest(out, read_manifest(dataset) | {"rows": len(df)} | source)
    return out


def ensure_generator(generator: str | None, gan_cfg: GanConfig, clf: FairClassifierConfig, dataset: Path,
                     out: Path) -> Path:
    """The given checkpoint, or a GAN trained once (Ray Train) on the classifier's real training rows."""
    from fairray.models.generator_io import history
    from fairray.train import gan
    from fairray.train.checkpoint import newest_complete

    if generator is not None:
        return Path(generator)
    run_dir = Path(out) / "gan" / "ray_results" / gan_cfg.name
    done = newest_complete(run_dir) if run_dir.is_dir() else None
    past = history(done) if done is not None else []
    if past and past[-1]["kimg"] >= gan_cfg.kimg - 1e-6:
        return done
    view = biased_rows_view(dataset, clf.train_subset, Path(out) / "gan" / "train_rows")
    cfg = gan_cfg.model_copy(update={"dataset": str(view), "resolution": clf.resolution})
    return gan.fit(cfg, view, Path(out) / "gan")


def write_rows(out: Path, images: np.ndarray, columns: dict[str, np.ndarray], weight: float, source: str,
               extra: dict | None = None) -> Path:
    """Generated rows as a canonical dataset (split train) the classifier can add to its training set."""
    import shutil

    from fairray.data.table import ShardWriter, encode_png, write_manifest

    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)  # a re-run with other settings must not keep shards of the last one
    n = len(images)
    df = pd.DataFrame({"image_id": [f"{source}-{i:07d}" for i in range(n)], "source": source,
                       "split": "train", "subset": "generated", **{k: np.asarray(v) for k, v in columns.items()}})
    df["image"] = encode_png(images)
    df["height"] = images.shape[1]
    df["width"] = images.shape[2]
    df["weight"] = float(weight)
    df["error"] = None
    writer = ShardWriter(out)
    for i in range(0, n, 20_000):
        writer.write(df.iloc[i:i + 20_000].reset_index(drop=True))
    write_manifest(out, {"source": source, "rows": n, "shards": writer.n_shards, **(extra or {})})
    return out


# ---------------------------------------------------------------- the method


def fit_hyperplane(z: np.ndarray, labels: np.ndarray, C: float = 1.0, balanced: bool = True, seed: int = 0
                   ) -> tuple[np.ndarray, float]:
    """Linear SVM w.z + b separating labels 1 from 0, rescaled so that |w| = 1 (b in latent units)."""
    from sklearn.svm import LinearSVC

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise FairrayError("a hyperplane needs both classes among the hallucinated labels; sample more latents")
    svm = LinearSVC(C=C, class_weight="balanced" if balanced else None, max_iter=50_000, random_state=seed)
    svm.fit(z, labels)
    w, b = svm.coef_[0].astype(np.float64), float(svm.intercept_[0])
    norm = np.linalg.norm(w)
    return w / norm, b / norm


def complementary_latents(z: np.ndarray, w_t: np.ndarray, w_g: np.ndarray, b_g: float, scale: float = 2.0
                          ) -> np.ndarray:
    """z' = z - (scale (w_g.z + b_g) / sin(theta)) g_perp_t; unit w_t, w_g. scale 2 reflects the protected
    score, 1 puts z' on the protected hyperplane; the target score w_t.z never changes."""
    z = np.asarray(z, dtype=np.float64)
    cos = float(w_g @ w_t)
    perp = w_g - cos * w_t
    sin = float(np.linalg.norm(perp))
    if sin < 1e-6:
        raise FairrayError("target and protected hyperplanes are parallel: no latent direction flips one alone")
    perp /= sin
    dist = z @ w_g + b_g
    return z - (scale * dist / sin)[:, None] * perp[None, :]


def make_pairs(cfg: LatentDebiasConfig, G: torch.nn.Module, z_dim: int, labeler, out: Path) -> dict:
    """Latents -> hallucinated labels -> hyperplanes -> complementary pairs written to <out>/pairs. The
    hyperplanes and flips live in w for a style-based G (its mapping network's output, where StyleGAN's
    attributes separate linearly), in z otherwise (w = z)."""
    from fairray.labelers.base import hard_labels
    from fairray.models.generator_io import latents_to_w

    t_name, g_name = cfg.classifier.target, cfg.classifier.protected
    rng = np.random.default_rng(cfg.seed)
    n_total = cfg.n_svm + cfg.n_pairs
    z = latents_to_w(G, rng.standard_normal((n_total, z_dim)).astype(np.float32))
    space = "w" if hasattr(G, "mapping") else "z"
    images = render(G, z, space=space)
    probs = label_probabilities(images, labeler, [t_name, g_name])
    lab = hard_labels(probs, labeler.heads)
    fit_idx, pair_idx = np.arange(cfg.n_svm), np.arange(cfg.n_svm, n_total)
    fit_t = fit_idx[most_confident(probs[t_name][fit_idx], cfg.svm_confident)]
    fit_g = fit_idx[most_confident(probs[g_name][fit_idx], cfg.svm_confident)]
    w_t, b_t = fit_hyperplane(z[fit_t], lab[t_name][fit_t], cfg.svm_c, cfg.svm_balanced, cfg.seed)
    w_g, b_g = fit_hyperplane(z[fit_g], lab[g_name][fit_g], cfg.svm_c, cfg.svm_balanced, cfg.seed)
    zp = complementary_latents(z[pair_idx], w_t, w_g, b_g, cfg.flip_scale).astype(np.float32)
    flipped = render(G, zp, space=space)
    t, g = lab[t_name][pair_idx], lab[g_name][pair_idx]
    check = label_images(flipped, labeler, [t_name, g_name])  # what the flip did, as the labeler sees it
    verified = (check[t_name] == t) & (check[g_name] == 1 - g)
    keep = verified if cfg.verified_only else np.ones(len(t), bool)
    if not keep.any():
        raise FairrayError("no complementary pair passed the labeler's check (verified_only); sample more pairs")
    t, g = t[keep], g[keep]
    both = np.concatenate([images[pair_idx][keep], flipped[keep]])
    cols = {t_name: np.concatenate([t, t]), g_name: np.concatenate([g, 1 - g]),
            "pair": np.concatenate([np.zeros(len(t), int), np.ones(len(t), int)])}
    path = write_rows(out / "pairs", both, cols, cfg.synthetic_weight, "latent-pairs",
                      {"method": "gan-data-debiasing", "n_pairs": int(len(t))})
    np.savez(out / "hyperplanes.npz", w_t=w_t, b_t=b_t, w_g=w_g, b_g=b_g)
    diag = {
        "hyperplanes_in_w": float(space == "w"),
        "svm_acc_target": float(((z[fit_t] @ w_t + b_t > 0) == lab[t_name][fit_t]).mean()),
        "svm_acc_protected": float(((z[fit_g] @ w_g + b_g > 0) == lab[g_name][fit_g]).mean()),
        "cos_theta": float(w_g @ w_t),
        "hallucinated_share_protected_1": float(lab[g_name][pair_idx].mean()),
        "pairs_target_kept": float((check[t_name] == lab[t_name][pair_idx]).mean()),
        "pairs_protected_flipped": float((check[g_name] == 1 - lab[g_name][pair_idx]).mean()),
        "pairs_verified": float(verified.mean()),
        "pairs_used": int(keep.sum()),
    }
    return {"pairs": str(path), **diag}


def run(cfg: LatentDebiasConfig, out: Path, ctx: RunContext | None = None) -> dict:
    """Generator (given or trained) -> pairs -> classifier on real + pairs; metrics + flip diagnostics. The
    classifier's MLflow run is ctx.name (default latent-seed<seed>) under ctx.parent, tagged ctx.tags."""
    from fairray.labelers.registry import load_labeler
    from fairray.models.generator_io import load_generator
    from fairray.train import classifier

    if cfg.labeler is None:
        raise FairrayError("set labeler=attrclf:DIR (train one with `fairray train-attrclf`)")
    ctx, out = ctx or RunContext(progress=False), Path(out)
    dataset = classifier.dataset_path(cfg.classifier, out, ctx.progress)
    clf = classifier.for_dataset(cfg.classifier, dataset)
    # the classifier's tracking section is where this stage logs when the caller brings no tracker
    tracker = ctx.tracker_for(out, clf)
    t0 = time.perf_counter()
    ckpt = ensure_generator(cfg.generator, cfg.gan, clf, dataset, out)
    G, gcfg = load_generator(ckpt)
    if gcfg.resolution != clf.resolution:
        raise FairrayError(f"generator makes {gcfg.resolution} px images, the classifier wants {clf.resolution}")
    freeze_generator(G, gcfg.z_dim)
    work = out / f"latent-seed{cfg.seed}"
    work.mkdir(parents=True, exist_ok=True)
    with tqdm(total=2, desc="latent debiasing", disable=not ctx.progress) as bar:
        diag = make_pairs(cfg, G, gcfg.z_dim, load_labeler(cfg.labeler), work)
        bar.update(1)
        ccfg = clf.model_copy(update={"dataset": str(dataset), "augment_data": [*clf.augment_data, diag["pairs"]]})
        metrics = classifier.run(ccfg, work, ctx.with_(tracker=tracker, name=ctx.name or f"latent-seed{cfg.seed}",
                                                       tags={"fairray.method": "latent", **ctx.tags}))
        bar.update(1)
    result = metrics | {k: v for k, v in diag.items() if k != "pairs"} | {
        "generator": str(ckpt), "seconds": time.perf_counter() - t0}
    (work / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    return result
