"""Wall time of `fairray demo` as a user runs it (a fresh process, default settings), per stage, vs the 5-minute
budget; JSON out. The stage times come from the demo's own demo_metrics.json.

    python benchmarks/demo_time.py [--preset quick|full] [--budget 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=["default", "quick", "full"], default="default")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_time.json")
    ap.add_argument("--keep", type=Path, default=None, help="run the demo into this dir and keep it (report.html)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run_dir = args.keep or Path(d) / "demo"
        cmd = [sys.executable, "-m", "fairray.cli", "demo", "--out", str(run_dir)]
        cmd += [] if args.preset == "default" else [f"--{args.preset}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"RAY_AUTH_MODE": "disabled"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"demo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        stages = json.loads((run_dir / "demo_metrics.json").read_text())["seconds"]
    result = {"preset": args.preset, "wall_seconds": round(wall, 1), "budget_seconds": args.budget,
              "within_budget": wall <= args.budget, "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
              "overhead_seconds": round(wall - sum(stages.values()), 1),  # interpreter, imports, Ray start/stop
              "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if args.keep:
        print(proc.stdout[-1500:])


if __name__ == "__main__":
    main()
