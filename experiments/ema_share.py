"""Does the EMA generator draw fewer minority faces than the generator it averages? (issue "Generators that learn
their data in minutes": why does a valid unweighted GAN under-draw the minority?)

For each seed directory of a `benchmarks/demo_validity.py` run (`--runs runs/demo-validity`): the unweighted GAN
(the alpha 0 trial) at the end of training, sampled twice on the same 2,000 latents, once with the averaged
weights (`G_ema`, what every fairray metric and sample uses) and once with the raw generator's weights (`G`);
each labelled by that demo's attrclf, with precision/coverage against held-out rows of the demo's data (the
validity rule), and the attrclf's female share on the GAN's training rows as the target.

    python experiments/ema_share.py --runs runs/demo-validity [--results experiments/results/ema_share.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from results_io import write_json

RESULTS = Path(__file__).parent / "results"
EVAL_N, EVAL_SEED = 2000, 7


def one_seed(run: Path) -> dict:
    from fairray.data.loading import load_split
    from fairray.data.reference import heldout_images, reference_images
    from fairray.labelers.attrclf import AttrClfLabeler
    from fairray.metrics.generated import evaluate_samples
    from fairray.metrics.names import count_tag
    from fairray.models.generator_io import load_generator, sample

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
    return row


def labeler_gender(labeler, images: np.ndarray) -> np.ndarray:
    return np.concatenate([labeler.predict_proba(images[i:i + 500])["gender"].argmax(1)
                           for i in range(0, len(images), 500)])


def summary(rows: list[dict]) -> dict:
    out = {"seeds": len(rows), "train_female": mean_sd([r["train_female"] for r in rows])}
    for name in ("ema", "raw"):
        out[name] = {k: mean_sd([float(r[name][k]) for r in rows]) for k in ("female", "precision", "coverage")}
        out[name]["valid"] = sum(r[name]["valid"] for r in rows)
        out[name]["within_3_points"] = sum(abs(r[name]["female"] - r["train_female"]) <= 0.03 for r in rows)
    out["raw_minus_ema_female"] = mean_sd([r["raw"]["female"] - r["ema"]["female"] for r in rows])
    out["raw_above_ema"] = sum(r["raw"]["female"] > r["ema"]["female"] for r in rows)
    return out


def mean_sd(v: list[float]) -> dict:
    return {"mean": float(np.mean(v)), "sd": float(np.std(v))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="a demo_validity.py --out directory (seed*/ inside)")
    ap.add_argument("--results", type=Path, default=RESULTS / "ema_share.json")
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
              f"(p {r['raw']['precision']:.2f} cov {r['raw']['coverage']:.2f})", flush=True)
    write_json(args.results, {"runs": str(args.runs), "eval_n": EVAL_N, "rows": rows, "summary": summary(rows)})


if __name__ == "__main__":
    main()
