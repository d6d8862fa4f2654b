"""Your own faces in five commands: read -> train-attrclf -> label -> balance -> train-gan, as a user types them.

No face data set can be downloaded on this machine, so the folder stands in for one: 1,600 SynthFaces renders at
128 px saved as JPEG files in UTKFace's layout (`[age]_[gender]_[race]_[date].jpg.chip.jpg`), plus the files real
downloads hold (empty, truncated, an HTML page, random bytes) and valid-but-awkward ones (16-bit PNG, CMYK JPEG,
EXIF-rotated JPEG): `fairray.data.facefolder.write_utkface`. Each command runs as its own `fairray` process, so the
wall times include Ray's start-up, as a user sees them.

    python experiments/own_faces.py --seeds 0,1,2 --out runs/own-faces      # ~4 min per seed on 2 cores

Writes experiments/results/own_faces.json after every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from results_io import write_json

from fairray.data.facefolder import write_utkface

RESULTS = Path(__file__).parent / "results"
N_FACES = 1_600


def fairray(*args: object, log: Path) -> float:
    """Run one `fairray` command in its own process; its output goes to `log`. Returns the wall seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "fairray.cli", *map(str, args)], stdout=f, stderr=subprocess.STDOUT,
                           env=os.environ | {"RAY_AUTH_MODE": "disabled"})
    text = log.read_text()
    if r.returncode != 0 or "Traceback" in text:
        raise SystemExit(f"{args[0]} failed (exit {r.returncode}); see {log}")
    return time.perf_counter() - t0


def one_seed(seed: int, out: Path, gan_kimg: float) -> dict:
    out = out / f"seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_utkface(out / "src", N_FACES, seed=seed, resolution=128)
    t = {}
    t["read"] = fairray("read", "utkface", out / "src", "--out", out / "table", log=out / "read.log")
    t["train-attrclf"] = fairray("train-attrclf", "--set", f"dataset={out / 'table'}", "--set", "resolution=64",
                                 "--set", f"seed={seed}", "--out", out / "clf", log=out / "attrclf.log")
    labeler = f"attrclf:{out / 'clf' / 'attrclf'}"
    t["label"] = fairray("label", out / "table", "--labeler", labeler, "--out", out / "labeled", log=out / "label.log")
    t["balance"] = fairray("balance", out / "labeled", "--by", "gender", "--out", out / "balanced",
                           log=out / "balance.log")
    t["train-gan"] = fairray("train-gan", "--set", f"dataset={out / 'balanced'}", "--set", f"kimg={gan_kimg}",
                             "--set", f"seed={seed}", "--labeler", labeler, "--out", out / "gan", log=out / "gan.log")
    clf = json.loads((out / "clf" / "attrclf" / "metrics.json").read_text())
    lab = json.loads((out / "labeled" / "summary.json").read_text())
    bal = json.loads((out / "balanced" / "summary.json").read_text())
    gan = json.loads((out / "gan" / "gan_metrics.json").read_text())
    return {"seed": seed, "files": N_FACES + 7, "seconds": t,
            "attrclf_test_acc": {k[4:-5]: v for k, v in clf.items() if k.startswith("acc_") and k.endswith("_test")},
            "label_rows_in": lab["rows_in"], "label_rows_out": lab["rows_out"], "label_errors": lab["errors"],
            "label_gender_agreement": lab["heads"]["gender"]["agreement_with_ground_truth"],
            "labeler_domain_mismatch": lab["labeler_domain_mismatch"],
            "balanced_rows": bal["rows_out"], "gan": gan}


def summarize(runs: list[dict]) -> dict:
    def ms(values: list[float]) -> dict:
        v = np.asarray(values, dtype=float)
        return {"mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()), "max": float(v.max())}

    s = {"seeds": len(runs), "attrclf_gender_test_acc": ms([r["attrclf_test_acc"]["gender"] for r in runs]),
         "attrclf_seconds": ms([r["seconds"]["train-attrclf"] for r in runs]),
         "total_seconds": ms([sum(r["seconds"].values()) for r in runs]),
         "label_gender_agreement": ms([r["label_gender_agreement"] for r in runs]),
         "rows_in_eq_rows_out": all(r["label_rows_in"] == r["label_rows_out"] == r["files"] for r in runs)}
    for k in ("share_gender_1", "precision", "coverage", "valid"):
        vals = [v for r in runs for name, v in r["gan"].items() if name.startswith(k + "_") and name.count("_") ==
                k.count("_") + 1]
        if vals:
            s[f"gan_{k}"] = ms(vals)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=Path("runs/own-faces"))
    ap.add_argument("--gan-kimg", type=float, default=40.0, help="the demo's GAN budget")
    args = ap.parse_args()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs.append(one_seed(seed, args.out, args.gan_kimg))
        write_json(RESULTS / "own_faces.json", {
            "faces": N_FACES, "layout": "utkface, 128 px JPEG + 7 broken/awkward files", "gan_kimg": args.gan_kimg,
            "runs": runs, "summary": summarize(runs)})
        print(json.dumps(runs[-1], indent=1))


if __name__ == "__main__":
    main()
