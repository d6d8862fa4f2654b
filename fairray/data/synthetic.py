"""SynthFaces: a batched, procedural face renderer with exact attributes (no downloads, exact ground truth).

Every image is composited from anti-aliased soft masks (signed distances with a one-pixel ramp) in pure
torch, so a chunk of 256 faces is a handful of tensor ops. An image is a pure function of its row
(attributes + nuisance parameters + noise seed), which makes it independent of chunking and byte-identical
for the same seed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import torch

RESOLUTIONS = (32, 64, 128)

# Monk-style scale 1..10, spaced evenly in lightness so each tone4 group stays separable under lighting.
_SKIN_LIGHT = np.array([0.96, 0.87, 0.80])
_SKIN_MID = np.array([0.66, 0.47, 0.31])
_SKIN_DARK = np.array([0.17, 0.13, 0.11])
SKIN_RGB = np.stack(
    [_SKIN_LIGHT + (_SKIN_MID - _SKIN_LIGHT) * t / 4.5 if t <= 4.5 else _SKIN_MID + (_SKIN_DARK - _SKIN_MID) * (t - 4.5) / 4.5
     for t in np.linspace(0, 9, 10)]
)
HAIR_RGB = np.array([[0.07, 0.06, 0.06], [0.42, 0.25, 0.12], [0.93, 0.80, 0.42], [0.72, 0.72, 0.75]])

NUISANCE_COLUMNS = ("nz_dx", "nz_dy", "nz_scale", "nz_roll", "nz_yaw", "nz_bg_r", "nz_bg_g", "nz_bg_b",
                    "nz_light_angle", "nz_light", "nz_noise", "nz_seed")


def sample_nuisance(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Pose, scale, lighting, background and noise for n faces: independent of every attribute."""
    bg = rng.uniform(0.1, 0.9, size=(n, 3))
    # Keep backgrounds away from the face: desaturate toward grey-blue so skin tone stays readable.
    return pd.DataFrame({
        "nz_dx": rng.uniform(-0.07, 0.07, n), "nz_dy": rng.uniform(-0.07, 0.07, n),
        "nz_scale": rng.uniform(0.92, 1.08, n), "nz_roll": rng.uniform(-0.15, 0.15, n),
        "nz_yaw": rng.uniform(-1.0, 1.0, n),
        "nz_bg_r": bg[:, 0], "nz_bg_g": bg[:, 1], "nz_bg_b": bg[:, 2],
        "nz_light_angle": rng.uniform(0, 2 * math.pi, n), "nz_light": rng.uniform(0.0, 0.25, n),
        "nz_noise": rng.uniform(0.0, 0.03, n), "nz_seed": rng.integers(0, 2**31 - 1, n),
    })


# Cue columns: how strongly an attribute is drawn, in [0, 1]. Absent, the label is drawn as it is (0 or 1). With
# ambiguity sd s (`ambiguous_cues`) the cue is the label plus N(0, s^2) noise, clipped: a smile can be faint and a
# straight mouth can half-smile, so near the middle the image alone cannot tell the label, as in real faces.
CUE_COLUMNS = {"Smiling": "nz_smile_cue", "Eyeglasses": "nz_glasses_cue"}


def ambiguous_cues(rows: pd.DataFrame, ambiguity: dict[str, float], rng: np.random.Generator) -> pd.DataFrame:
    """Cue columns for `ambiguity` = {attribute: sd of the noise on how strongly it is drawn}."""
    cues = {}
    for attr, sd in sorted(ambiguity.items()):
        cue = rows[attr].to_numpy().astype(float) + sd * rng.standard_normal(len(rows))
        cues[CUE_COLUMNS[attr]] = np.clip(cue, 0.0, 1.0)
    return pd.DataFrame(cues, index=rows.index)


def _cue(df: pd.DataFrame, attr: str) -> torch.Tensor:
    col = CUE_COLUMNS[attr]
    return _col(df, col if col in df.columns else attr)


def _col(df: pd.DataFrame, name: str) -> torch.Tensor:
    return torch.tensor(df[name].to_numpy(), dtype=torch.float32).view(-1, 1, 1)


