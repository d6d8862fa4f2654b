"""Readers: a local CelebA / FairFace / UTKFace / AI-Face / image-folder dataset -> the canonical table.

Every format becomes the table of DESIGN.md "One data model" (shards under <out>/data/ + dataset.json):
`image_id, source, subset ("real"), split, image (file bytes as on disk), path (relative to root), height,
width, <attributes>, labeler ("ground_truth:<fmt>"), weight (1.0), error`. Height/width come from the image
header only (no decode). A missing or unreadable image is a row with `error` set, never a dropped row; an
unknown label value is a FairrayError naming the file, the 1-based line and the value, because a silently
mislabeled row would bias every fairness number computed downstream.

Attribute codes (all nullable Int64; NA = unknown or not applicable):
  gender       0 male, 1 female (every format; CelebA: 1 - Male; AI-Face's own 1 = male is flipped)
  CelebA       its 40 names (Male, Smiling, ...), -1/1 -> 0/1
  race7        FairFace order: White, Black, Latino_Hispanic, East Asian, Southeast Asian, Indian, Middle Eastern
  race4        FairFace's 4-race model order: White 0, Black 1, Asian 2 (East + Southeast), Indian 3;
               NA for Latino_Hispanic and Middle Eastern (no race4 class; they are not folded into another)
  age9         FairFace bins 0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, 70+ ("more than 70" too)
  race5_utk    UTKFace: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others; `age` (years) and age9 binned from it
  age5         AI-Face: 0 child, 1 youth, 2 adult, 3 middle-aged, 4 senior; skin_tone10 Monk 1..10;
               fake 0 real, 1 AI-generated (AI-Face's Target)
  derived      where the base column is there and the source does not label it itself: age9 from `age` in
               years, then Young (age9 <= 3, under 30), tone4 from skin_tone10, Male from gender, hair colours
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fairray.data.attributes import add_available_derived
from fairray.data.decode import probe_image
from fairray.data.table import DATA_DIR, ShardWriter, write_manifest
from fairray.errors import FairrayError

Fmt = Literal["celeba", "fairface", "utkface", "aiface", "folder"]
SUBSET = "real"
SPLITS = ("train", "val", "test")
RESERVED = {"image_id", "source", "subset", "image", "height", "width", "labeler", "weight", "error"}

RACE7 = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
RACE7_TO_RACE4 = (0, 1, None, 2, 2, 3, None)
AGE9 = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
AGE9_EDGES = (3, 10, 20, 30, 40, 50, 60, 70)  # lower bounds of bins 1..8, for ages in years
GENDER = {"male": 0, "female": 1}

# AI-Face (v2 README): Gender 1 Male / 0 Female; Age 0 Child, 1 Youth, 3 Adult, 4 Middle-aged, 5 Senior
# (the README skips 2; pass value_maps={"age5": {...}} for a file coded 0..4); Skin Tone Monk 1..10.
AIFACE_VALUES: dict[str, dict[str, int]] = {
    "gender": {"1": 0, "0": 1, "male": 0, "m": 0, "man": 0, "female": 1, "f": 1, "woman": 1},
    "age5": {"0": 0, "1": 1, "3": 2, "4": 3, "5": 4, "child": 0, "youth": 1, "young": 1, "adult": 2,
             "middle-aged": 3, "middle aged": 3, "middle": 3, "senior": 4},
    "skin_tone10": {str(i): i for i in range(1, 11)},
    "fake": {"0": 0, "1": 1, "real": 0, "fake": 1},
}
# Header spellings accepted for AI-Face-style CSVs (compared lower-case, punctuation as spaces).
AIFACE_COLUMNS = {
    "path": ("image path", "path", "image", "file", "filename", "file name", "img path"),
    "gender": ("gender", "sex", "ground truth gender"),
    "age5": ("age", "age group", "ground truth age"),
    "skin_tone10": ("skin tone", "skintone", "skin", "monk", "mst", "monk skin tone"),
    "fake": ("target", "fake", "real fake"),
}


class ReaderConfig(BaseModel):
    """What to read and how to split it; options the chosen format does not use are ignored."""

    model_config = ConfigDict(extra="forbid")

    fmt: Fmt
    root: Path
    images: str | None = Field(None, description="image folder under root; default per format "
                                                 "(celeba: img_align_celeba, others: root itself)")
    labels: str | None = Field(None, description="folder: label CSV under root (default labels.csv); "
                                                 "aiface: one CSV to hash-split instead of train/val/test.csv")
    columns: dict[str, str] = Field(default_factory=dict, description="folder: CSV column -> table column; "
                                    "one must map to 'path', an optional one to 'split'")
    value_maps: dict[str, dict[str, int]] = Field(default_factory=dict, description="table column -> "
                                                  "{raw value: code} (folder, aiface)")
    val_frac: float = Field(0.1, ge=0, le=1, description="hash split (utkface, folder, single-CSV aiface)")
    test_frac: float = Field(0.1, ge=0, le=1)
    seed: int = 0
    shard_rows: int = Field(5_000, ge=1)

    @field_validator("value_maps", mode="before")
    @classmethod
    def _str_keys(cls, v: Any) -> Any:
        """YAML reads `M: 0` and `1: 0` alike; raw CSV cells are strings, so keys are compared as strings."""
        if isinstance(v, dict):
            return {c: {str(k): code for k, code in m.items()} if isinstance(m, dict) else m for c, m in v.items()}
        return v

    @model_validator(mode="after")
    def _fracs(self) -> ReaderConfig:
        if self.val_frac + self.test_frac > 1:
            raise ValueError(f"val_frac + test_frac must be <= 1 (got {self.val_frac} + {self.test_frac})")
        return self


def read_dataset(fmt: str, root: Path, out: Path, options: dict | None = None) -> dict:
    """Read a local dataset of format `fmt` under `root` into the canonical table at `out`; returns the manifest."""
    if fmt not in READERS:
        raise FairrayError(f"unknown dataset format {fmt!r} (allowed: {', '.join(READERS)})")
    from fairray.config import format_validation_error  # lazy: config may import ReaderConfig from here

    try:
        cfg = ReaderConfig(fmt=fmt, root=Path(root).resolve(), **(options or {}))
    except ValidationError as e:
        raise FairrayError(format_validation_error(ReaderConfig, e)) from None
    if not cfg.root.is_dir():
        raise FairrayError(f"dataset root not found: {cfg.root}")
    if any((Path(out) / DATA_DIR).glob("*.parquet")):
        raise FairrayError(f"{out} already holds a dataset; choose a new --out")
    labels = READERS[fmt](cfg).reset_index(drop=True)
    if (dup := labels.path[labels.path.duplicated()]).any():
        raise FairrayError(f"{fmt}: image path {dup.iloc[0]!r} is listed more than once")
    return _write(cfg, labels, Path(out))


# ---- shared helpers -------------------------------------------------------------------------------------

def _rel(folder: str | None, name: str) -> str:
    return f"{folder.strip('/')}/{name}" if folder and folder.strip("/.") else name


def _paths(df: pd.DataFrame, col: str, folder: str | None) -> list[str]:
    """Image paths relative to root; an empty path cell is a FairrayError (there is no row to keep)."""
    raw = df[col].astype("string").str.strip()
    _fail_first(df, raw.fillna("").eq(""), f"missing image path in column {col!r}")
    return [_rel(folder, p) for p in raw]


def _fail_first(df: pd.DataFrame, bad: pd.Series, what: str | Callable[[int], str], allowed: str = "") -> None:
    """Raise for the first bad row, naming its file and line (df['_where']) and what is wrong there."""
    if bad.any():
        i = int(np.argmax(bad.to_numpy(dtype=bool)))
        text = what if isinstance(what, str) else what(i)
        raise FairrayError(f"{df['_where'].iloc[i]}: {text}" + (f" (allowed: {allowed})" if allowed else ""))


def _read_labels(path: Path, first_line: int, **kw: Any) -> pd.DataFrame:
    """Every cell as a string; `_where` names each row's file and 1-based line (blank lines counted)."""
    if not path.is_file():
        raise FairrayError(f"label file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, skip_blank_lines=False, index_col=False, encoding="utf-8-sig", **kw)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise FairrayError(f"{path.name}: {str(e).strip()}") from None
    df["_where"] = [f"{path.name} line {i + first_line}" for i in df.index]
    return df[df.drop(columns="_where").notna().any(axis=1)]


def _require(df: pd.DataFrame, cols: list[str], name: str) -> None:
    if missing := [c for c in cols if c not in df.columns]:
        raise FairrayError(f"{name}: missing column(s) {missing}; it has {[c for c in df.columns if c != '_where']}")


def _lookup(df: pd.DataFrame, col: str, vocab: dict[str, Any], name: str, missing_ok: bool = False) -> pd.Series:
    """Map raw cells through vocab (case- and space-insensitive); an unknown value is a FairrayError."""
    lut = {str(k).strip().lower(): v for k, v in vocab.items()}
    raw = df[col].astype("string").str.strip()
    keys = raw.str.lower()
    missing = keys.fillna("").eq("")
    known = keys.isin(list(lut)).fillna(False)
    _fail_first(df, ~known & ~(missing & missing_ok), _what(raw, missing, name), ", ".join(map(str, vocab)))
    return keys.astype(object).map(lut)


def _what(raw: pd.Series, missing: pd.Series, name: str) -> Callable[[int], str]:
    return lambda i: f"missing {name}" if missing.iloc[i] else f"unknown {name} {raw.iloc[i]!r}"


def _codes(df: pd.DataFrame, col: str, vocab: dict[str, int], name: str, missing_ok: bool = False) -> pd.Series:
    return _lookup(df, col, vocab, name, missing_ok).astype("Int64")


def _integers(df: pd.DataFrame, col: str, name: str) -> pd.Series:
    """Integer-valued cells (a column without a value map; empty cells are NA); anything else is a FairrayError."""
    raw = df[col].astype("string").str.strip()
    num = pd.to_numeric(raw.fillna("").astype(object), errors="coerce").astype(np.float64)
    missing = raw.fillna("").eq("")
    _fail_first(df, (num.isna() | (num % 1 != 0)) & ~missing, _what(raw, missing, name),
                f"integers, or give value_maps.{name}")
    return num.round().astype("Int64")


def age9_from_years(age: pd.Series) -> pd.Series:
    """Ages in years -> FairFace age9 bin codes (NA stays NA)."""
    codes = np.searchsorted(np.array(AGE9_EDGES), age.fillna(0).to_numpy(dtype=np.int64), side="right")
    return pd.Series(codes, index=age.index, dtype="Int64").mask(age.isna())


def hash_split(keys: list[str], val_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """Deterministic split from a hash of (seed, key): adding or removing files never moves other rows."""
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest(), "big")
                  for k in keys], dtype=np.float64) / 2.0**64
    return np.where(u < test_frac, "test", np.where(u < test_frac + val_frac, "val", "train"))


