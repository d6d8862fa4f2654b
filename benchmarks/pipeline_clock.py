"""Shared by the pipeline benchmarks: steady-state throughput from the actors' batch clock (pipeline.BatchClock),
the (engine, actors) runs a benchmark compares, and where the CPU goes in steady state (CpuShare)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def batches(timings: Path) -> list[tuple[float, int]]:
    """(unix time, rows) of every batch that left an actor, in time order."""
    return sorted((float(t), int(k)) for f in Path(timings).glob("*.txt")
                  for t, k in (line.split() for line in f.read_text().splitlines()))


def steady_state(timings: Path) -> tuple[float, float, float]:
    """(rows/s after the first batch left an actor, time of the first batch, time of the last batch)."""
    b = batches(timings)
    first, last = b[0][0], b[-1][0]
    rows_after_first = sum(k for _, k in b) - b[0][1]
    return (rows_after_first / (last - first) if last > first else float("nan")), first, last


def engine_runs(engines: str, actors: str) -> list[tuple[str, int | None]]:
    """`--engine ray,process --actors 1,2` -> [("ray", 1), ("ray", 2), ("process", None)]: the actor counts apply to
    the Ray pool only (None: the pool's own rule); the in-process engine runs the stage once."""
    counts = [int(a) for a in actors.split(",") if a] or [None]
    return [(e, n) for e in engines.split(",") for n in (counts if e == "ray" else [None])]


def actors_label(engine: str, actors: int | None) -> int | str:
    """The JSON rows' `actors` field: the count asked for, "default" for the pool's own rule, 0 in process."""
    return actors or ("default" if engine == "ray" else 0)


ROLES = (  # (role, substring of the process's command line), first match wins
    ("model actors", "MapWorker"),
    ("raylet", "raylet"),
    ("GCS server", "gcs_server"),
    ("read/write tasks", "ray::IDLE"),
    ("read/write tasks", "ReadParquet"),
    ("read/write tasks", "Write"),
    ("Ray system actors", "ray::"),
    ("other Ray processes", "/ray/"),
)


def _cpu_seconds() -> dict[int, tuple[float, str]]:
    """pid -> (user + system CPU seconds, command line) of every process (Linux /proc)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended between listing and reading
            continue
        out[int(pid)] = ((int(stat[11]) + int(stat[12])) / tick, cmd)
    return out


class CpuShare(threading.Thread):
    """Where the machine's CPU goes in a pipeline's steady state: once the first batch has left an actor (the
    batch clock in `timings`) and `delay` s more, the CPU seconds of every process over `window` s, grouped by role
    (the model actors, this driver, Ray's read/write tasks, raylet, GCS, Ray's system actors, everything else) as a
    share of the machine's CPUs. summary() after the run: None on a system without /proc, or when the last batch
    left before the window closed (not all of it was steady state)."""

    def __init__(self, timings: Path, delay: float = 3.0, window: float = 10.0):
        super().__init__(daemon=True)
        self.timings, self.delay, self.window = Path(timings), delay, window
        self.result: dict | None = None
        self.end = float("inf")

    def run(self) -> None:
        if not Path("/proc/self/stat").exists():
            return
        while not any(f.stat().st_size for f in self.timings.glob("*.txt")):
            time.sleep(0.05)
        time.sleep(self.delay)
        a, t0 = _cpu_seconds(), time.time()
        time.sleep(self.window)
        b, dt = _cpu_seconds(), time.time() - t0
        shares: dict[str, float] = {}
        for pid, (cpu, cmd) in b.items():
            if pid not in a:
                continue
            role = "driver (this command)" if pid == os.getpid() else next(
                (r for r, key in ROLES if key in cmd), "outside the pipeline")
            shares[role] = shares.get(role, 0.0) + (cpu - a[pid][0]) / dt
        cpus = os.cpu_count() or 1
        shares["idle"] = max(0.0, cpus - sum(shares.values()))
        self.end = t0 + dt
        self.result = {"window_s": round(dt, 1), "cpus": cpus,
                       "share_of_machine": {r: round(v / cpus, 3) for r, v in sorted(shares.items(), key=lambda kv: -kv[1])}}

    def summary(self) -> dict | None:
        return self.result if self.result and batches(self.timings)[-1][0] > self.end else None