def _fill(px: float, d: torch.Tensor) -> torch.Tensor:
    """Soft coverage of the region d <= 0 with a one-pixel anti-aliasing ramp."""
    return (0.5 - d / px).clamp_(0.0, 1.0)


def _over(img: torch.Tensor, mask: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Composite colour rgb (N, 3) over img (3, N, H, W) with coverage mask (N, H, W), in place."""
    return img.lerp_(rgb.t().reshape(3, -1, 1, 1).expand_as(img), mask.unsqueeze(0).expand_as(img))


def _line(u: torch.Tensor, v: torch.Tensor, u0: float, u1: float, v0: torch.Tensor | float, half: float) -> torch.Tensor:
    """Distance to a horizontal segment [u0,u1] x {v0} minus its half thickness."""
    du = (torch.maximum(u0 - u, u - u1)).clamp(min=0)
    return torch.sqrt(du * du + (v - v0) ** 2) - half


@torch.no_grad()
def render(rows: pd.DataFrame, resolution: int = 64) -> torch.Tensor:
    """Render faces for rows holding base attributes and nuisance columns; returns uint8 (N, H, W, 3)."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    n, r = len(rows), resolution
    px = 2.0 / r
    coords = (torch.arange(r, dtype=torch.float32) + 0.5) * px - 1.0
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    gx, gy = gx.expand(n, r, r), gy.expand(n, r, r)

    gender, age = _col(rows, "gender"), _col(rows, "age9")
    smile, glasses = _cue(rows, "Smiling"), _cue(rows, "Eyeglasses")
    skin = torch.as_tensor(SKIN_RGB[rows["skin_tone10"].to_numpy() - 1], dtype=torch.float32)
    hair = torch.as_tensor(HAIR_RGB[rows["hair"].to_numpy()], dtype=torch.float32)
    child = (1.0 - 0.07 * (3 - age).clamp(min=0))  # 0-2 and 3-9 have smaller heads, bigger eyes
    scale = _col(rows, "nz_scale") * child
    roll, yaw = _col(rows, "nz_roll"), _col(rows, "nz_yaw")

    # Face frame: shift, roll and scale; pixel size in face units grows as the face shrinks.
    x, y = gx - _col(rows, "nz_dx"), gy - _col(rows, "nz_dy") - 0.05
    c, s = torch.cos(roll), torch.sin(roll)
    u, v = (c * x + s * y) / scale, (-s * x + c * y) / scale
    fpx = px / scale
    uf = u - 0.06 * yaw  # inner features slide with yaw

    bg = torch.tensor(rows[["nz_bg_r", "nz_bg_g", "nz_bg_b"]].to_numpy(), dtype=torch.float32)
    # Channel-first over the batch, (3, N, H, W): masks (N, H, W) broadcast without strides.
    img = bg.t().reshape(3, n, 1, 1).expand(3, n, r, r).contiguous()

    half_w = 0.50 + 0.06 * (1 - gender)  # male-presenting: wider, squarer jaw
    half_h = 0.60
    expo = 2.0 + 1.6 * (1 - gender)
    # Long hair curtain behind the face (female-presenting): wide enough to survive 32 px.
    curtain = torch.maximum(u.abs() - (half_w + 0.24), (v - 0.55).abs() - 0.95) * gender + (1 - gender) * 9.0
    img = _over(img, _fill(fpx, torch.maximum(curtain, -v - 0.75)), hair)
    neck = torch.maximum(u.abs() - 0.20, (v - 0.85).abs() - 0.30)
    img = _over(img, _fill(fpx, neck), skin * 0.85)
    sup = ((u / half_w).abs() ** expo + (v / half_h).abs() ** expo) ** (1 / expo)
    img = _over(img, _fill(fpx, (sup - 1) * half_h), skin)
    # Hair cap over the top of the head.
    cap = torch.maximum(torch.sqrt((u / (half_w + 0.06)) ** 2 + ((v + 0.05) / (half_h + 0.10)) ** 2) - 1, v + 0.42)
    img = _over(img, _fill(fpx, cap * 0.6), hair)

    eye_r = 0.075 + 0.02 * (3 - age).clamp(min=0) / 3
    eyes = torch.minimum(torch.sqrt((uf - 0.21) ** 2 + (v + 0.05) ** 2), torch.sqrt((uf + 0.21) ** 2 + (v + 0.05) ** 2))
    dark = torch.tensor([0.05, 0.04, 0.04]).expand(n, 3)
    img = _over(img, _fill(fpx, eyes - eye_r), dark)
    brows = torch.minimum(_line(uf, v, 0.11, 0.31, -0.19, 0.025), _line(uf, v, -0.31, -0.11, -0.19, 0.025))
    img = _over(img, _fill(fpx, brows), hair * 0.8)

    # Age: forehead lines appear at 30-39 and multiply with age; 40+ adds cheek lines.
    n_lines = ((age - 3).clamp(min=0) / 1.67).ceil().clamp(max=3)
    wrinkle = torch.full_like(u, 9.0)
    for k in range(3):  # ~1 px thick at 32 px: thinner lines vanish under blur and the age cue with them
        d = _line(uf, v, -0.24, 0.24, -0.25 - 0.065 * k, 0.028)
        wrinkle = torch.minimum(wrinkle, torch.where(n_lines > k, d, torch.full_like(d, 9.0)))
    cheeks = torch.minimum(_line(uf, v, 0.22, 0.32, 0.16, 0.025), _line(uf, v, -0.32, -0.22, 0.16, 0.025))
    wrinkle = torch.minimum(wrinkle, torch.where(age >= 5, cheeks, torch.full_like(cheeks, 9.0)))
    img = _over(img, _fill(fpx, wrinkle), skin * 0.45)

    # Mouth: a wide upward arc with teeth when smiling, a short flat line otherwise.
    mouth_w = 0.13 + 0.11 * smile
    arc = 0.29 + 2.2 * smile * (mouth_w**2 - uf**2).clamp(min=0)
    lip = _line(uf, v, -mouth_w, mouth_w, arc, 0.03 + 0.025 * smile)
    img = _over(img, _fill(fpx, lip), torch.tensor([0.55, 0.10, 0.12]).expand(n, 3))
    teeth = _line(uf, v, -mouth_w * 0.6, mouth_w * 0.6, arc - 0.005, 0.012)
    img = _over(img, _fill(fpx, teeth) * smile, torch.tensor([0.97, 0.97, 0.95]).expand(n, 3))

    # Glasses: two rings and a bridge, drawn dark over everything.
    rings = (torch.minimum(torch.sqrt((uf - 0.21) ** 2 + (v + 0.05) ** 2),
                           torch.sqrt((uf + 0.21) ** 2 + (v + 0.05) ** 2)) - 0.14).abs() - 0.028
    frame = torch.minimum(rings, _line(uf, v, -0.07, 0.07, -0.07, 0.022))
    img = _over(img, _fill(fpx, frame) * glasses, torch.tensor([0.10, 0.10, 0.12]).expand(n, 3))

    # Lighting gradient and per-row deterministic noise (a hash of pixel position and the row seed).
    ang = _col(rows, "nz_light_angle")
    light = 1.0 + _col(rows, "nz_light") * (torch.cos(ang) * gx + torch.sin(ang) * gy)
    img.mul_(light.unsqueeze(0))
    noise = _noise_bank(r)[torch.as_tensor(rows["nz_seed"].to_numpy() % NOISE_BANK)]  # (N, H, W, 3)
    img = img.permute(1, 2, 3, 0) + noise * _col(rows, "nz_noise").unsqueeze(-1)
    return img.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8)


NOISE_BANK = 64


@functools.cache
def _noise_bank(resolution: int) -> torch.Tensor:
    """A fixed bank of unit-variance noise textures; each row picks one by its seed (chunk-independent)."""
    g = torch.Generator().manual_seed(20261124)
    return torch.randn(NOISE_BANK, resolution, resolution, 3, generator=g)


def render_chunked(rows: pd.DataFrame, resolution: int, chunk: int | None = None) -> torch.Tensor:
    """Render in cache-sized chunks: ~1M pixels (256 faces at 64 px); bigger chunks fall out of cache."""
    chunk = chunk or min(256, 2**20 // resolution**2)
    parts = [render(rows.iloc[i:i + chunk], resolution) for i in range(0, len(rows), chunk)]
    return torch.cat(parts) if parts else torch.empty(0, resolution, resolution, 3, dtype=torch.uint8)
