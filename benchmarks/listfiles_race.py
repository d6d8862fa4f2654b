"""Does a successful Ray Data Parquet read print a traceback? Ray Data 2.60's V2 reader (`ListFiles -> ReadFiles`)
lists files in a task whose work-stealing pool (`_internal/dynamic_work_queue.py`) hands the task its results, then
puts stop signals on the work queue from a second thread; when the task has already taken its last result and shut
the pool, that put raises `InterruptedError` in the thread and the worker prints its traceback, which reaches the
driver's console (CI saw it once in a passing `fairray label`). fairray's `init_ray` picks Ray Data's V1 Parquet
reader, which has no listing task.

Each mode runs in a fresh process with a local Ray, reads the same Parquet shards `--reads` times (read ->
map_batches -> materialize) while `--load` busy loops keep the CPUs contended (the race needs the task's thread to
be preempted), and counts the tracebacks that reached the driver. Modes: `ray` (plain `ray.init()`, Ray's default
V2 reader), `fairray` (`ray_env.init_ray()`). JSON out; a mode run again replaces its row, the others' stay.

    python benchmarks/listfiles_race.py --data runs/s3k [--reads 10] [--load 3] [--modes ray,fairray]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fairray.machine import cpu_description


def child(data: Path, reads: int, mode: str) -> None:
    """One mode: `reads` reads through Ray Data, the driver's console on stdout/stderr."""
    if mode == "ray":
        os.environ["RAY_DATA_USE_DATASOURCE_V2"] = "1"  # Ray's default, which importing fairray.ray_env changes
    import ray

    from fairray.data.table import shard_paths
    from fairray.ray_env import init_ray

    if mode == "fairray":
        init_ray(dashboard=False)
    else:
        ray.init(include_dashboard=False)
    paths = [str(p) for p in shard_paths(data)]
    ray.data.DataContext.get_current().enable_progress_bars = False
    for _ in range(reads):
        ray.data.read_parquet(paths).map_batches(lambda b: b, batch_format="pyarrow").materialize()
    time.sleep(3)  # worker logs reach the driver asynchronously


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a fairray dataset dir (Parquet shards under data/)")
    ap.add_argument("--reads", type=int, default=10)
    ap.add_argument("--load", type=int, default=3, help="busy-loop processes beside the reads")
    ap.add_argument("--modes", default="ray,fairray")
    ap.add_argument("--child", choices=["ray", "fairray"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/listfiles_race.json"))
    args = ap.parse_args()
    if args.child:
        child(args.data, args.reads, args.child)
        return
    modes = args.modes.split(",")
    old = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    rows = [r for r in old if r["mode"] not in modes]
    for mode in modes:
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--reads", str(args.reads),
                                "--child", mode], capture_output=True, text=True)
        finally:
            for h in hogs:
                h.kill()
        console = r.stdout + r.stderr
        plan = next((line.split("Execution plan of ")[1].split(": ", 1)[1] for line in console.splitlines()
                     if "Execution plan of" in line), "")
        rows.append({"mode": mode, "reads": args.reads, "load": args.load, "rc": r.returncode, "plan": plan,
                     "tracebacks": console.count("Traceback (most recent call last)"),
                     "interrupted_errors": console.count("InterruptedError\n"),
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"benchmark": "listfiles_race", "rows": rows, "cpu": cpu_description(),
                                    "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
