"""Bias specifications and exact-count attribute tables.

A spec is a joint distribution over a few attributes (the "cells") plus independent marginals on others.
Counts are allocated by the largest-remainder rule, so a 90_10 split of 10,000 rows is exactly
9,000 / 1,000 and the multi split of 60,000 reproduces fairgen's 26,216 / 24,878 / 3,784 / 5,122.
"""

from __future__ import annotations

import itertools
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fairray.data.attributes import ALL_ATTRIBUTES, BASE, DERIVED, add_derived, attribute_values
from fairray.errors import FairrayError

# fairgen's CelebA splits; gender 1 (long-hair presentation) is the minority in 90_10 / 80_20 here.
# multi: (Black_Hair, gender) cells, fairgen train counts for (no black hair, F), (no, M), (black, F), (black, M).
PRESETS: dict[str, dict] = {
    "none": {},
    "90_10": {"joint": {"attributes": ["gender"], "probs": [0.9, 0.1]}},
    "80_20": {"joint": {"attributes": ["gender"], "probs": [0.8, 0.2]}},
    "multi": {
        "joint": {"attributes": ["Black_Hair", "gender"], "probs": [24878, 26216, 5122, 3784]},
    },
    # DiGA: target x protected, 1k/9k/9k/1k of 20k; target is correlated with protected.
    "diga": {"joint": {"attributes": ["Smiling", "gender"], "probs": [9000, 1000, 1000, 9000]}},
}


class JointSpec(BaseModel):
    """Probabilities over the grid of `attributes` values, row-major (last attribute fastest)."""

    model_config = ConfigDict(extra="forbid")
    attributes: list[str] = Field(min_length=1)
    probs: list[Annotated[float, Field(ge=0)]]

    @model_validator(mode="after")
    def _check(self) -> JointSpec:
        for a in self.attributes:
            _check_attr(a)
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError(f"joint attributes repeat: {self.attributes}")
        n_cells = int(np.prod([len(attribute_values(a)) for a in self.attributes]))
        if len(self.probs) != n_cells:
            raise ValueError(
                f"joint over {' x '.join(self.attributes)} needs {n_cells} probabilities, got {len(self.probs)}"
            )
        if sum(self.probs) <= 0:
            raise ValueError("joint probabilities sum to 0")
        return self

    def cells(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*[attribute_values(a) for a in self.attributes]))


