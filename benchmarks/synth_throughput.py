"""SynthFaces render throughput on one core: batched renderer vs a plain per-image loop (same code, batch 1).

    python benchmarks/synth_throughput.py [--out benchmarks/results/synth_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairray.data.bias import BiasSpec, sample_attributes
from fairray.data.synthetic import render, render_chunked, sample_nuisance
from fairray.data.table import encode_png


def rate(fn, n: int, repeats: int = 3) -> float:
    fn()  # warm-up (allocator, noise bank)
    best = min(_timed(fn) for _ in range(repeats))
    return n / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/synth_throughput.json"))
    ap.add_argument("--n", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = pd.concat([sample_attributes(args.n, BiasSpec(), rng), sample_nuisance(args.n, rng)], axis=1)
    loop_rows = rows.iloc[:256]
    results = {}
    for res in (32, 64, 128):
        batched = rate(lambda r=res: render_chunked(rows, r), args.n)
        per_image = rate(lambda r=res: [render(loop_rows.iloc[i:i + 1], r) for i in range(len(loop_rows))],
                         len(loop_rows), repeats=1)
        imgs = render_chunked(rows.iloc[:1024], res).numpy()
        png = rate(lambda im=imgs: encode_png(im), len(imgs), repeats=1)
        results[f"{res}px"] = {"batched_img_per_s": round(batched), "per_image_loop_img_per_s": round(per_image),
                               "speedup": round(batched / per_image, 1), "png_encode_img_per_s": round(png)}
        print(f"{res:>4}px  batched {batched:8.0f} img/s   per-image loop {per_image:7.0f} img/s   "
              f"x{batched / per_image:.1f}   png encode {png:7.0f} img/s")
    report = {
        "benchmark": "synth_throughput", "threads": 1, "chunk": "min(256, 2**20 // res**2)", "n": args.n, "goal_64px_img_per_s": 2000,
        "meets_goal": results["64px"]["batched_img_per_s"] >= 2000, "results": results,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
