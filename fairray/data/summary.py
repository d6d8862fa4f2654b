"""Counts and shares per attribute and per intersection of attributes."""

from __future__ import annotations

import itertools

import pandas as pd

from fairray.data.attributes import ALL_ATTRIBUTES, attribute_labels, attribute_values


def value_counts(df: pd.DataFrame, attrs: list[str]) -> pd.Series:
    """Counts over every cell of attrs' value grid (empty cells included), indexed by readable labels."""
    cells = list(itertools.product(*[_values(df, a) for a in attrs]))
    counts = df.groupby(attrs).size() if len(df) else pd.Series(dtype=int)
    idx = [_label(attrs, c) for c in cells]
    return pd.Series([int(counts.get(c if len(c) > 1 else c[0], 0)) for c in cells], index=idx, name="count")


def _values(df: pd.DataFrame, attr: str) -> list:
    return list(attribute_values(attr)) if attr in ALL_ATTRIBUTES else sorted(df[attr].dropna().unique())


def _label(attrs: list[str], cell: tuple) -> str:
    parts = []
    for a, v in zip(attrs, cell, strict=True):
        names = attribute_labels(a) if a in ALL_ATTRIBUTES else None
        vals = list(attribute_values(a)) if a in ALL_ATTRIBUTES else None
        parts.append(f"{a}={names[vals.index(v)]}" if names else f"{a}={v}")
    return " & ".join(parts)


def shares_by(df: pd.DataFrame, attrs: list[str], group: str) -> pd.DataFrame:
    """Share of each attrs cell within each value of `group` (columns), e.g. subset biased vs reference."""
    return pd.DataFrame({g: (c := value_counts(sub, attrs)) / max(c.sum(), 1) for g, sub in df.groupby(group)})


def share_tables(df: pd.DataFrame, attrs: list[str], intersections: list[list[str]], group: str
                 ) -> dict[str, pd.DataFrame]:
    """Share tables keyed by attribute name or 'a x b' for each marginal and each intersection."""
    tables = {a: shares_by(df, [a], group) for a in attrs}
    tables |= {" x ".join(i): shares_by(df, i, group) for i in intersections}
    return tables


def count_tables(df: pd.DataFrame, attrs: list[str], intersections: list[list[str]], group: str
                 ) -> dict[str, pd.DataFrame]:
    def counts(keys: list[str]) -> pd.DataFrame:
        return pd.DataFrame({g: value_counts(sub, keys) for g, sub in df.groupby(group)})

    return {a: counts([a]) for a in attrs} | {" x ".join(i): counts(i) for i in intersections}
