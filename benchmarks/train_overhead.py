"""Fixed cost of one Ray Train run on this machine: a no-op TorchTrainer fit (1 worker, one report with a
checkpoint) with Ray Train's default controller poll interval (2 s) vs fairray's (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S);
each setting in a fresh process with its own local Ray; JSON out.

    python benchmarks/train_overhead.py [--repeats 3] [--interval 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import os, sys, tempfile, time
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray, ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

def loop(config):
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "x"), "w").write("1")
        ray.train.report({"ok": 1}, checkpoint=ray.train.Checkpoint.from_directory(d))

ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
times = []
with tempfile.TemporaryDirectory() as store:
    for i in range(int(sys.argv[1])):
        t0 = time.perf_counter()
        TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                     run_config=RunConfig(name=f"r{i}", storage_path=store)).fit()
        times.append(time.perf_counter() - t0)
print("TIMES", *times)
"""


def measure(repeats: int, interval: float | None) -> list[float]:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_TRAIN_V2_ENABLED="1")
    env.pop("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", None)
    if interval is not None:
        env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(interval)
    out = subprocess.run([sys.executable, "-c", CHILD, str(repeats)], capture_output=True, text=True, env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("TIMES")), None)
    if line is None:
        sys.exit(f"benchmark child failed:\n{out.stderr[-2000:]}")
    return [float(v) for v in line.split()[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.25, help="fairray's controller poll interval, seconds")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_overhead.json")
    args = ap.parse_args()
    default = measure(args.repeats, None)
    tuned = measure(args.repeats, args.interval)
    result = {"benchmark": "train_overhead", "repeats": args.repeats,
              "default_interval_s": 2.0, "default_fit_s": [round(t, 2) for t in default],
              "tuned_interval_s": args.interval, "tuned_fit_s": [round(t, 2) for t in tuned],
              "median_default_s": round(statistics.median(default), 2),
              "median_tuned_s": round(statistics.median(tuned), 2),
              "saved_per_fit_s": round(statistics.median(default) - statistics.median(tuned), 2),
              "cpus": os.cpu_count(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