# ---- one reader per format: each returns path, split, attribute columns (+ optional error) ----------------

def _celeba(cfg: ReaderConfig) -> pd.DataFrame:
    """list_attr_celeba.txt (count, 40 names, `file v1..v40` with -1/1) + list_eval_partition.txt (0/1/2)."""
    attr_file = cfg.root / "list_attr_celeba.txt"
    if not attr_file.is_file():
        raise FairrayError(f"label file not found: {attr_file}")
    with attr_file.open() as f:
        f.readline()
        names = f.readline().split()
    df = _read_labels(attr_file, 3, sep=r"\s+", skiprows=2, header=None, names=["file", *names])
    out = pd.DataFrame({"path": _paths(df, "file", cfg.images or "img_align_celeba")}, index=df.index)
    part_file = cfg.root / "list_eval_partition.txt"
    if part_file.is_file():
        part = _read_labels(part_file, 1, sep=r"\s+", header=None, names=["file", "partition"])
        split = dict(zip(part.file, _lookup(part, "partition", {"0": "train", "1": "val", "2": "test"},
                                            "partition"), strict=True))
        if unknown := [f for f in df.file if f not in split][:1]:
            raise FairrayError(f"{part_file.name}: no line for {unknown[0]} (listed in {attr_file.name})")
        out["split"] = [split[f] for f in df.file]
    else:  # the partition file is optional: without it, the same hash split as the other formats
        out["split"] = hash_split(list(out.path), cfg.val_frac, cfg.test_frac, cfg.seed)
    for n in names:
        out[n] = _codes(df, n, {"-1": 0, "1": 1}, n)
    out["gender"] = (1 - out["Male"]) if "Male" in out else pd.NA
    return out


