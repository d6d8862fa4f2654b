"""Labeling throughput, one run, three ways (JSON out):

  (a) naive loop as the seeds do it: PIL open per image, per-image transform, fp32, batch 32;
  (b) the bare model on pre-loaded tensors at its best batch size and dtype;
  (c) fairray's Ray Data pipeline, Parquet -> decode tasks -> labeler actor pool -> Parquet.

    python benchmarks/label_throughput.py --labeler attrclf:DIR [--n 20000] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fairray.config import LabelConfig, SynthConfig
from fairray.data import synth_dataset
from fairray.data.table import read_table
from fairray.labelers.base import to_model_input
from fairray.labelers.registry import input_size, load_labeler


def naive(blobs: list[bytes], labeler, size: int, device: str) -> float:
    t0 = time.perf_counter()
    batch = []
    for b in blobs:
        im = Image.open(io.BytesIO(b)).convert("RGB").resize((size, size))
        batch.append(torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float() / 255)
        if len(batch) == 32:
            with torch.no_grad():
                labeler.model(torch.stack(batch).to(device))
            batch = []
    return len(blobs) / (time.perf_counter() - t0)


def bare(images: np.ndarray, labeler, size: int, device: str) -> tuple[float, int, str]:
    best = (0.0, 0, "fp32")
    x_all = to_model_input(images, size, device)
    for dtype in ([torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]):
        for bs in (64, 256, 1024):
            with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=dtype != torch.float32):
                labeler.model(x_all[:bs])
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for i in range(0, len(x_all), bs):
                    labeler.model(x_all[i:i + bs])
                if device == "cuda":
                    torch.cuda.synchronize()
                rate = len(x_all) / (time.perf_counter() - t0)
            if rate > best[0]:
                best = (rate, bs, "bf16" if dtype == torch.bfloat16 else "fp32")
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labeler", required=True)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/label_throughput.json"))
    args = ap.parse_args()
    from fairray.data.pipeline import label

    labeler = load_labeler(args.labeler, args.device)
    size = input_size(labeler)
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        synth_dataset.build(SynthConfig(n=args.n, perc=0, val_frac=0, test_frac=0, resolution=32), data,
                            progress=False)
        blobs = read_table(data, columns=["image"]).image.tolist()
        images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs[:5000]])
        a = naive(blobs[:5000], labeler, size, args.device)
        b, bs, dtype = bare(images, labeler, size, args.device)
        t0 = time.perf_counter()
        label(LabelConfig(dataset=str(data), labeler=args.labeler, batch_size=512,
                          ray={"device": args.device}), Path(d) / "labeled")
        c = args.n / (time.perf_counter() - t0)
    report = {"benchmark": "label_throughput", "labeler": args.labeler.split(":")[0], "device": args.device,
              "n": args.n, "naive_img_per_s": round(a), "bare_img_per_s": round(b), "bare_batch": bs,
              "bare_dtype": dtype, "pipeline_img_per_s": round(c), "pipeline_over_bare": round(c / b, 3),
              "pipeline_over_naive": round(c / a, 2), "note": "pipeline time includes Ray Data startup",
              "machine": platform.node(), "cpus": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
