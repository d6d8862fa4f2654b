"""A Ray Train GAN fit on a GPU: the training core's Session on cuda under bf16 autocast (ray.precision=auto),
an atomic checkpoint with its EMA grid; prints one GPU_FIT line.

    python benchmarks/gpu_fit_check.py OUT_DIR
"""

import sys
import time
from pathlib import Path

from fairray.config import GanConfig, SynthConfig
from fairray.data import synth_dataset
from fairray.ray_env import init_ray
from fairray.train import gan
from fairray.train.checkpoint import load_state

out = Path(sys.argv[1])
synth_dataset.build(SynthConfig(n=2000, perc=0.25, val_frac=0, test_frac=0), out / "data", progress=False)
cfg = GanConfig(dataset=str(out / "data"), name="gpu", width=32, z_dim=64, batch_size=64, kimg=6, tick_kimg=2,
                snapshot_ticks=1, ray={"device": "cuda", "workers": 1})
init_ray(dashboard=False)  # the GPU host's slim Ray has no dashboard packages
t0 = time.time()
ckpt = gan.fit(cfg, out / "data", out)
st = load_state(ckpt)
print("GPU_FIT", ckpt, st["nimg"], [round(h["img_per_s"]) for h in st["history"]], st["history"][-1].get("loss_d"),
      "nan_skips", st["nan_skips"], "grid", (ckpt / "grid.png").is_file(), "secs", round(time.time() - t0))
