"""Labeling (and density-ratio) throughput, one run, three ways, at each n (JSON out):

  (a) naive loop as the seeds do it: PIL open per image, per-image transform, fp32, batch 32;
  (b) the bare model on pre-loaded tensors at its best batch size and dtype; on CPU also one one-thread process per
      CPU at once (`bare_one_thread_per_cpu`: the ceiling of a pool of one-thread actors);
  (c) fairray's Ray Data pipeline (`fairray.data.pipeline.label`, or with --stage ratio the fairgen density-ratio
      pass `fairray.debias.reweight.weight_pass`): Parquet -> decode + model actor -> Parquet, end to end (Ray
      start-up included, as a command pays it) and in steady state (rows after the first batch left an actor /
      time from then to the last batch), with the fixed start-up broken down, and where the machine's CPU went in
      steady state by process role (`steady_cpu_share`: model actors, driver, read/write tasks, raylet, ...).

    python benchmarks/label_throughput.py --labeler attrclf:DIR --n 10000,100000 [--device cpu|cuda]
    python benchmarks/label_throughput.py --stage ratio --n 10000,100000    # the ratio classifier (random weights)
    python benchmarks/label_throughput.py --labeler attrclf:DIR --actors 1,2 --repeats 2   # actor pools compared
    python benchmarks/label_throughput.py --labeler attrclf:DIR --engine ray,process   # Ray Data vs in process

Each n runs in a fresh process (a cold Ray, as a user's command); (a) and (b) on the first 5,000 images. With
--actors, each actor count runs against the same (a) and (b); --repeats interleaves runs of every format and count.
With --address the pipeline joins a running cluster instead (`ray start --head` first: the warm machine of the
start-up goal): each n runs twice, the first job on the cluster (which also creates Ray Data's detached
coordinator actors) and then the measured one.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pipeline_clock import CpuShare, actors_label, batches, engine_runs, steady_state

from fairray.config import LabelConfig, SynthConfig
from fairray.data import synth_dataset
from fairray.data.table import read_table
from fairray.labelers.base import to_model_input
from fairray.labelers.registry import input_size, load_labeler
from fairray.machine import cpu_description, keep_freed_memory, resolve_precision

BASELINE_N = 5_000


def naive(blobs: list[bytes], model, size: int, device: str) -> float:
    t0 = time.perf_counter()
    batch = []
    for b in blobs:
        im = Image.open(io.BytesIO(b)).convert("RGB").resize((size, size))
        batch.append(torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float() / 255)
        if len(batch) == 32:
            with torch.no_grad():
                model(torch.stack(batch).to(device))
            batch = []
    return len(blobs) / (time.perf_counter() - t0)


def model_rate(model, x: torch.Tensor, bs: int, bf16: bool, device: str, passes: int = 1) -> float:
    """img/s of the model on pre-converted inputs, `passes` times over x in batches of bs, after one warm-up batch."""
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        model(x[:bs])
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(passes):
            for i in range(0, len(x), bs):
                model(x[i:i + bs])
        if device == "cuda":
            torch.cuda.synchronize()
        return passes * len(x) / (time.perf_counter() - t0)


def bare(images: np.ndarray, model, size: int, device: str) -> tuple[float, int, str]:
    best = (0.0, 0, "fp32")
    x_all = to_model_input(images, size, device)
    bf16 = resolve_precision(device, "auto") == "bf16"  # CUDA, or a CPU with native bf16 (emulated bf16 is slower)
    for dtype in (["fp32", "bf16"] if bf16 else ["fp32"]):
        for bs in (64, 256, 1024):
            rate = model_rate(model, x_all, bs, dtype == "bf16", device)
            if rate > best[0]:
                best = (rate, bs, dtype)
    return best


def load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, int]:
    """The stage's model and input size: the labeler's, or a density-ratio classifier (random weights)."""
    if args.stage == "label":
        labeler = load_labeler(args.labeler, args.device)
        return labeler.model, input_size(labeler)
    from fairray.models.classifiers import AttributeClassifier, ClassifierConfig

    state, _ = ratio_model()
    model = AttributeClassifier(ClassifierConfig(**state["config"])).eval()
    model.load_state_dict(state["state_dict"])
    return model, 32


def bare_child(args: argparse.Namespace) -> float:
    """One process of bare_processes: the model on one thread, at the batch and dtype given, three passes."""
    torch.set_num_threads(1)
    keep_freed_memory()
    model, size = load_model(args)
    x = to_model_input(np.load(args.child_bare), size, "cpu")
    return model_rate(model, x, args.batch_size, args.precision == "bf16", "cpu", passes=3)


def bare_processes(args: argparse.Namespace, images: np.ndarray, bs: int, dtype: str) -> float:
    """The bare model as a CPU pool of one-thread actors runs it: one one-thread process per CPU, all at once, on
    the images, batch and dtype of (b); their img/s summed. The ceiling of such a pool on this machine."""
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "images.npy", images)
        cmd = [sys.executable, __file__, "--stage", args.stage, "--device", "cpu", "--batch-size", str(bs),
               "--precision", dtype, "--child-bare", str(Path(d) / "images.npy")]
        cmd += ["--labeler", args.labeler] if args.labeler else []
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
                 for _ in range(os.cpu_count() or 1)]
        return sum(float(p.communicate()[0].strip().splitlines()[-1]) for p in procs)


def ratio_model() -> tuple[dict, dict]:
    """A density-ratio classifier as `fairray debias ratio` builds it (ReweightConfig's size), random weights, and
    an identity calibration: its throughput does not depend on what it learnt."""
    from fairray.config import ReweightConfig
    from fairray.debias.reweight import cnn_state
    from fairray.models.classifiers import AttributeClassifier, ClassifierConfig

    cfg = ReweightConfig(dataset="-")
    state = cnn_state(cfg, {})
    state["state_dict"] = AttributeClassifier(ClassifierConfig(**state["config"])).state_dict()
    return state, {"method": "temperature", "temperature": 1.0}


def pipeline_run(data: Path, stage: str, labeler: str | None, device: str, batch_size: int, actors: int | None,
                 precision: str = "auto", engine: str = "ray") -> dict:
    """One `label` call (or one density-ratio pass) in this (fresh) process: end-to-end, steady-state, start-up.
    engine: LabelConfig.engine (ray: the Ray Data actor pool; process: the same stage in this process, no Ray)."""
    from fairray.data.pipeline import label
    from fairray.debias.reweight import weight_pass
    from fairray.ray_env import init_ray

    with tempfile.TemporaryDirectory() as d:
        timings, stamps = Path(d) / "timings", {}
        timings.mkdir()
        share = CpuShare(timings)
        share.start()
        t0 = time.time()
        if stage == "label":
            s = label(LabelConfig(dataset=str(data), labeler=labeler, batch_size=batch_size, actors=actors,
                                  engine=engine, ray={"device": device, "precision": precision}),
                      Path(d) / "labeled",
                      timings=timings, stamps=stamps, dashboard=False)  # as `fairray label` starts it
            n = s["rows_out"]
            assert s["engine"] == engine, s["engine"]
        else:
            state, calib = ratio_model()
            if engine == "ray":
                init_ray(dashboard=False)
            weight_pass(data, Path(d) / "weighted", state, calib, clip_max=1e9, progress=False, timings=timings,
                        actors=actors, engine=engine)
            stamps = {"done": time.time()}
            n = len(read_table(Path(d) / "weighted", columns=["weight"]))
        steady, first, last = steady_state(timings)
        n_batches = len(batches(timings))
        cpu_share = share.summary()
    if stage != "label":
        return {"rows": n, "end_to_end_s": stamps["done"] - t0, "end_to_end_img_per_s": n / (stamps["done"] - t0),
                "steady_img_per_s": steady, "startup_s": {"total_to_first_batch": first - t0},
                "tail_s": {"write_after_last_batch": stamps["done"] - last}, "batches": n_batches,
                "steady_cpu_share": cpu_share}
    return {"rows": n, "end_to_end_s": stamps["done"] - t0, "end_to_end_img_per_s": n / (stamps["done"] - t0),
            "steady_img_per_s": steady,
            "startup_s": {"labeler_load_and_domain_check": stamps["labeler_loaded"] - t0,
                          "ray_init": stamps["ray_ready"] - stamps["labeler_loaded"],
                          "plan_and_first_batch": first - stamps["ray_ready"],
                          "total_to_first_batch": first - t0},
            "tail_s": {"write_after_last_batch": stamps["written"] - last,
                       "summary": stamps["done"] - stamps["written"]},
            "batches": n_batches, "batch_size": batch_size, "steady_cpu_share": cpu_share}


def pipeline_child(args: argparse.Namespace, data: Path, actors: int | None, engine: str = "ray") -> dict:
    """One pipeline run in a fresh process (its own Ray driver), twice against a given cluster (the first job
    there also starts Ray Data's coordinator actors). actors None: the pool fairray picks."""
    cmd = [sys.executable, __file__, "--stage", args.stage, "--device", args.device, "--engine", engine,
           "--batch-size", str(args.batch_size), "--precision", args.precision, "--child", str(data)]
    if args.labeler:
        cmd += ["--labeler", args.labeler]
    if actors:
        cmd += ["--actors", str(actors)]
    env = os.environ | ({"RAY_ADDRESS": args.address} if args.address else {})
    runs = []
    for _ in range(2 if args.address else 1):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-3000:])
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    c = runs[-1]
    if args.address:
        c["first_job_on_cluster"] = runs[0]
    return c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=("label", "ratio"), default="label")
    ap.add_argument("--labeler", default=None, help="label stage: attrclf:DIR | fairface:FILE | clip:...")
    ap.add_argument("--n", default="10000,100000", help="comma-separated dataset sizes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=LabelConfig.model_fields["batch_size"].default)
    ap.add_argument("--actors", default="", help="comma-separated actor counts to compare in the same "
                    "run, e.g. 1,2 (default: the pool fairray picks from the cluster's resources)")
    ap.add_argument("--repeats", type=int, default=1, help="pipeline runs per format and actor count, interleaved "
                    "(the VM's speed drifts by 10%% within minutes)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="the labeling actors' autocast (RayConfig.precision; auto: bf16 on CUDA and native-bf16 CPUs)")
    ap.add_argument("--image-format", default="png", help="comma-separated formats of the labeled table's image bytes "
                    "(png, npy: raw pixels, SynthConfig.image_format); the baselines read the PNGs")
    ap.add_argument("--engine", default="ray", help="comma-separated: ray (the Ray Data actor pool), "
                    "process (the same stage in the command's process, no Ray: what `fairray label` picks for a "
                    "one-actor pool on a Ray of its own)")
    ap.add_argument("--address", default=None, help="join this running Ray cluster (default: a fresh local Ray)")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<stage>_throughput.json")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)  # one pipeline run, JSON to stdout
    ap.add_argument("--child-bare", type=Path, default=None, help=argparse.SUPPRESS)  # one of bare_processes
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(pipeline_run(args.child, args.stage, args.labeler, args.device, args.batch_size,
                                      int(args.actors) if args.actors else None, args.precision, args.engine)))
        return
    if args.child_bare is not None:
        print(bare_child(args))
        return
    if args.stage == "label" and args.labeler is None:
        raise SystemExit("--labeler is required for --stage label")
    model, size = load_model(args)
    # the bare model at its best: the allocator setting fairray's actors use (machine.keep_freed_memory) is worth
    # up to 1.6x on CPU, and without it this process's speed depended on what it had allocated before
    allocator = keep_freed_memory()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in (int(x) for x in args.n.split(",")):
            data = Path(d) / f"data-{n}"
            synth_dataset.build(SynthConfig(n=n, perc=0, val_frac=0, test_frac=0, resolution=32), data,
                                progress=False)
            blobs = read_table(data, columns=["image"]).image.tolist()[:BASELINE_N]
            images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
            a = naive(blobs, model, size, args.device)
            b, bs, dtype = bare(images, model, size, args.device)
            b1 = bare_processes(args, images, bs, dtype) if args.device == "cpu" else None
            formats = {}
            for fmt in args.image_format.split(","):
                if fmt != "png":  # the same rows and pixels, other bytes
                    formats[fmt] = Path(d) / f"data-{n}-{fmt}"
                    synth_dataset.build(SynthConfig(n=n, perc=0, val_frac=0, test_frac=0, resolution=32,
                                                    image_format=fmt), formats[fmt], progress=False)
                else:
                    formats[fmt] = data
            for repeat in range(args.repeats):
                for fmt, path in formats.items():
                    for engine, actors in engine_runs(args.engine, args.actors):
                        c = pipeline_child(args, path, actors, engine)
                        rows.append({"n": n, "image_format": fmt, "engine": engine,
                                     "actors": actors_label(engine, actors), "repeat": repeat,
                                     "naive_img_per_s": round(a), "bare_img_per_s": round(b), "bare_batch": bs,
                                     "bare_one_thread_per_cpu_img_per_s": b1 and round(b1),
                                     "bare_dtype": dtype, "pipeline": c,
                                     "steady_over_bare": round(c["steady_img_per_s"] / b, 3),
                                     "end_to_end_over_naive": round(c["end_to_end_img_per_s"] / a, 2)})
                        print(json.dumps(rows[-1], indent=1), flush=True)
    report = {"benchmark": "label_throughput", "stage": args.stage,
              "labeler": args.labeler.split(":")[0] if args.labeler else "ratio classifier", "device": args.device,
              "ray": args.address or "local, started by the command",
              "pipeline_precision": resolve_precision(args.device, args.precision),
              "rows": rows, "baseline_allocator_tuned": allocator, "machine": platform.node(), "cpus": torch.get_num_threads(), "cpu": cpu_description(),
              "date": time.strftime("%Y-%m-%d")}
    out = args.out or Path(f"benchmarks/results/{args.stage}_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
