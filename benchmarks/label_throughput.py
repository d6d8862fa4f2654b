"""Labeling throughput, one run, three ways, at each n (JSON out):

  (a) naive loop as the seeds do it: PIL open per image, per-image transform, fp32, batch 32;
  (b) the bare model on pre-loaded tensors at its best batch size and dtype;
  (c) fairray's Ray Data pipeline (`fairray.data.pipeline.label`): Parquet -> decode + label actor -> Parquet,
      end to end (Ray start-up included, as a `fairray label` call pays it) and in steady state (rows after the
      first batch left an actor / time from then to the last batch), with the fixed start-up broken down.

    python benchmarks/label_throughput.py --labeler attrclf:DIR --n 10000,100000 [--device cpu|cuda]

Each n runs in a fresh process (a cold Ray, as a user's command); (a) and (b) on the first 5,000 images.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
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

BASELINE_N = 5_000


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


def pipeline_run(data: Path, labeler: str, device: str, batch_size: int, actors: int | None) -> dict:
    """One `label` call in this (fresh) process: end-to-end, steady-state and start-up seconds."""
    from fairray.data.pipeline import label

    with tempfile.TemporaryDirectory() as d:
        timings, stamps = Path(d) / "timings", {}
        timings.mkdir()
        t0 = time.time()
        s = label(LabelConfig(dataset=str(data), labeler=labeler, batch_size=batch_size, actors=actors,
                              ray={"device": device}), Path(d) / "labeled", timings=timings, stamps=stamps)
        batches = sorted((float(t), int(k)) for f in timings.glob("*.txt")
                         for t, k in (line.split() for line in f.read_text().splitlines()))
    n = s["rows_out"]
    first, last = batches[0][0], batches[-1][0]
    after_first = n - batches[0][1]
    return {"rows": n, "end_to_end_s": stamps["done"] - t0, "end_to_end_img_per_s": n / (stamps["done"] - t0),
            "steady_img_per_s": after_first / (last - first) if last > first else float("nan"),
            "startup_s": {"labeler_load_and_domain_check": stamps["labeler_loaded"] - t0,
                          "ray_init": stamps["ray_ready"] - stamps["labeler_loaded"],
                          "plan_and_first_batch": first - stamps["ray_ready"],
                          "total_to_first_batch": first - t0},
            "tail_s": {"write_after_last_batch": stamps["written"] - last,
                       "summary": stamps["done"] - stamps["written"]},
            "batches": len(batches), "batch_size": batch_size}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labeler", required=True)
    ap.add_argument("--n", default="10000,100000", help="comma-separated dataset sizes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--actors", type=int, default=None, help="default: from the cluster's resources")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/label_throughput.json"))
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)  # one pipeline run, JSON to stdout
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(pipeline_run(args.child, args.labeler, args.device, args.batch_size, args.actors)))
        return

    labeler = load_labeler(args.labeler, args.device)
    size = input_size(labeler)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in (int(x) for x in args.n.split(",")):
            data = Path(d) / f"data-{n}"
            synth_dataset.build(SynthConfig(n=n, perc=0, val_frac=0, test_frac=0, resolution=32), data,
                                progress=False)
            blobs = read_table(data, columns=["image"]).image.tolist()[:BASELINE_N]
            images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
            a = naive(blobs, labeler, size, args.device)
            b, bs, dtype = bare(images, labeler, size, args.device)
            cmd = [sys.executable, __file__, "--labeler", args.labeler, "--device", args.device,
                   "--batch-size", str(args.batch_size), "--child", str(data)]
            if args.actors:
                cmd += ["--actors", str(args.actors)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(r.stderr[-3000:])
            c = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append({"n": n, "naive_img_per_s": round(a), "bare_img_per_s": round(b), "bare_batch": bs,
                         "bare_dtype": dtype, "pipeline": c,
                         "steady_over_bare": round(c["steady_img_per_s"] / b, 3),
                         "end_to_end_over_naive": round(c["end_to_end_img_per_s"] / a, 2)})
            print(json.dumps(rows[-1], indent=1), flush=True)
    report = {"benchmark": "label_throughput", "labeler": args.labeler.split(":")[0], "device": args.device,
              "rows": rows, "machine": platform.node(), "cpus": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
