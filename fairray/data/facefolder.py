"""Real-layout face folders: SynthFaces renders saved as JPEG files the way real datasets ship them, for the
tests and `experiments/own_faces.py` (a stand-in for a user's folder: no face data can be downloaded here).

`write_utkface` names files `[age]_[gender]_[race]_[date&time].jpg.chip.jpg`; `write_folder_csv` writes an image
folder + labels.csv. Both add the broken files real downloads contain (BROKEN: one row each, marked, never a crash)
and the awkward-but-valid ones (AWKWARD: 16-bit PNG, CMYK JPEG, EXIF-rotated JPEG: decoded like any face).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fairray.data.bias import BiasSpec, sample_attributes
from fairray.data.synthetic import render_chunked, sample_nuisance

BROKEN = ("empty", "truncated", "text", "random")
AWKWARD = ("png16", "cmyk", "exif_rotated")
AGE_YEARS = (1, 6, 15, 25, 35, 45, 55, 65, 75)  # one age in years per age9 bin


def faces(n: int, seed: int, resolution: int) -> tuple[pd.DataFrame, np.ndarray]:
    """n SynthFaces rows (balanced attributes) and their uint8 (n, r, r, 3) renders."""
    rng = np.random.default_rng(seed)
    rows = pd.concat([sample_attributes(n, BiasSpec(), rng), sample_nuisance(n, rng)], axis=1)
    return rows, render_chunked(rows, resolution).numpy()


def jpeg(image: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def broken_bytes(kind: str, image: np.ndarray, seed: int) -> bytes:
    good = jpeg(image)
    return {"empty": b"", "truncated": good[: len(good) // 2],
            "text": b"<html><body>404 Not Found</body></html>\n",
            "random": np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes()}[kind]


def awkward_bytes(kind: str, image: np.ndarray) -> tuple[bytes, str]:
    """(file bytes, suffix) for a valid image in a mode or orientation a naive loader gets wrong."""
    if kind == "png16":
        grey16 = (image.mean(-1) * 257).astype(np.uint16)
        buf = io.BytesIO()
        Image.fromarray(grey16).save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if kind == "cmyk":
        buf = io.BytesIO()
        Image.fromarray(image).convert("CMYK").save(buf, format="JPEG", quality=92)
        return buf.getvalue(), ".jpg"
    # stored rotated by 90 degrees with EXIF orientation 6 ("rotate 90 CW to display"): decodes upright
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(np.rot90(image, k=1).copy(), exif=exif.tobytes()), ".jpg"


def files(n: int, seed: int, resolution: int) -> Iterator[tuple[int, pd.Series, str, bytes, str]]:
    """(index, attribute row, kind, file bytes, suffix) for n good faces, then AWKWARD, then BROKEN files."""
    rows, images = faces(n + len(AWKWARD) + len(BROKEN), seed, resolution)
    kinds = ["good"] * n + list(AWKWARD) + list(BROKEN)
    for i, (kind, img) in enumerate(zip(kinds, images, strict=True)):
        if kind in BROKEN:
            data, suffix = broken_bytes(kind, img, seed + i), ".jpg"
        elif kind in AWKWARD:
            data, suffix = awkward_bytes(kind, img)
        else:
            data, suffix = jpeg(img), ".jpg"
        yield i, rows.iloc[i], kind, data, suffix


def write_utkface(root: Path, n: int, seed: int = 0, resolution: int = 64) -> pd.DataFrame:
    """UTKFace layout under root/UTKFace: n good faces + BROKEN + AWKWARD files; returns one row per file written."""
    folder = Path(root) / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, r, kind, data, suffix in files(n, seed, resolution):
        race = int(min(4, (int(r.skin_tone10) - 1) // 2))  # a stand-in: UTKFace codes race 0-4
        path = folder / f"{AGE_YEARS[int(r.age9)]}_{int(r.gender)}_{race}_2017011{i % 10}{i:08d}.jpg.chip{suffix}"
        path.write_bytes(data)
        written.append({"file": path.name, "kind": kind, "gender": int(r.gender)})
    return pd.DataFrame(written)


def write_folder_csv(root: Path, n: int, seed: int = 0, resolution: int = 64) -> pd.DataFrame:
    """An image folder + labels.csv (file, sex as text, age in years, smile): the `folder` reader's layout."""
    folder = Path(root) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for i, r, kind, data, suffix in files(n, seed, resolution):
        name = f"face_{i:05d}{suffix}"
        (folder / name).write_bytes(data)
        labels.append({"file": name, "sex": ("male", "female")[int(r.gender)], "age": AGE_YEARS[int(r.age9)],
                       "smile": int(r.Smiling), "kind": kind})
    df = pd.DataFrame(labels)
    df.drop(columns="kind").to_csv(Path(root) / "labels.csv", index=False)
    return df
