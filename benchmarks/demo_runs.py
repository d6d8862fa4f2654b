"""Shared by the benchmarks that re-run a stage of finished demos (demo_classifier_variants.py,
demo_classifier_diga.py, demo_distill_variants.py): variant syntax, the seeded demo config, a trial's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from fairray.config import DemoConfig, apply_override


def variant(spec: str, section: str = "classifier") -> tuple[str, list[str]]:
    """name:key=value+key=value -> (name, ["<section>.key=value", ...]): `--set` assignments under
    DemoConfig.<section>."""
    name, _, sets = spec.partition(":")
    return name, [f"{section}.{kv}" for kv in sets.split("+") if kv]


def demo_config(seed: int, sets: list[str]) -> DemoConfig:
    """The seeded demo config with the variant's assignments on top (after seeding, so a variant can set a seed),
    parsed and validated as `fairray demo --set` does."""
    data = DemoConfig(seed=seed).seeded().model_dump(mode="json")
    for assignment in sets:
        apply_override(data, assignment)
    return DemoConfig.model_validate(data)


def trial_checkpoint(run: Path, alpha_index: int) -> Path:
    """The GAN checkpoint of a finished demo's Tune trial, trials in alpha order (0: unweighted, -1: the highest
    alpha)."""
    trial = sorted((run / "campaign" / "trials").iterdir())[alpha_index]
    return Path(json.loads((trial / "metrics.json").read_text())["checkpoint"])
