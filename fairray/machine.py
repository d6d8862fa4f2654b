"""The machine facts a run's numbers depend on.

The same seed gives the same numbers on the same kind of CPU and thread count; bf16 autocast (on where the CPU has
native bf16) runs other kernels on AMX, AVX512-BF16 and fp32-only CPUs, so results and MLflow runs record the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


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


def compute_setup(threads: int | None = None) -> None:
    """The compute set-up of every fairray worker process (labeling, generator and density-ratio actors, train and
    Tune workers): torch's thread count when given, and `keep_freed_memory`."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_memory()


@functools.cache  # once per process
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel after each batch.

    By default glibc serves large blocks with mmap and trims the heap top on free, so torch's per-batch tensors (MBs
    each) fault in fresh zeroed pages on every batch; the dynamic mmap threshold only adapts after such frees, which
    is why the same model ran 5,100 img/s in one process and 7,700 in another. A fixed 32 MB mmap threshold and a
    1 GB trim threshold make the speed the fast one every time (bf16 attrclf on 2 cores: 4,400-4,600 -> 7,000-7,500
    img/s; benchmarks/RESULTS.md); the cost is that a process keeps up to 1 GB of freed heap. False where the C
    library has no mallopt (macOS, musl)."""
    # the process's own symbols include its C library's: no library search (find_library runs ldconfig) at start-up
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if os.name == "posix" else None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
