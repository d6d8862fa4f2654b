"""Atomic training checkpoints: a state file plus a marker holding its SHA-256, written last.

A directory without a matching marker (a write that was interrupted) is never loaded; resuming falls back
to the newest complete checkpoint instead.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE = "state.pt"
MARKER = "COMPLETE"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_state(state: dict[str, Any], directory: Path) -> Path:
    """Write state.pt via a temp file + rename, then the marker; the marker is the commit point."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (STATE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, directory / STATE)
    (directory / MARKER).write_text(_sha256(directory / STATE))
    return directory


def is_complete(directory: Path) -> bool:
    d = Path(directory)
    return (d / MARKER).is_file() and (d / STATE).is_file() and (d / MARKER).read_text().strip() == _sha256(d / STATE)


def load_state(directory: Path) -> dict[str, Any] | None:
    """The state in a complete checkpoint directory, else None."""
    if not is_complete(directory):
        return None
    return torch.load(Path(directory) / STATE, map_location="cpu", weights_only=False)


def complete_checkpoints(run_dir: Path, k: int, until: Path | None = None) -> list[Path]:
    """The newest k complete `checkpoint_*` directories of a Ray Train run (none newer than `until`), oldest first.
    Ray names them by time, so name order is age order; only as many as needed are hashed."""
    run_dir = Path(run_dir)
    dirs = sorted(run_dir.glob("checkpoint_*"), key=lambda p: p.name, reverse=True) if run_dir.is_dir() else []
    if until is not None:
        dirs = [d for d in dirs if d.name <= Path(until).name]
    return list(itertools.islice((d for d in dirs if is_complete(d)), k))[::-1]


def newest_complete(run_dir: Path) -> Path | None:
    """The newest complete `checkpoint_*` directory of a Ray Train run, if any."""
    return next(iter(complete_checkpoints(run_dir, 1)), None)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def start_over_if_inputs_changed(run_dir: Path, config: dict, datasets: list[Path]) -> None:
    """A re-run with a run's name continues it only if it trains on the same rows with the same settings (`config`:
    the run's settings less those a re-run may extend, such as its length): a `debias latent` re-run with other pairs,
    a classifier with another lr or a GAN on re-rendered data must not resume the old model. The inputs are
    recorded in <run_dir>/inputs.json."""
    import json
    import shutil

    from fairray.data.table import shard_signature

    run_dir = Path(run_dir)
    inputs = {"config": config, "rows": [s for d in datasets for s in shard_signature(Path(d))]}
    record = run_dir / "inputs.json"
    if run_dir.exists() and (not record.is_file() or json.loads(record.read_text()) != inputs):
        print(f"{run_dir.name}: training rows or settings differ from the run in {run_dir}; training anew", flush=True)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(inputs))
