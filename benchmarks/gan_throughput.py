"""GAN training throughput: fairray's Ray Train step vs a plain single-process PyTorch loop, same model, batch
and data, in one run (JSON out).

    python benchmarks/gan_throughput.py [--kimg 20] [--width 32] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fairray.config import GanConfig, SynthConfig
from fairray.data import synth_dataset
from fairray.data.loading import load_split
from fairray.models.gan_factory import build_gan, gan_config
from fairray.ray_env import autocast_kwargs
from fairray.train import gan
from fairray.train.checkpoint import load_state
from fairray.train.losses import d_hinge_loss, g_hinge_loss


def plain_loop(images: np.ndarray, cfg: GanConfig, n_img: int, precision: str = "fp32") -> float:
    """The same step as fairray's loop (layout, autocast), without Ray: returns steady-state img/s."""
    amp = autocast_kwargs(torch.device("cpu"), precision)
    torch.manual_seed(0)
    G, D = build_gan(gan_config("dcgan", resolution=cfg.resolution, width=cfg.width, z_dim=cfg.z_dim))
    G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)  # as fairray's loop
    opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=cfg.betas)
    steps = n_img // cfg.batch_size
    t0 = None
    for s in range(steps):
        if s == 10:
            t0 = time.perf_counter()
        idx = np.random.randint(0, len(images), cfg.batch_size)
        real = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        with torch.autocast(**amp):
            fake = G(torch.randn(cfg.batch_size, cfg.z_dim))
            d_loss = d_hinge_loss(D(real).float(), D(fake.detach()).float())
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        with torch.autocast(**amp):
            g_loss = g_hinge_loss(D(fake).float())
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    return (steps - 10) * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kimg", type=float, default=20)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="fairray's training autocast (auto: bf16 on CPUs with native bf16); the plain loop runs at "
                         "fp32 and at the resolved precision")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads of the plain loop and CPUs of the Ray Train worker (the demo's GAN trials: 1)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gan_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        synth_dataset.build(SynthConfig(n=5000, perc=0, val_frac=0, test_frac=0), data, progress=False)
        cfg = GanConfig(dataset=str(data), width=args.width, batch_size=args.batch, kimg=args.kimg,
                        tick_kimg=args.kimg / 4, snapshot_ticks=4, name="bench",
                        ray={"precision": args.precision, "cpus_per_worker": args.threads})
        precision = "bf16" if autocast_kwargs(torch.device("cpu"), args.precision)["enabled"] else "fp32"
        images, _ = load_split(data, "train", [], size=cfg.resolution)
        plain_fp32 = plain_loop(images, cfg, int(args.kimg * 1000), "fp32")
        plain = plain_loop(images, cfg, int(args.kimg * 1000), precision) if precision != "fp32" else plain_fp32
        t0 = time.perf_counter()
        state = load_state(gan.fit(cfg, data, Path(d) / "out"))
        wall = time.perf_counter() - t0
        ticks = state["history"][1:]  # steady state: skip the first tick (warm-up)
        ray_rate = float(np.mean([t["img_per_s"] for t in ticks]))
    report = {"benchmark": "gan_throughput", "model": "dcgan", "resolution": cfg.resolution, "width": args.width,
              "batch": args.batch, "threads": torch.get_num_threads(), "precision": precision,
              "plain_fp32_img_per_s": round(plain_fp32), "plain_img_per_s": round(plain),
              "precision_speedup_plain": round(plain / plain_fp32, 3),
              "ray_train_img_per_s": round(ray_rate), "ratio": round(ray_rate / plain, 3),
              "ray_train_wall_s_incl_startup": round(wall, 1), "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
