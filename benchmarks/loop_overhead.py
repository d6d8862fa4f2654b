"""The training core's cost: fairray's GAN step on `fairray.train.loop` (Session, Phase, GanLoss, EMA, NaN guard)
vs the same step written as a plain PyTorch loop, same model, data, seed and precision, in one run (JSON out); medians
of alternated repeats.

Both loops draw the same batches from the same generator, so in fp32 their losses must agree step for step; the
JSON records the largest difference as a correctness check beside the speed ratio.

    python benchmarks/loop_overhead.py [--device cpu|cuda] [--precision fp32|bf16] [--steps 200] [--width 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fairray.config import GanConfig
from fairray.models.ema import Ema
from fairray.models.generator_io import build_models
from fairray.ray_env import autocast_kwargs
from fairray.train.gan import GanLoss
from fairray.train.loop import Means, Phase, Session, to_unit
from fairray.train.losses import d_bce_loss, g_bce_loss


def setup(cfg: GanConfig, device: torch.device):
    torch.manual_seed(0)
    G, D = build_models(cfg)
    G.to(device, memory_format=torch.channels_last)
    D.to(device, memory_format=torch.channels_last)
    ema = Ema(G, cfg.ema_kimg, cfg.ema_rampup)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    return G, D, ema, opt_g, opt_d


def batches(images: np.ndarray, cfg: GanConfig, steps: int, device: torch.device):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen).to(device)
        yield {"real": to_unit(torch.from_numpy(images[idx.numpy()]), device, signed=True), "real_w": None, "z": z}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(images, cfg, steps, device, precision) -> tuple[float, list[float]]:
    G, D, ema, opt_g, opt_d = setup(cfg, device)
    amp = autocast_kwargs(device, precision)
    losses, t0, nimg = [], 0.0, 0
    for i, b in enumerate(batches(images, cfg, steps, device)):
        if i == 10:
            sync(device)
            t0 = time.perf_counter()
        with torch.autocast(**amp):
            fake = G(b["z"])
            d_loss = d_bce_loss(D(b["real"]).float(), D(fake.detach()).float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with torch.autocast(**amp):
            g_loss = g_bce_loss(D(fake).float())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        ema.update(G, nimg, cfg.batch_size)
        nimg += cfg.batch_size
        losses.append(float(d_loss.detach()))
    sync(device)
    return (steps - 10) * cfg.batch_size / (time.perf_counter() - t0), losses


def core(images, cfg, steps, device, precision) -> tuple[float, list[float]]:
    G, D, ema, opt_g, opt_d = setup(cfg, device)
    s = Session.local(device, precision, "bench")
    nimg = [0]
    phases = [Phase("Dmain", opt_d), Phase("Gmain", opt_g, after=lambda: ema.update(G, nimg[0], cfg.batch_size))]
    loss, means, losses, t0 = GanLoss(G, D, cfg.loss), Means(), [], 0.0
    for i, b in enumerate(batches(images, cfg, steps, device)):
        if i == 10:
            sync(device)
            t0 = time.perf_counter()
        s.run_phases(loss, phases, b, means)
        nimg[0] += cfg.batch_size
        losses.append(means.pop()["loss_d"])
    sync(device)
    return (steps - 10) * cfg.batch_size / (time.perf_counter() - t0), losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loop_overhead.json")
    a = ap.parse_args()
    device = torch.device(a.device)
    cfg = GanConfig(width=a.width, resolution=a.resolution, batch_size=a.batch, z_dim=128, loss="bce")
    images = np.random.default_rng(0).integers(0, 256, (2048, a.resolution, a.resolution, 3), dtype=np.uint8)
    core(images, cfg, 20, device, a.precision)  # warm-up: kernels, allocator
    rates: dict[str, list[float]] = {"plain": [], "core": []}
    for _ in range(a.repeats):  # alternated, so drift (clocks, other load) hits both alike
        plain_rate, plain_losses = plain(images, cfg, a.steps, device, a.precision)
        core_rate, core_losses = core(images, cfg, a.steps, device, a.precision)
        rates["plain"].append(plain_rate)
        rates["core"].append(core_rate)
    plain_rate, core_rate = float(np.median(rates["plain"])), float(np.median(rates["core"]))
    result = {"date": time.strftime("%Y-%m-%d"), "device": a.device,
              "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "precision": a.precision, "model": f"dcgan w{a.width}",
              "resolution": a.resolution, "batch": a.batch, "steps": a.steps, "repeats": a.repeats,
              "plain_img_per_s": round(plain_rate), "core_img_per_s": round(core_rate),
              "core_over_plain": round(core_rate / plain_rate, 3),
              "plain_runs": [round(r) for r in rates["plain"]], "core_runs": [round(r) for r in rates["core"]],
              "max_abs_loss_diff": float(np.max(np.abs(np.array(plain_losses) - np.array(core_losses))))}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