class BiasSpec(BaseModel):
    """A preset name, or an explicit joint table and/or marginals ({attr: {value: prob}})."""

    model_config = ConfigDict(extra="forbid")
    preset: str = "none"
    joint: JointSpec | None = None
    marginals: dict[str, dict[int, Annotated[float, Field(ge=0)]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> BiasSpec:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown bias preset {self.preset!r}; allowed: {', '.join(PRESETS)}")
        if self.preset != "none" and (self.joint or self.marginals):
            raise ValueError("give either a bias preset or joint/marginals, not both")
        for a, dist in self.marginals.items():
            _check_attr(a)
            bad = set(dist) - set(attribute_values(a))
            if bad:
                raise ValueError(f"marginal {a}: values {sorted(bad)} not in {list(attribute_values(a))}")
            if sum(dist.values()) <= 0:
                raise ValueError(f"marginal {a}: probabilities sum to 0")
        bases = [_base_of(a) for a in self.resolved_attributes()]
        dup = {b for b in bases if bases.count(b) > 1}
        if dup:
            raise ValueError(f"bias constrains base attribute(s) {sorted(dup)} twice; use one joint table")
        return self

    def resolved(self) -> BiasSpec:
        return BiasSpec(**PRESETS[self.preset]) if self.preset != "none" else self

    def resolved_attributes(self) -> list[str]:
        r = self.resolved() if self.preset != "none" else self
        return (list(r.joint.attributes) if r.joint else []) + list(r.marginals)

    def describe(self) -> str:
        if self.preset != "none":
            return self.preset
        parts = []
        if self.joint:
            parts.append(f"{' x '.join(self.joint.attributes)}={_fmt_probs(self.joint.probs)}")
        parts += [f"{a}={_fmt_probs(list(d.values()))}" for a, d in self.marginals.items()]
        return "; ".join(parts) or "none"


def _fmt_probs(p: list[float]) -> str:
    s = sum(p)
    return "/".join(f"{x / s:.3g}" for x in p)


def _check_attr(a: str) -> None:
    if a not in ALL_ATTRIBUTES:
        raise ValueError(f"unknown attribute {a!r}; allowed: {', '.join(ALL_ATTRIBUTES)}")


def _base_of(a: str) -> str:
    return a if a in BASE else DERIVED[a].base


def parse_bias(text: str) -> BiasSpec:
    """Parse the CLI form: `90_10`, `gender=0.9` (share of value 1), `hair=0.7,0.1,0.1,0.1`,
    `gender x Black_Hair=0.4,0.1,0.1,0.4` (row-major joint), several terms joined by `;`."""
    text = text.strip()
    if text in PRESETS:
        return BiasSpec(preset=text)
    joint, marginals = None, {}
    try:
        for term in filter(None, (t.strip() for t in text.split(";"))):
            lhs, rhs = (s.strip() for s in term.split("=", 1))
            probs = [float(x) for x in rhs.split(",")]
            attrs = [a.strip() for a in lhs.split(" x ")] if " x " in lhs else [lhs]
            if len(attrs) > 1:
                if joint is not None:
                    raise FairrayError("only one joint table (`a x b=...`) per bias spec")
                joint = JointSpec(attributes=attrs, probs=probs)
                continue
            _check_attr(lhs)
            values = attribute_values(lhs)
            if len(probs) == 1 and len(values) == 2:
                probs = [1.0 - probs[0], probs[0]]
            if len(probs) != len(values):
                raise FairrayError(f"bias {lhs}: give {len(values)} probabilities for values {list(values)}")
            marginals[lhs] = dict(zip(values, probs, strict=True))
        return BiasSpec(joint=joint, marginals=marginals)
    except (ValueError, KeyError, FairrayError) as e:
        raise FairrayError(
            f"cannot parse bias {text!r}: {_first_line(e)}. Forms: {', '.join(PRESETS)}, gender=0.9, "
            "hair=0.7,0.1,0.1,0.1, 'gender x Black_Hair=0.4,0.1,0.1,0.4'"
        ) from None


def _first_line(e: Exception) -> str:
    msg = str(e)
    if hasattr(e, "errors"):  # pydantic ValidationError: keep the message, drop the URL noise
        msg = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
    return msg.splitlines()[0]


def allocate(n: int, probs: list[float]) -> np.ndarray:
    """Largest-remainder allocation of n rows to cells in proportion to probs (sums to exactly n)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    exact = p * n
    counts = np.floor(exact + 1e-9).astype(np.int64)
    short = n - counts.sum()
    if short > 0:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def reference_spec(spec: BiasSpec) -> BiasSpec:
    """Uniform over the cells the spec constrains: the fair reference distribution for that spec."""
    attrs = spec.resolved_attributes()
    if not attrs:
        return BiasSpec()
    n_cells = int(np.prod([len(attribute_values(a)) for a in attrs]))
    return BiasSpec(joint=JointSpec(attributes=attrs, probs=[1.0] * n_cells))


def sample_attributes(n: int, spec: BiasSpec, rng: np.random.Generator) -> pd.DataFrame:
    """An n-row table of base + derived attributes whose constrained cells have exact counts."""
    spec = spec.resolved()
    constraints: list[tuple[list[str], list[tuple[int, ...]], np.ndarray]] = []
    if spec.joint:
        constraints.append((spec.joint.attributes, spec.joint.cells(), allocate(n, spec.joint.probs)))
    for a, dist in spec.marginals.items():
        constraints.append(([a], [(v,) for v in dist], allocate(n, list(dist.values()))))

    cols: dict[str, np.ndarray] = {}
    for attrs, cells, counts in constraints:
        # One shuffled assignment per constraint: marginals stay exact and independent of each other.
        cell_of_row = rng.permutation(np.repeat(np.arange(len(cells)), counts))
        for j, a in enumerate(attrs):
            base = _base_of(a)
            choices = [_base_choices(a, cell[j]) for cell in cells]
            cols[base] = _draw_from_sets(cell_of_row, choices, rng)
    for b, attr in BASE.items():
        if b not in cols:
            cols[b] = rng.choice(np.asarray(attr.values), size=n)
    return add_derived(pd.DataFrame(cols)[list(BASE)])


def _base_choices(attr: str, value: int) -> np.ndarray:
    if attr in BASE:
        return np.asarray([value])
    return np.asarray(sorted(DERIVED[attr].base_values(value)))


def _draw_from_sets(cell_of_row: np.ndarray, choices: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    out = np.empty(len(cell_of_row), dtype=np.int64)
    for c, vals in enumerate(choices):
        idx = np.flatnonzero(cell_of_row == c)
        out[idx] = rng.choice(vals, size=len(idx))
    return out
