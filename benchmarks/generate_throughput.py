"""Generation throughput, one run, three ways, at each n (JSON out):

  (a) naive loop as the seeds do it (FairFace Generator): G forward per batch of 64, each image saved as a PNG file;
  (b) the bare generator on pre-made latents at its best batch size (no encoding, no writing);
  (c) `fairray generate` (Ray Data: latents -> generator actor pool -> canonical Parquet with PNG bytes, or raw
      .npy pixels with --image-format npy, and latents), end to end (Ray start-up included) and in steady state (rows after the first batch left an actor /
      time from then to the last batch), with where the machine's CPU went in steady state by process role
      (`steady_cpu_share`, as in label_throughput.py).

    python benchmarks/generate_throughput.py --checkpoint runs/.../checkpoint_... --n 10000,100000 [--actors 1,2] [--engine ray,process]

Each pipeline run is a fresh process (a cold Ray, as a user's command); (a) and (b) on 5,000 samples.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from pipeline_clock import CpuShare, actors_label, batches, engine_runs, steady_state

from fairray.machine import cpu_description, keep_freed_memory
from fairray.models.generator_io import load_generator, to_images

BASELINE_N = 5_000


def naive(G, z_dim: int, n: int, out: Path, device: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, n, 64):
            images = to_images(G(torch.randn(min(64, n - start), z_dim, device=device)))
            for i, im in enumerate(images):
                Image.fromarray(im).save(out / f"{start + i:06d}.png")
    return n / (time.perf_counter() - t0)


def bare(G, z_dim: int, n: int, device: str) -> tuple[float, int]:
    best = (0.0, 0)
    z = torch.randn(n, z_dim, device=device)
    for bs in (64, 256, 1000):
        with torch.inference_mode():
            G(z[:bs])
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(0, n, bs):
                G(z[i:i + bs])
            if device == "cuda":
                torch.cuda.synchronize()
            best = max(best, (n / (time.perf_counter() - t0), bs))
    return best


def pipeline_run(checkpoint: Path, n: int, device: str, batch_size: int, image_format: str,
                 actors: int | None, engine: str = "ray") -> dict:
    from fairray.generate import generate

    with tempfile.TemporaryDirectory() as d:
        timings = Path(d) / "timings"
        timings.mkdir()
        share = CpuShare(timings)
        share.start()
        t0 = time.time()
        generate(checkpoint, n, Path(d) / "out", batch_size=batch_size, device=device, timings=timings,
                 image_format=image_format, actors=actors, engine=engine,
                 dashboard=False)  # as `fairray generate` starts Ray
        t_end = time.time()
        steady, first, last = steady_state(timings)
        n_batches = len(batches(timings))
        cpu_share = share.summary()
    return {"rows": n, "end_to_end_s": t_end - t0, "end_to_end_img_per_s": n / (t_end - t0),
            "steady_img_per_s": steady, "startup_s": {"total_to_first_batch": first - t0},
            "tail_s": {"write_after_last_batch": t_end - last}, "batches": n_batches, "batch_size": batch_size,
            "steady_cpu_share": cpu_share}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--n", default="10000,100000")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--image-format", default="png", help="comma-separated: png, npy (raw pixels)")
    ap.add_argument("--actors", default="", help="comma-separated actor counts to compare in the same run, e.g. 1,2 "
                    "(default: the pool fairray picks from the cluster's resources)")
    ap.add_argument("--engine", default="ray", help="comma-separated: ray (the Ray Data actor pool), process (the "
                    "same actor code in the command's process, no Ray)")
    ap.add_argument("--repeats", type=int, default=1, help="pipeline runs per format and actor count, interleaved")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/generate_throughput.json"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # one pipeline run of n rows
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(pipeline_run(args.checkpoint, args.child, args.device, args.batch_size,
                                      args.image_format, int(args.actors) if args.actors else None, args.engine)))
        return
    allocator = keep_freed_memory()  # the baselines get the setting fairray's actors run with
    G, cfg = load_generator(args.checkpoint)
    G.to(args.device).train()  # as fairray samples: BatchNorm on batch statistics
    rows = []
    with tempfile.TemporaryDirectory() as d:
        a = naive(G, cfg.z_dim, BASELINE_N, Path(d) / "naive", args.device)
    b, bs = bare(G, cfg.z_dim, BASELINE_N, args.device)
    for n in (int(x) for x in args.n.split(",")):
        for repeat in range(args.repeats):
            for fmt in args.image_format.split(","):
                for engine, actors in engine_runs(args.engine, args.actors):
                    r = subprocess.run([sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--device",
                                        args.device, "--batch-size", str(args.batch_size), "--image-format", fmt,
                                        "--engine", engine,
                                        *(["--actors", str(actors)] if actors else []), "--child", str(n)],
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        raise SystemExit(r.stderr[-3000:])
                    c = json.loads(r.stdout.strip().splitlines()[-1])
                    rows.append({"n": n, "image_format": fmt, "engine": engine,
                                 "actors": actors_label(engine, actors), "repeat": repeat,
                                 "naive_img_per_s": round(a), "bare_img_per_s": round(b), "bare_batch": bs,
                                 "pipeline": c, "steady_over_bare": round(c["steady_img_per_s"] / b, 3),
                                 "end_to_end_over_naive": round(c["end_to_end_img_per_s"] / a, 2)})
                    print(json.dumps(rows[-1], indent=1), flush=True)
    report = {"benchmark": "generate_throughput", "model": cfg.model, "resolution": cfg.resolution,
              "width": cfg.width, "device": args.device, "rows": rows, "baseline_allocator_tuned": allocator,
              "machine": platform.node(), "cpus": torch.get_num_threads(), "cpu": cpu_description(),
              "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