def _fairface(cfg: ReaderConfig) -> pd.DataFrame:
    """fairface_label_{train,val}.csv: file (e.g. train/1.jpg), age, gender, race, service_test."""
    files = [(s, cfg.root / f"fairface_label_{s}.csv") for s in ("train", "val")]
    if not any(p.is_file() for _, p in files):
        raise FairrayError(f"no fairface_label_train.csv or fairface_label_val.csv under {cfg.root}")
    parts = []
    for split, path in files:
        if not path.is_file():
            continue
        df = _read_labels(path, 2)
        _require(df, ["file", "age", "gender", "race"], path.name)
        race7 = _codes(df, "race", {r: i for i, r in enumerate(RACE7)}, "race")
        ages = {a: i for i, a in enumerate(AGE9)} | {"70+": 8}
        parts.append(pd.DataFrame({
            "path": _paths(df, "file", cfg.images), "split": split,
            "gender": _codes(df, "gender", GENDER, "gender"), "race7": race7,
            "race4": pd.array(RACE7_TO_RACE4, dtype="Int64")[race7.to_numpy(dtype=np.int64)],
            "age9": _codes(df, "age", ages, "age"),
        }))
    return pd.concat(parts, ignore_index=True)


UTK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_")


def _utkface(cfg: ReaderConfig) -> pd.DataFrame:
    """Labels from file names `[age]_[gender]_[race]_[date&time].jpg.chip.jpg`.

    A name that does not follow the pattern (real UTKFace has three with a field missing) is kept as an
    error row with NA labels; a name that follows it with an out-of-range code is a FairrayError.
    """
    base = cfg.root / (cfg.images or "")
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FairrayError(f"no UTKFace images (*.jpg, *.png) under {base}")
    paths = [p.relative_to(cfg.root).as_posix() for p in files]
    fields = [m.groups() if (m := UTK_NAME.match(p.name)) else (None, None, None) for p in files]
    df = pd.DataFrame(fields, columns=["age", "gender", "race"], dtype=object)
    df["_where"] = [f"UTKFace file {p}" for p in paths]
    parsed = df.age.notna()
    age = _integers(df, "age", "age")
    return pd.DataFrame({
        "path": paths, "split": hash_split(paths, cfg.val_frac, cfg.test_frac, cfg.seed),
        "gender": _codes(df, "gender", {"0": 0, "1": 1}, "gender", missing_ok=True),
        "race5_utk": _codes(df, "race", {str(i): i for i in range(5)}, "race", missing_ok=True),
        "age": age, "age9": age9_from_years(age),
        "error": [None if ok else "file name does not match [age]_[gender]_[race]_[date&time].jpg"
                  for ok in parsed],
    })


