"""The machine facts a run's numbers depend on.

The same seed gives the same numbers on the same kind of CPU and thread count; bf16 autocast (on where the CPU has
native bf16) runs other kernels on AMX, AVX512-BF16 and fp32-only CPUs, so results and MLflow runs record the CPU.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@functools.cache  # asked on every training step (Session.autocast)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN runs bf16 convs natively (elsewhere it emulates them, slower than fp32)."""
    flags = _cpuinfo().split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(device_type: str, precision: str) -> str:
    """'bf16' or 'fp32' for a precision setting: auto = bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device_type == "cuda" or cpu_has_native_bf16() else "fp32"
    return precision


def cpu_description() -> dict:
    """CPU model, torch's kernel level on it, native bf16, cores (a fresh dict each call: callers may extend it)."""
    return dict(_description())


@functools.cache  # one machine per process; every MLflow run opened asks
def _description() -> dict:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                  if line.startswith("model name")), "")
    return {"cpu": model or platform.machine(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_has_native_bf16(), "cores": os.cpu_count()}
