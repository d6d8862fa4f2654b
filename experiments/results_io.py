"""What every experiment script does with its results: summarise runs over seeds, write the JSON portably.

The scripts run as `python experiments/<name>.py`, so this module is importable beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def portable(obj: Any) -> Any:
    """The same structure with every path under the repository written relative to it (also inside labeler specs
    such as attrclf:/abs/path): a results file must not name the machine it was made on."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [portable(v) for v in obj]
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        return obj.replace(f"{ROOT}/", "")
    return obj


def write_json(path: Path, report: dict, indent: int = 2) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(report), indent=indent, default=float))


def mean_sd(rows: list[dict], keys: tuple[str, ...] | list[str], names: dict[str, str] | None = None
            ) -> dict[str, float]:
    """{k: mean, k_sd: sample sd (0 for one row)} over rows, reading rows[i][names.get(k, k)]."""
    out = {}
    for k in keys:
        v = np.array([r[(names or {}).get(k, k)] for r in rows], dtype=float)
        out[k], out[f"{k}_sd"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


def pm(row: dict, key: str) -> str:
    """A summary cell: mean +- sd of `key` (as mean_sd wrote them)."""
    return f"{row[key]:.3f} ± {row[key + '_sd']:.3f}"