def _canon(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def _aiface(cfg: ReaderConfig) -> pd.DataFrame:
    """AI-Face-style CSVs: train.csv / val.csv / test.csv (split by file), or one `labels` CSV hash-split."""
    files = ([(None, cfg.root / cfg.labels)] if cfg.labels
             else [(s, cfg.root / f"{s}.csv") for s in SPLITS if (cfg.root / f"{s}.csv").is_file()])
    if not files:
        raise FairrayError(f"no train.csv, val.csv or test.csv under {cfg.root} (or set labels: FILE.csv)")
    parts = []
    for split, path in files:
        df = _read_labels(path, 2)
        found = {_canon(c): c for c in df.columns if c != "_where"}
        cols = {k: next((found[s] for s in spellings if s in found), None) for k, spellings in AIFACE_COLUMNS.items()}
        if cols["path"] is None:
            raise FairrayError(f"{path.name}: no image path column (accepted: {', '.join(AIFACE_COLUMNS['path'])})")
        part = pd.DataFrame({"path": _paths(df, cols["path"], cfg.images)}, index=df.index)
        part["split"] = split or hash_split(list(part.path), cfg.val_frac, cfg.test_frac, cfg.seed)
        for name, col in cols.items():
            if name != "path" and col is not None:
                part[name] = _codes(df, col, cfg.value_maps.get(name, AIFACE_VALUES[name]), name, missing_ok=True)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _folder(cfg: ReaderConfig) -> pd.DataFrame:
    """An image folder + one CSV; `columns` renames CSV columns, `value_maps` codes non-integer labels."""
    targets = list(cfg.columns.values())
    if "path" not in targets:
        raise FairrayError("folder: columns must map one CSV column to 'path', e.g. columns={'file': 'path'}")
    if clash := sorted(RESERVED & set(targets)):
        raise FairrayError(f"folder: columns may not be named {clash} (reserved table columns)")
    if extra := sorted(set(cfg.value_maps) - set(targets)):
        raise FairrayError(f"folder: value_maps for {extra}, which no column maps to (columns give {targets})")
    path = cfg.root / (cfg.labels or "labels.csv")
    df = _read_labels(path, 2)
    _require(df, list(cfg.columns), path.name)
    src = {t: s for s, t in cfg.columns.items()}
    out = pd.DataFrame({"path": _paths(df, src["path"], cfg.images)}, index=df.index)
    if "split" in src:
        out["split"] = _lookup(df, src["split"], {s: s for s in SPLITS}, "split")
    else:
        out["split"] = hash_split(list(out.path), cfg.val_frac, cfg.test_frac, cfg.seed)
    for name in (t for t in targets if t not in ("path", "split")):
        vmap = cfg.value_maps.get(name)
        out[name] = (_codes(df, src[name], vmap, name, missing_ok=True) if vmap is not None
                     else _integers(df, src[name], name))
    return out


READERS: dict[str, Callable[[ReaderConfig], pd.DataFrame]] = {
    "celeba": _celeba, "fairface": _fairface, "utkface": _utkface, "aiface": _aiface, "folder": _folder,
}


# ---- bytes, headers, shards -----------------------------------------------------------------------------

def _with_images(cfg: ReaderConfig, rows: pd.DataFrame) -> pd.DataFrame:
    """Attach file bytes and header sizes; a missing or unreadable file sets `error` and keeps the row."""
    blobs, heights, widths = [], [], []
    errors = [e if isinstance(e, str) else None for e in rows.get("error", [None] * len(rows))]
    for i, rel in enumerate(rows.path):
        blob, err = _read_file(cfg.root / rel, rel)
        w, h, err = probe_image(blob) if blob is not None else (None, None, err)
        blobs.append(blob)
        widths.append(w)
        heights.append(h)
        errors[i] = errors[i] or err
    attrs = rows.drop(columns=["path", "split", "error"], errors="ignore")
    return pd.concat([
        pd.DataFrame({
            "image_id": [f"{cfg.fmt}:{p}" for p in rows.path], "source": cfg.fmt, "subset": SUBSET,
            "split": rows["split"].to_numpy(), "image": blobs, "path": rows.path.to_numpy(),
            "height": pd.array(heights, dtype="Int64"), "width": pd.array(widths, dtype="Int64"),
        }),
        attrs.reset_index(drop=True),
        pd.DataFrame({"labeler": f"ground_truth:{cfg.fmt}", "weight": 1.0,
                      "error": pd.Series(errors, dtype="str")}, index=range(len(rows))),
    ], axis=1)


def _read_file(file: Path, rel: str) -> tuple[bytes | None, str | None]:
    if not file.is_file():
        return None, f"file not found: {rel}"
    try:
        return file.read_bytes(), None
    except OSError as e:
        return None, f"unreadable file: {rel}: {e.strerror or e}"


def _write(cfg: ReaderConfig, rows: pd.DataFrame, out: Path) -> dict:
    if not len(rows):
        raise FairrayError(f"{cfg.fmt}: no rows found under {cfg.root}")
    if "age" in rows.columns and "age9" not in rows.columns:  # a folder CSV with ages in years
        rows["age9"] = age9_from_years(rows["age"])
    rows = add_available_derived(rows)
    writer = ShardWriter(out)
    errors: dict[str, str] = {}
    for start in range(0, len(rows), cfg.shard_rows):
        shard = _with_images(cfg, rows.iloc[start:start + cfg.shard_rows].reset_index(drop=True))
        errors |= {i: e for i, e in zip(shard.image_id, shard.error, strict=True) if isinstance(e, str)}
        writer.write(shard)
    counts = rows["split"].value_counts()
    manifest = {
        "source": cfg.fmt, "config": cfg.model_dump(mode="json"), "rows": writer.n_rows, "shards": writer.n_shards,
        "counts": {f"{SUBSET}/{s}": int(counts.get(s, 0)) for s in SPLITS if s in counts},
        "attributes": [c for c in rows.columns if c not in ("path", "split", "error")],
        "error_rows": len(errors), "errors": errors,
    }
    write_manifest(out, manifest)
    return manifest
