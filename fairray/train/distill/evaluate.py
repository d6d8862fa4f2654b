"""Teacher vs student on the same latents: fairness, fd_attrclf, shares per attribute and intersection,
throughput, parameter counts, side-by-side grids."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from torch import nn

from fairray.config import DistillConfig


def timed_sample(G: nn.Module, n: int, z_dim: int, seed: int) -> tuple[np.ndarray, float]:
    """Samples and the generator's throughput in img/s (after one warm-up batch)."""
    from fairray.models.generator_io import sample

    sample(G, min(n, 64), z_dim, seed + 1)
    t0 = time.perf_counter()
    images, _ = sample(G, n, z_dim, seed)
    return images, n / (time.perf_counter() - t0)


def hard_label_frame(images: np.ndarray, labeler, heads: list[str], batch: int = 500) -> pd.DataFrame:
    from fairray.labelers.base import hard_labels

    probs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch):
        for h, p in labeler.predict_proba(images[i:i + batch]).items():
            if h in heads:
                probs.setdefault(h, []).append(p)
    return pd.DataFrame(hard_labels({h: np.concatenate(p) for h, p in probs.items()}, labeler.heads))


def share_tables(frames: dict[str, pd.DataFrame], attrs: list[str], intersections: list[list[str]]
                 ) -> dict[str, pd.DataFrame]:
    """{'gender': DataFrame(index=cells, columns=frames)} per attribute and 'a x b' per intersection."""
    from fairray.data.summary import value_counts

    tables = {}
    for keys in [[a] for a in attrs] + intersections:
        cols = {name: (c := value_counts(df, keys)) / max(c.sum(), 1) for name, df in frames.items()}
        tables[" x ".join(keys)] = pd.DataFrame(cols)
    return tables


def side_by_side(teacher: np.ndarray, student: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    from fairray.report import image_grid

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.4))
    for ax, images, name in zip(axes, (teacher, student), ("teacher", "student"), strict=True):
        ax.imshow(image_grid(images, 8), interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def evaluate(T: nn.Module, S: nn.Module, z_dim: int, labeler, cfg: DistillConfig, reference: np.ndarray | None,
             heldout: np.ndarray | None = None, target_weights: np.ndarray | None = None
             ) -> tuple[dict[str, float], dict[str, pd.DataFrame], np.ndarray, np.ndarray]:
    """Teacher and student on the same eval latents: fairness, fd_attrclf, shares, throughput, parameters.
    Validity against the `heldout` rows; the student's also against its target (`target_weights` per heldout row:
    `data.reference.heldout_rows` over `target_cells`), since a balanced student drawn from a biased teacher
    covers fewer of the data's majority rows by design."""
    from fairray.metrics.generated import count_tag, evaluate_samples, labeler_features
    from fairray.metrics.quality import feature_stats, frechet_distance
    from fairray.models.student import count_params

    n, tag = cfg.eval_n, count_tag(cfg.eval_n)
    t_img, t_rate = timed_sample(T, n, z_dim, cfg.eval_seed)
    s_img, s_rate = timed_sample(S, n, z_dim, cfg.eval_seed)
    cache: dict = {}  # each image set's features once: the same reference and held-out rows score both
    mt = evaluate_samples(t_img, labeler, cfg.eval_attributes, reference=reference, heldout=heldout,
                          feature_cache=cache)
    ms = evaluate_samples(s_img, labeler, cfg.eval_attributes, reference=reference, heldout=heldout,
                          heldout_weights=target_weights, feature_cache=cache)
    metrics = {k: v for k, v in ms.items()} | {f"teacher_{k}": v for k, v in mt.items()}
    if hasattr(labeler, "features"):
        ft, fs = (labeler_features(labeler, x, cache=cache) for x in (t_img, s_img))
        metrics[f"fd_attrclf_to_teacher_{tag}"] = frechet_distance(*feature_stats(fs), *feature_stats(ft))
    metrics |= {"teacher_params": float(count_params(T)), "student_params": float(count_params(S)),
                "param_ratio": count_params(S) / count_params(T), "teacher_img_per_s": t_rate,
                "student_img_per_s": s_rate}
    heads = {h.name for h in labeler.heads}
    attrs = [a for a in dict.fromkeys(cfg.eval_attributes + cfg.report_attributes) if a in heads]
    inter = [i for i in cfg.intersections if all(a in heads for a in i)]
    used = list(dict.fromkeys(attrs + [a for i in inter for a in i]))
    frames = {"teacher": hard_label_frame(t_img, labeler, used), "student": hard_label_frame(s_img, labeler, used)}
    tables = share_tables(frames, attrs, inter)
    for name, table in tables.items():
        key = name.replace(" x ", "_x_")
        for cell, row in table.iterrows():
            code = "_".join(str(v) for v in cell_codes(cell))
            metrics.setdefault(f"share_{key}_{code}_{tag}", float(row.student))
            metrics.setdefault(f"teacher_share_{key}_{code}_{tag}", float(row.teacher))
    return metrics, tables, t_img, s_img


def cell_codes(cell: str) -> list[int]:
    """'gender=male & tone4=dark' -> [0, 3] (codes in fairray's vocabulary)."""
    from fairray.data.attributes import attribute_labels, attribute_values

    out = []
    for part in cell.split(" & "):
        a, _, label = part.partition("=")
        out.append(int(attribute_values(a)[list(attribute_labels(a)).index(label)]))
    return out

