"""SynthFaces attribute vocabulary: base attributes the renderer draws, and attributes derived from them.

Base attributes are sampled; derived ones (CelebA-style names, grouped tones, `Young`) are pure functions
of a base attribute, so a bias on a derived attribute is a constraint on the set of base values allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BaseAttribute:
    name: str
    values: tuple[int, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class DerivedAttribute:
    name: str
    base: str
    mapping: dict[int, int]  # base value -> derived value
    labels: tuple[str, ...]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.mapping.values())))

    def base_values(self, derived_value: int) -> set[int]:
        return {b for b, d in self.mapping.items() if d == derived_value}


AGE9_LABELS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
HAIR_LABELS = ("black", "brown", "blond", "gray")

BASE: dict[str, BaseAttribute] = {
    a.name: a
    for a in (
        # gender is a binary *presentation* proxy (face shape + hair length), not a claim about people.
        BaseAttribute("gender", (0, 1), ("male", "female")),
        BaseAttribute("skin_tone10", tuple(range(1, 11)), tuple(f"monk{i}" for i in range(1, 11))),
        BaseAttribute("age9", tuple(range(9)), AGE9_LABELS),
        BaseAttribute("Smiling", (0, 1), ("no", "yes")),
        BaseAttribute("Eyeglasses", (0, 1), ("no", "yes")),
        BaseAttribute("hair", (0, 1, 2, 3), HAIR_LABELS),
    )
}


def _binary(name: str, base: str, positive: set[int]) -> DerivedAttribute:
    return DerivedAttribute(name, base, {v: int(v in positive) for v in BASE[base].values}, ("no", "yes"))


DERIVED: dict[str, DerivedAttribute] = {
    d.name: d
    for d in (
        DerivedAttribute("Male", "gender", {0: 1, 1: 0}, ("no", "yes")),
        # Monk 1-3 light, 4-5 light-medium, 6-7 medium-dark, 8-10 dark.
        DerivedAttribute(
            "tone4", "skin_tone10", {m: (m - 1) * 4 // 10 for m in range(1, 11)},
            ("light", "light-medium", "medium-dark", "dark"),
        ),
        _binary("Young", "age9", {0, 1, 2, 3}),
        _binary("Black_Hair", "hair", {0}),
        _binary("Brown_Hair", "hair", {1}),
        _binary("Blond_Hair", "hair", {2}),
        _binary("Gray_Hair", "hair", {3}),
    )
}

ALL_ATTRIBUTES: tuple[str, ...] = tuple(BASE) + tuple(DERIVED)
# Heads a classifier is asked to get >= 95% on at 32 px; skin_tone10 and age9 are fine-grained by design.
SALIENT_ATTRIBUTES: tuple[str, ...] = ("gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair")


def attribute_values(name: str) -> tuple[int, ...]:
    if name in BASE:
        return BASE[name].values
    if name in DERIVED:
        return DERIVED[name].values
    raise KeyError(name)


def attribute_labels(name: str) -> tuple[str, ...]:
    return BASE[name].labels if name in BASE else DERIVED[name].labels


def add_available_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Add each derived attribute whose base column a real dataset has and which it lacks (nullable: NA stays NA).

    `Young` from `age9`, `tone4` from a Monk `skin_tone10`, and so on; a column the source labels itself
    (CelebA's `Young`, `Male`) is left as labelled.
    """
    for d in DERIVED.values():
        if d.base in df.columns and d.name not in df.columns:
            df[d.name] = pd.to_numeric(df[d.base], errors="coerce").astype("Int64").map(d.mapping).astype("Int64")
    return df


def add_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Append every derived attribute column computed from the base columns."""
    for d in DERIVED.values():
        lut = np.zeros(max(d.mapping) + 1, dtype=np.int64)
        for b, v in d.mapping.items():
            lut[b] = v
        df[d.name] = lut[df[d.base].to_numpy()]
    return df
