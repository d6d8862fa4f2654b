"""Why does a valid unweighted GAN under-draw the minority? (issue "Generators that learn their data in minutes")

For each seed directory of a `benchmarks/demo_validity.py` run (`--runs runs/demo-validity`), the unweighted GAN
(the alpha 0 trial) at the end of training, and the attrclf's female share on the GAN's training rows as the target:

* EMA vs raw weights: sampled on the same 2,000 latents with the averaged weights (`G_ema`, what every fairray
  metric and sample uses) and with the raw generator's (`G`), each labelled by that demo's attrclf, with
  precision/coverage against held-out rows of the demo's data (the validity rule).
* The discriminator's view: D's logit on 8,000 EMA samples, split by the attrclf's gender label, and the female share
  after discriminator rejection sampling (Azadi et al. 2019; each sample weighted by exp(logit), the density ratio
  p_data / p_g a logistic D estimates): were the under-drawn minority visible to D, its samples would score higher.

    python experiments/minority_share.py --runs runs/demo-validity [--results experiments/results/minority_share.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from results_io import write_json

RESULTS = Path(__file__).parent / "results"
EVAL_N, EVAL_SEED, DRS_N = 2000, 7, 8000


def one_seed(run: Path) -> dict:
    from fairray.data.loading import load_split
    from fairray.data.reference import heldout_images, reference_images
    from fairray.labelers.attrclf import AttrClfLabeler
    from fairray.metrics.generated import evaluate_samples
    from fairray.metrics.names import count_tag
    from fairray.models.generator_io import build_models, load_generator, sample
    from fairray.train.checkpoint import load_state

    checkpoint = sorted((run / "campaign" / "trials").glob("*_00000/ray_results/gan/checkpoint_2*"))[-1]
    labeler = AttrClfLabeler(next((run / "attrclf_run").rglob("model.pt")).parent)
    data = run / "data" / "synthfaces"
    train, _ = load_split(data, "train", [], size=32)
    held, ref = heldout_images(data, 32, EVAL_N), reference_images(data, 32, EVAL_N)
    tag = count_tag(EVAL_N)
    row = {"seed": run.name, "train_female": float(np.mean(labeler_gender(labeler, train) == 1))}
    for name, ema in (("ema", True), ("raw", False)):
        G, cfg = load_generator(checkpoint, ema=ema)
        images, _ = sample(G, EVAL_N, G.z_dim, seed=EVAL_SEED)
        m = evaluate_samples(images, labeler, ["gender"], reference=ref, heldout=held)
        row[name] = {"female": m[f"share_gender_1_{tag}"], "precision": m[f"precision_{tag}"],
                     "coverage": m[f"coverage_{tag}"], "valid": bool(m[f"valid_{tag}"]),
                     "fd_attrclf": m[f"fd_attrclf_{tag}"]}
    row["kimg"], row["ema_kimg"], row["ema_rampup"] = cfg.kimg, cfg.ema_kimg, cfg.ema_rampup
    G, _ = load_generator(checkpoint)
    _, D = build_models(cfg)
    D.load_state_dict(load_state(checkpoint)["D"])
    images, _ = sample(G, DRS_N, G.z_dim, seed=EVAL_SEED)
    logit, female = d_logits(D.eval(), images), labeler_gender(labeler, images) == 1
    w = np.exp(logit - logit.max())
    row["discriminator"] = {"female": float(female.mean()), "female_drs": float((w * female).sum() / w.sum()),
                            "effective_sample_size": float(w.sum() ** 2 / (w ** 2).sum()),
                            "logit_female_samples": float(logit[female].mean()),
                            "logit_male_samples": float(logit[~female].mean()),
                            "logit_training_rows": float(d_logits(D, train[:DRS_N]).mean())}
    return row


def d_logits(D, images: np.ndarray) -> np.ndarray:
    """D's logits on uint8 images, fed as in training (`to_unit`), in batches of D's minibatch-stddev groups."""
    import torch

    from fairray.train.loop import to_unit

    out = []
    with torch.no_grad():
        for i in range(0, len(images), 500):
            out.append(D(to_unit(torch.from_numpy(images[i:i + 500]), "cpu", signed=True)).float().flatten().numpy())
    return np.concatenate(out)


def labeler_gender(labeler, images: np.ndarray) -> np.ndarray:
    from fairray.debias.latent import label_images

    return label_images(images, labeler, ["gender"])["gender"]


def summary(rows: list[dict]) -> dict:
    out = {"seeds": len(rows), "train_female": mean_sd([r["train_female"] for r in rows])}
    for name in ("ema", "raw"):
        out[name] = {k: mean_sd([float(r[name][k]) for r in rows]) for k in ("female", "precision", "coverage")}
        out[name]["valid"] = sum(r[name]["valid"] for r in rows)
        out[name]["within_3_points"] = sum(abs(r[name]["female"] - r["train_female"]) <= 0.03 for r in rows)
    out["raw_minus_ema_female"] = mean_sd([r["raw"]["female"] - r["ema"]["female"] for r in rows])
    out["raw_above_ema"] = sum(r["raw"]["female"] > r["ema"]["female"] for r in rows)
    if all("discriminator" in r for r in rows):
        d = [r["discriminator"] for r in rows]
        out["discriminator"] = {
            "female": mean_sd([x["female"] for x in d]), "female_drs": mean_sd([x["female_drs"] for x in d]),
            "logit_female_minus_male": mean_sd([x["logit_female_samples"] - x["logit_male_samples"] for x in d]),
            "logit_training_rows_minus_samples": mean_sd([x["logit_training_rows"] - np.average(
                [x["logit_female_samples"], x["logit_male_samples"]], weights=[x["female"], 1 - x["female"]])
                for x in d])}
    return out


def mean_sd(v: list[float]) -> dict:
    return {"mean": float(np.mean(v)), "sd": float(np.std(v))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="a demo_validity.py --out directory (seed*/ inside)")
    ap.add_argument("--results", type=Path, default=RESULTS / "minority_share.json")
    args = ap.parse_args()
    seeds = sorted(p for p in args.runs.glob("seed*") if p.is_dir())
    if not seeds:
        raise SystemExit(f"ema_share: no seed*/ directories in {args.runs} (run benchmarks/demo_validity.py first)")
    rows = []
    for run in seeds:
        rows.append(one_seed(run))
        r = rows[-1]
        print(f"{r['seed']}: train {r['train_female']:.3f}  ema {r['ema']['female']:.3f} "
              f"(p {r['ema']['precision']:.2f} cov {r['ema']['coverage']:.2f})  raw {r['raw']['female']:.3f} "
              f"(p {r['raw']['precision']:.2f} cov {r['raw']['coverage']:.2f})  D logit female "
              f"{r['discriminator']['logit_female_samples']:+.2f} male {r['discriminator']['logit_male_samples']:+.2f}"
              f" real {r['discriminator']['logit_training_rows']:+.2f}  after DRS {r['discriminator']['female_drs']:.3f}",
              flush=True)
    write_json(args.results, {"runs": str(args.runs), "eval_n": EVAL_N, "rows": rows, "summary": summary(rows)})


if __name__ == "__main__":
    main()
