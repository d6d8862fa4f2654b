"""Shared by the pipeline benchmarks: steady-state throughput from the actors' batch clock (pipeline.BatchClock),
and the (engine, actors) runs a benchmark compares."""

from __future__ import annotations

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
