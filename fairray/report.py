"""Plots (matplotlib, headless) and a self-contained HTML report with every image embedded."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def image_grid(images: np.ndarray, nrow: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> one uint8 grid image with 2-px white gutters."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return make_grid(t, nrow=nrow, padding=2, pad_value=255).permute(1, 2, 0).numpy()


def grid_figure(images: np.ndarray, nrow: int, title: str) -> Figure:
    grid = image_grid(images, nrow)
    fig, ax = plt.subplots(figsize=(4.2, 4.2 * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return fig


def shares_figure(tables: dict[str, pd.DataFrame], title: str, target: dict[str, float] | None = None) -> Figure:
    """One panel per attribute (or intersection); grouped bars per column (e.g. biased vs reference)."""
    fig, axes = panel_grid(len(tables), 3, (4.4, 3.0))
    for ax, (name, table) in zip(axes.flat, tables.items(), strict=False):
        x = np.arange(len(table))
        width = 0.8 / max(len(table.columns), 1)
        for j, col in enumerate(table.columns):
            bars = ax.bar(x + (j - (len(table.columns) - 1) / 2) * width, table[col], width,
                          label=str(col), color=PALETTE[j % len(PALETTE)])
            if len(table) <= 6:
                ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        if target is not None and name in target:
            ax.axhline(target[name], color="k", ls="--", lw=0.8, label="uniform")
        ax.set_xticks(x, [_short(i) for i in table.index], rotation=30 if len(table) > 3 else 0,
                      ha="right" if len(table) > 3 else "center", fontsize=8)
        ax.set_ylim(0, min(1.0, table.to_numpy().max() * 1.25 + 0.02))
        share_panel(ax, name)
    return finish_panels(fig, axes, len(tables), title)


def panel_grid(n: int, max_cols: int, panel: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure with n panels in rows of at most max_cols, each panel (width, height) inches."""
    cols = min(n, max_cols)
    rows = (n + cols - 1) // cols
    return plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows), squeeze=False)


def share_panel(ax, name: str) -> None:
    ax.set_title(name, fontsize=10)
    ax.set_ylabel("share")
    ax.spines[["top", "right"]].set_visible(False)


def finish_panels(fig: Figure, axes: np.ndarray, n: int, title: str) -> Figure:
    """Blank the unused panels, one legend, the title."""
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _short(label: str) -> str:
    """'gender=female & Black_Hair=yes' -> 'female & Black_Hair' : short tick labels."""
    out = []
    for part in label.split(" & "):
        a, _, v = part.partition("=")
        out.append(a if v == "yes" else f"no {a}" if v == "no" else v)
    return " & ".join(out)


def fig_png(fig: Figure, path: Path | None = None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


@dataclass
class Section:
    title: str
    text: str = ""
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, png)
    table: pd.DataFrame | None = None


def write_html(path: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    env = Environment(loader=PackageLoader("fairray", "templates"), autoescape=select_autoescape())
    env.filters["b64"] = lambda b: base64.b64encode(b).decode()
    html = env.get_template("report.html").render(
        title=title, subtitle=subtitle,
        sections=[{"title": s.title, "text": s.text, "images": s.images,
                   "table": None if s.table is None else s.table.to_html(classes="tbl", border=0,
                                                                          float_format=lambda x: f"{x:.3f}")}
                  for s in sections],
    )
    Path(path).write_text(html)
    return Path(path)
